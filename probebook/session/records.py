"""What an investigation hands back: a probe it placed (`ProbeRecord`) and what a snapshot waited
for (`SnapshotResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping

from probebook.connectors.agent_records import FleetProbe
from probebook.evidence.schema import sql_list
from probebook.protocol.capture_tree import scalar
from probebook.protocol.kinds import ENDED

__all__ = ["COUNTS", "ProbeRecord", "SnapshotResult", "final_counts"]

COUNTS = ("hits", "emitted", "rate_limited", "filtered", "failed")  # hits = emitted + rate_limited + failed


def final_counts(answers: Mapping[str, Any]) -> Dict[str, int]:
    """The counts each instance's agent gave for the probe it removed, summed ({} where none did: a
    probe that had already left its agents' lists, expired, answers not found)."""
    probes = [a.probe for a in answers.values() if a.ok and a.probe is not None]
    return {k: sum(int(getattr(p, k, 0) or 0) for p in probes) for k in COUNTS} if probes else {}


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

    def ended(self, store: Any, ids: Iterable[str]) -> Dict[str, Any]:
        """Its row in `Investigation.probes()` once no agent lists it (an expired probe leaves the agents'
        lists after a grace): the last final status of `ids` in `store` (else `ended`), the counts as
        last removed."""
        last = store.sql(f"SELECT status, reason FROM probe_status WHERE probe_id IN ({sql_list(ids)}) "
                         f"AND status IN ({sql_list(sorted(ENDED))}) ORDER BY ts DESC LIMIT 1").rows()
        status, reason = last[0] if last else ("ended", "no instance lists it any more")
        return {**{k: self.final.get(k, 0) for k in COUNTS}, "statuses": {status}, "expires_in": 0.0,
                "reason": reason}


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
