"""Placing a ground truth's decisive probe in the running shop and checking that what it captured
proves the cause. Used by the lab's tests, and by whoever scores an investigation against the lab.

>>> node = {"type": "OSError", "args": {"type": "tuple", "elements": [
...     {"type": "int", "value": 28}, {"type": "str", "value": "No space left on device"}]}}
>>> plain(node)
"OSError(28, 'No space left on device')"
>>> holds(Proof(capture="exc", op="contains", value="No space"), {"expressions": {"exc": node}})
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping

from probebook.errors import ScenarioError
from probebook.evidence.predicate import brief, holds, judge, value_of
from probebook.protocol.capture_tree import plain  # noqa: F401  (the docstring shows it)
from probebook.protocol.kinds import KINDS

from .scenarios import Evidence, Proof

__all__ = ["value_of", "holds", "ProofResult", "resolve_probe", "place", "watch"]


@dataclass
class ProofResult:
    proven: bool
    detail: str
    events: List[Dict[str, Any]] = field(default_factory=list)
    statuses: List[str] = field(default_factory=list)


def resolve_probe(client: Any, probe: Mapping[str, Any]) -> Dict[str, Any]:
    """The probe spec with `file` + `at` turned into ``where = "file:LINE"``, found in the code the
    service is running now (the agent's source API)."""
    spec = {k: v for k, v in probe.items() if k not in ("file", "at")}
    if "where" in probe:
        return spec
    source = client.source_file(str(probe["file"]))
    lines = [n for n, text in source.lines if str(probe["at"]) in text]
    if len(lines) != 1:
        raise ScenarioError(f"ground truth probe: {probe['at']!r} is on {len(lines)} lines of {probe['file']} as "
                            f"running; make 'at' match exactly one line")
    spec["where"] = f"{probe['file']}:{lines[0]}"
    return spec


def place(client: Any, evidence: Evidence) -> str:
    """Place the decisive probe; answer its id."""
    spec = resolve_probe(client, evidence.probe)
    return str(client.add_probe(spec).id)


def watch(client: Any, probe_id: str, proof: Proof, timeout: float, after: int = 0) -> ProofResult:
    """Read the probe's events until they prove the cause or `timeout` passes. With `spec.absent`,
    the proof is that no event arrives for the whole `timeout`."""
    seen: List[Dict[str, Any]] = []
    statuses: List[str] = []
    deadline = time.monotonic() + timeout
    cursor = after
    while True:
        left = deadline - time.monotonic()
        page = client.events(after=cursor, timeout=max(0.0, min(1.0, left)))
        cursor = page.next
        for e in page.events:
            if e.probe_id != probe_id:
                continue
            if e.kind == "status":
                statuses.append(f"{e.data.get('status')}: {e.data.get('reason')}")
            elif e.kind in KINDS:
                seen.append(e.data)
        if proof.absent:
            if seen:
                return ProofResult(False, f"expected no events, got {len(seen)} (first: {brief(proof, seen[0])})",
                                   seen, statuses)
            if left <= 0:
                return ProofResult(True, f"no events in {timeout:g}s, as expected", seen, statuses)
            continue
        verdict = judge(proof, seen)
        if verdict is not None:
            return ProofResult(True, verdict, seen, statuses)
        if left <= 0:
            last = brief(proof, seen[-1]) if seen else "no events"
            return ProofResult(False, f"not proven in {timeout:g}s: {len(seen)} events, last {last}; "
                                      f"probe status: {statuses[-1] if statuses else 'none'}", seen, statuses)
