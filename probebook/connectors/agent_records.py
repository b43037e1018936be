"""Typed answers of agents as a client gathers them, shared by the HTTP clients and the Redis fleet:
events with the instance they came from, pages of them, and a fleet operation's answers. The records
an agent itself sends (`ProbeInfo`, `AgentHealth`, the events) are the protocol's.

>>> e = AgentEvent.from_dict({"kind": "log", "seq": 3, "ts": 1.5, "probe_id": "p1", "message": "hi"}, "shop-1")
>>> e.instance_id, e.seq, e.kind, e.data["message"]
('shop-1', 3, 'log', 'hi')
>>> FleetProbe("f1", {"a": InstanceResult("a", 201, {"probe": {"id": "f1", "status": "installed"}})}).summary()
'probe f1: installed on 1 of 1 instances'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from probebook.protocol.records import AgentHealth, ProbeInfo, from_mapping

__all__ = [
    "AgentEvent",
    "EventPage",
    "FleetInstance",
    "FleetProbe",
    "InstanceResult",
    "merge_events",
]


@dataclass(frozen=True)
class AgentEvent:
    """One event of one instance; `data` is the agent's `Event.to_dict()` (kind-specific fields)."""

    instance_id: str
    seq: int
    kind: str
    probe_id: str
    ts: float
    data: Dict[str, Any] = field(repr=False)
    service: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], instance_id: str, service: str = "") -> "AgentEvent":
        return cls(instance_id, int(data.get("seq", 0)), str(data.get("kind", "")), str(data.get("probe_id", "")),
                   float(data.get("ts", 0.0)), dict(data), service)


@dataclass(frozen=True)
class EventPage:
    """A read of one agent: pass `next` back as `after` to continue without gaps or repeats."""

    events: List[AgentEvent]
    next: int
    missed: int  # evicted from the agent's ring before this reader got them
    dropped_total: int


def merge_events(events: List[AgentEvent]) -> List[AgentEvent]:
    """Several instances' events in one timeline (by time, then instance and sequence)."""
    return sorted(events, key=lambda e: (e.ts, e.instance_id, e.seq))


@dataclass(frozen=True)
class FleetInstance:
    """An instance as the registry shows it; `stale` when its heartbeat stopped (older than 10 s)."""

    instance_id: str
    health: AgentHealth
    seen: float
    age_s: float
    stale: bool


@dataclass(frozen=True)
class InstanceResult:
    """What one instance answered to a fleet operation; `status` 0 means it did not answer."""

    instance_id: str
    status: int
    body: Dict[str, Any] = field(default_factory=dict, repr=False)
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def probe(self) -> Optional[ProbeInfo]:
        raw = self.body.get("probe")
        return from_mapping(ProbeInfo, raw) if isinstance(raw, Mapping) else None

    @property
    def message(self) -> str:
        if self.ok:
            return "ok"
        return self.error or str(self.body.get("error") or f"status {self.status}")


@dataclass(frozen=True)
class FleetProbe:
    """A probe placed on several instances: the fleet id and each instance's answer. `apart`: the
    instances that are supervisors (a gunicorn master): asked, but their answers decide nothing
    while another instance answered."""

    id: str
    results: Dict[str, InstanceResult]
    apart: Tuple[str, ...] = ()

    @property
    def deciding(self) -> Dict[str, InstanceResult]:
        """The answers that decide the probe's status: the workers', or every answer when only
        supervisors answered."""
        workers = {iid: r for iid, r in self.results.items() if iid not in self.apart}
        return workers or dict(self.results)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.deciding.values())

    @property
    def probe_ids(self) -> Dict[str, str]:
        """instance_id -> the probe's id on that instance."""
        return {iid: r.probe.id for iid, r in self.results.items() if r.ok and r.probe is not None}

    @property
    def failed(self) -> Dict[str, str]:
        """instance_id -> why it has no probe (a deciding instance)."""
        return {iid: r.message for iid, r in self.deciding.items() if not r.ok}

    def status_counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for r in self.deciding.values():
            key = r.probe.status if r.ok and r.probe is not None else "failed"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def summary(self) -> str:
        counts = ", ".join(f"{status} on {n}" for status, n in sorted(self.status_counts().items()))
        apart = len(self.results) - len(self.deciding)
        line = f"probe {self.id}: {counts} of {len(self.deciding)} instances" + (
            f" (and {apart} supervisor{'s' if apart > 1 else ''})" if apart else "")
        if self.failed:
            iid, why = sorted(self.failed.items())[0]
            line += f" (first failure: {iid}: {why})"
        return line
