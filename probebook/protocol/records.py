"""What an agent answers about itself, as records both sides share: its probes (`ProbeInfo`), the
source it runs (`ModuleSource`, `SourceFile`), its health (`AgentHealth`), and `from_mapping`, the
lenient reader a client uses on the JSON form of any of them.

>>> info = from_mapping(ProbeInfo, {"id": "p1", "kind": "log", "where": "shop/cart.py:42",
...                                  "status": "installed", "hits": 3, "new_in_v2": True})
>>> info.id, info.status, info.hits, info.reason, info.spec
('p1', 'installed', 3, '', {})
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple, Type, TypeVar

__all__ = ["AgentHealth", "ModuleSource", "ProbeInfo", "SourceFile", "from_mapping"]

T = TypeVar("T")
_ZERO = {"int": 0, "float": 0.0, "str": "", "bool": False}


def from_mapping(cls: Type[T], data: Mapping[str, Any]) -> T:
    """Build dataclass `cls` from what an agent sent: unknown keys are ignored (a newer agent may
    say more), missing ones get a zero value (an older agent may say less)."""
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = data[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            kwargs[f.name] = {"Dict": {}, "List": []}.get(kind.split("[")[0], _ZERO.get(kind))
    return cls(**kwargs)


@dataclass(frozen=True)
class ProbeInfo:
    """A read-only view of a probe, as listed by `Agent.probes()` and ``GET /v1/probes``.
    `status` is a `probebook.protocol.Status` word; `spec` the probe's spec in its plain form."""

    id: str
    kind: str
    where: str
    location: str
    status: str
    reason: str
    hits: int
    emitted: int
    rate_limited: int
    created: float
    expires_in: float
    spec: Dict[str, Any]
    filtered: int = 0  # hits whose condition was false (not in `hits`)
    failed: int = 0  # hits whose condition or value could not be evaluated: nothing emitted

@dataclass(frozen=True)
class ModuleSource:
    """A loaded module and the hash of its file (``GET /v1/source/modules``)."""

    name: str
    file: str
    sha256: str
    changed: bool = False  # modified on disk since the agent first hashed it


@dataclass(frozen=True)
class SourceFile:
    """Lines of a loaded module's file as the process runs it (``GET /v1/source``): (number, text)."""

    file: str
    sha256: str
    lines: List[Tuple[int, str]]
    total_lines: int
    truncated: bool = False


@dataclass(frozen=True)
class AgentHealth:
    """The typed part of an agent's health answer (``GET /v1/health``); `ok` when its status is "ok"."""

    status: str
    service: str
    instance_id: str
    pid: int
    python: str
    uptime_s: float
    probes: int
    active_probes: int
    dropped_events: int
    cpu_budget_used: float
    backend: str
    version: str
    ppid: int = 0  # 0 from an agent older than the field
    events_seq: int = 0  # the sequence number of its newest event

    @property
    def ok(self) -> bool:
        return self.status == "ok"
