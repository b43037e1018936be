"""What an investigation hands back: a probe it placed (`ProbeRecord`) and what a snapshot waited
for (`SnapshotResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from probebook.connectors.agent_records import FleetProbe
from probebook.protocol.capture_tree import scalar

__all__ = ["ProbeRecord", "SnapshotResult"]


@dataclass
class ProbeRecord:
    """A probe placed through this investigation (possibly on many instances)."""

    alias: str
    fleet_id: str
    service: str
    kind: str
    where: str
    spec: Dict[str, object]  # the checked spec, as sent (`ProbeSpec.to_dict()`)
    placed_at: float
    placed: FleetProbe
    removed: bool = False
    removed_at: float = 0.0
    # the agents' counts when it was removed (hits, emitted, ...; summed over instances): what it did in all
    final: Dict[str, int] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return self.placed.summary()


@dataclass
class SnapshotResult:
    """What `Investigation.snapshot` waited for: the snapshots that arrived, newest last."""

    alias: str
    service: str
    where: str
    expressions: List[str]
    snapshots: List[Dict[str, object]] = field(default_factory=list)
    evidence_ids: List[str] = field(default_factory=list)
    timed_out: bool = False

    @property
    def values(self) -> List[Dict[str, Any]]:
        """Per snapshot: expression -> captured value (the plain value when it is a scalar)."""
        out = []
        for snap in self.snapshots:
            row = {}
            for src, node in (snap.get("expressions") or {}).items():
                row[src] = scalar(node)
            out.append(row)
        return out
