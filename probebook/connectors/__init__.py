"""Clients to the outside: agents (HTTP, Redis fleet), Prometheus, Alertmanager, logs, changes.

>>> from probebook.connectors import AgentClient, ServiceClient, RedisFleet   # doctest: +SKIP

The telemetry clients live in their modules (`prometheus`, `alertmanager`, `logs`, `changes`) and
are imported from there, so the agent-side CLI does not pay for them.
"""

from probebook.errors import AgentAuthError, AgentRequestError, AgentUnreachable, ConnectorError, FleetEmpty
from probebook.protocol.records import AgentHealth

from .agent import AgentClient, RedisFleet
from .service import ServiceClient, read_port_dir
from .agent_records import AgentEvent, EventPage, FleetInstance, FleetProbe, InstanceResult

__all__ = [
    "AgentAuthError",
    "AgentClient",
    "AgentEvent",
    "AgentHealth",
    "AgentRequestError",
    "AgentUnreachable",
    "ConnectorError",
    "EventPage",
    "FleetEmpty",
    "FleetInstance",
    "FleetProbe",
    "InstanceResult",
    "RedisFleet",
    "ServiceClient",
    "read_port_dir",
]
