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

import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from .errors import ScenarioError
from .scenarios import Evidence, Proof

__all__ = ["plain", "value_of", "holds", "ProofResult", "resolve_probe", "place", "watch"]

_KINDS_WITH_DATA = ("snapshot", "log", "metric", "span", "exception")


def plain(node: Any) -> Any:
    """A captured node (docs/capture.md) as a plain value: numbers, text, lists, dicts; an exception
    as ``Type(arg, ...)`` text, a summarised object as its summary."""
    if not isinstance(node, Mapping):
        return node
    if "value" in node:
        return node["value"]
    if "args" in node:
        args = plain(node["args"])
        return f"{node.get('type')}({', '.join(repr(a) for a in (args or []))})"
    if "elements" in node:
        return [plain(e) for e in node["elements"]]
    if "entries" in node:
        return {str(plain(k)): plain(v) for k, v in node["entries"]}
    if "fields" in node:
        return {k: plain(v) for k, v in node["fields"].items()}
    return node.get("summary")


def _compare(actual: Any, op: str, expected: Any) -> bool:
    try:
        if op == "==":
            return bool(actual == expected)
        if op == "!=":
            return bool(actual != expected)
        if op == "contains":
            return str(expected) in str(actual)
        if op == "matches":
            return re.search(str(expected), str(actual)) is not None
        if op in (">", ">=", "<", "<="):
            a, b = float(actual), float(expected)
            return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]
    except (TypeError, ValueError):
        return False
    return False


def value_of(proof: Proof, event: Mapping[str, Any]) -> Any:
    """What `proof` looks at in one event: a capture (plain, or the node for op "type"), a field, the stack."""
    if proof.capture:
        node = (event.get("expressions") or {}).get(proof.capture)
        if node is None:
            node = (event.get("locals") or {}).get(proof.capture)
        return node if proof.op == "type" else plain(node)
    if proof.field:
        return event.get(proof.field)
    return [f.get("function") for f in event.get("stack") or []]


def holds(proof: Proof, event: Mapping[str, Any]) -> bool:
    """Does this one event show what `proof` asks for?"""
    actual = value_of(proof, event)
    if proof.stack:
        return proof.stack in (actual or [])
    if proof.op == "type":
        return isinstance(actual, Mapping) and actual.get("type") == proof.value
    return _compare(actual, proof.op, proof.value)


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
            elif e.kind in _KINDS_WITH_DATA:
                seen.append(e.data)
        if proof.absent:
            if seen:
                return ProofResult(False, f"expected no events, got {len(seen)} (first: {_brief(proof, seen[0])})",
                                   seen, statuses)
            if left <= 0:
                return ProofResult(True, f"no events in {timeout:g}s, as expected", seen, statuses)
            continue
        verdict = _judge(proof, seen)
        if verdict is not None:
            return ProofResult(True, verdict, seen, statuses)
        if left <= 0:
            last = _brief(proof, seen[-1]) if seen else "no events"
            return ProofResult(False, f"not proven in {timeout:g}s: {len(seen)} events, last {last}; "
                                      f"probe status: {statuses[-1] if statuses else 'none'}", seen, statuses)


def _judge(proof: Proof, seen: List[Dict[str, Any]]) -> Optional[str]:
    if len(seen) < proof.min_events:
        return None
    if proof.agg == "median":
        values = [v for v in (value_of(proof, e) for e in seen) if isinstance(v, (int, float))]
        if len(values) >= proof.min_events and _compare(statistics.median(values), proof.op, proof.value):
            return f"median {statistics.median(values):g} over {len(values)} events {proof.op} {proof.value}"
        return None
    for event in seen:
        if holds(proof, event):
            return f"{_brief(proof, event)} {proof.op} {proof.value!r}" if not proof.stack else \
                f"stack holds {proof.stack}"
    return None


def _brief(proof: Proof, event: Mapping[str, Any]) -> str:
    value = value_of(proof, event)
    name = proof.capture or proof.field or "stack"
    text = repr(value)
    return f"{name}={text[:120]}"
