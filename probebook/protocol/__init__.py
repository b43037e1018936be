"""The one contract between the agent (inside a service) and the notebook side; stdlib only.

The agent implements it; connectors, evidence, widgets and the lab read it, and none of them
imports the agent. Importing it loads no engine, no server.

| module | holds |
| --- | --- |
| `kinds` | `Kind`, `Status` (str enums), `KINDS`, `METRIC_TYPES`, `ENDED`, `ACTIVE` |
| `spec` | `ProbeSpec`, `MetricSpec`, `Where`/`parse_where`, `parse_duration`, `parse_rate` |
| `records` | `ProbeInfo`, `ModuleSource`, `SourceFile`, `AgentHealth`, `from_mapping` |
| `events` | the event records (`LogEvent`, `SnapshotEvent`, ..., `StatusEvent`), `fields_of` |
| `capture_tree` | the one reader of captured values: `plain`, `scalar`, `cut`, `children` |
| `fleet` | `FleetKeys`, `sign_command`, `new_command_id`, `STALE_AFTER_S` |
| `tokens` | the token file: `Tokens`, `write_token_file` |
| `resp` | the Redis wire client (imported from there: it loads `ssl`) |

>>> from probebook.protocol import ProbeSpec, Status
>>> spec = ProbeSpec.from_dict({"kind": "snapshot", "where": "shop/cart.py:42", "capture": "cart.total"})
>>> spec.capture, Status.EXPIRED in ENDED
(('cart.total',), True)
"""

from .capture_tree import plain
from .events import (Event, ExceptionEvent, LogEvent, MetricEvent, SnapshotEvent, SpanEvent, StatusEvent,
                     fields_of)
from .fleet import STALE_AFTER_S, FleetKeys, new_command_id, sign_command
from .kinds import ACTIVE, ENDED, KINDS, METRIC_TYPES, Kind, Status
from .records import AgentHealth, ModuleSource, ProbeInfo, SourceFile, from_mapping
from .spec import MetricSpec, ProbeSpec, Where, parse_duration, parse_rate, parse_where
from .tokens import Tokens

__all__ = [
    "ACTIVE",
    "AgentHealth",
    "ENDED",
    "Event",
    "ExceptionEvent",
    "FleetKeys",
    "KINDS",
    "Kind",
    "LogEvent",
    "METRIC_TYPES",
    "MetricEvent",
    "MetricSpec",
    "ModuleSource",
    "ProbeInfo",
    "ProbeSpec",
    "STALE_AFTER_S",
    "SnapshotEvent",
    "SourceFile",
    "SpanEvent",
    "Status",
    "StatusEvent",
    "Tokens",
    "Where",
    "fields_of",
    "from_mapping",
    "new_command_id",
    "parse_duration",
    "parse_rate",
    "parse_where",
    "plain",
    "sign_command",
]
