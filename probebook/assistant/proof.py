"""The proof gate: the only way a verdict becomes `proven`, `outside` or `no-fault`.

It runs in code on every verdict, whichever planner wrote it (the deterministic investigator, an
LLM, a person through the API). A cited evidence id counts only when it

(a) exists in the investigation's store,
(b) was captured by a probe this investigation placed after the incident opened,
(c) was captured inside the claimed locus (for an exception: that function is among its frames),
    on the claimed service,
(d) and, with the other cited ids that pass (a)-(c), satisfies the verdict's predicate.

`outside` needs the same at the boundary function of ours that calls the outside system, and so does
a `proven` verdict whose locus is a process (``payments process``: the process is gone or does not
answer, so no probe can run in it; what its callers got is the proof);
`no-fault` needs at least `NO_FAULT_MIN_HITS` events from such probes with the predicate false in
every one. A verdict that fails is downgraded (`proven`/`outside` to `likely` when it names a
service and locus, else `inconclusive`) and carries the reasons.

>>> from probebook.evidence import EvidenceStore
>>> gate = ProofGate(EvidenceStore(), opened_at=0.0)
>>> v = gate.check(Verdict("proven", "orders", "shop/a.py:f", "x", Predicate(capture="x", op=">", value=1),
...                        evidence=["snap:orders:i1:1"]))
>>> v.kind, v.reasons[0]
('likely', 'snap:orders:i1:1: no such evidence in this investigation')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from probebook.evidence import EvidenceStore
from probebook.evidence.predicate import Predicate, holds, judge, value_of
from probebook.evidence.schema import PREFIX_TABLE, TABLES, decode_row, sql_list

from .model import Hypothesis, Verdict, locus_matches, parse_locus, process_of

__all__ = ["ProofGate", "GateResult", "NO_FAULT_MIN_HITS", "load_events"]

NO_FAULT_MIN_HITS = 20
_ID = re.compile(r"^[A-Za-z0-9_.:@/-]{1,200}$")
@dataclass
class GateResult:
    """Per cited id: None when it passed (a)-(c), else the reason; and the verdict after the gate."""

    verdict: Verdict
    passed: List[str] = field(default_factory=list)
    refused: Dict[str, str] = field(default_factory=dict)


def _vacuous(pred: Predicate, locus: str) -> List[str]:
    """Claims true of every capture at the locus, whatever happened: refused."""
    _, qual = parse_locus(locus)
    if pred.stack and qual and (pred.stack == qual or qual.endswith("." + pred.stack)
                                or pred.stack.endswith("." + qual.split(".")[-1])):
        return [f"the stack of a capture in {qual} always holds {pred.stack}: name another frame"]
    return []


def load_events(store: EvidenceStore, ids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Stored events by evidence id, as event dicts (JSON columns parsed), with `service`, `probe_id`,
    `file`, `function` and a `placed_at` epoch of the probe that captured it (None if this
    investigation did not place that probe)."""
    out: Dict[str, Dict[str, Any]] = {}
    wanted: Dict[str, List[str]] = {}
    for eid in ids:
        table = PREFIX_TABLE.get(eid.split(":", 1)[0]) if _ID.match(eid) else None
        if table is not None and table != "probe_status":  # a status event is no evidence of a cause
            wanted.setdefault(table, []).append(eid)
    for table, eids in wanted.items():
        quoted = sql_list(eids)
        frame = store.sql(
            f"SELECT t.evidence_id, epoch(t.ts) AS ts, t.service, t.instance_id, t.probe_id, t.seq, t.file, t.line, "
            f"t.function, t.trace_id, {', '.join('t.' + c for c, _ in TABLES[table])}, epoch(p.placed_at) AS "
            f"placed_at, p.service AS probe_service FROM {table} t LEFT JOIN probes p "
            f"ON p.probe_id = t.probe_id AND p.service = t.service WHERE t.evidence_id IN ({quoted})")
        for row in frame.to_dicts():
            out[row["evidence_id"]] = decode_row(table, row)
    return out


class ProofGate:
    """Checks verdicts against the store; see the module docstring. `opened_at`: epoch seconds."""

    def __init__(self, store: EvidenceStore, opened_at: float, no_fault_min_hits: int = NO_FAULT_MIN_HITS) -> None:
        self.store = store
        self.opened_at = opened_at
        self.no_fault_min_hits = no_fault_min_hits

    def check(self, verdict: Verdict) -> Verdict:
        """The verdict as the gate lets it stand (a downgraded copy, with reasons, when it fails)."""
        return self.examine(verdict).verdict

    def final(self, verdict: Verdict, hypotheses: List[Hypothesis]) -> Verdict:
        """The answer a run ends with, from any planner: the verdict as the gate lets it stand, with the
        five best-scored of the run's hypotheses ranked under it."""
        checked = self.check(verdict)
        checked.ranked = sorted(hypotheses, key=lambda h: -h.score)[:5]
        return checked

    def examine(self, verdict: Verdict) -> GateResult:
        if verdict.kind in ("likely", "inconclusive"):
            return GateResult(verdict)
        if verdict.kind == "proven" and process_of(verdict.locus):
            if verdict.service != process_of(verdict.locus):
                return self._downgrade(verdict, {}, [f"the process locus {verdict.locus!r} names another service "
                                                     f"than {verdict.service!r}"])
            if not (verdict.boundary_service and verdict.boundary_locus):
                return self._downgrade(verdict, {}, ["a process verdict names the boundary: boundary_service and "
                                                     "boundary_locus (our function whose calls to it fail)"])
            return self._located(verdict, verdict.boundary_service, verdict.boundary_locus, "the boundary call")
        if verdict.kind == "proven":
            return self._located(verdict, verdict.service, verdict.locus, "the claimed locus")
        if verdict.kind == "outside":
            if not (verdict.boundary_service and verdict.boundary_locus):
                return self._downgrade(verdict, {}, ["an outside verdict names the boundary: boundary_service and "
                                                     "boundary_locus (our function that calls the outside system)"])
            return self._located(verdict, verdict.boundary_service, verdict.boundary_locus, "the boundary call")
        return self._no_fault(verdict)

    # ------------------------------------------------------------------ the checks
    def _admissible(self, verdict: Verdict, service: str, locus: Optional[str]) -> Tuple[List[Dict[str, Any]],
                                                                                           Dict[str, str]]:
        refused: Dict[str, str] = {}
        ok: List[Dict[str, Any]] = []
        cited = list(dict.fromkeys(verdict.evidence))
        events = load_events(self.store, cited)
        for eid in cited:
            ev = events.get(eid)
            if ev is None:
                refused[eid] = "no such evidence in this investigation"
            elif ev.get("placed_at") is None:
                refused[eid] = f"captured by probe {ev.get('probe_id')}, which this investigation did not place"
            elif ev["placed_at"] < self.opened_at:
                refused[eid] = f"captured by probe {ev.get('probe_id')}, placed before the incident opened"
            elif ev.get("service") != service:
                refused[eid] = f"captured on {ev.get('service')}, not on {service}"
            elif locus is not None and self._at_locus(ev, locus) is None:
                refused[eid] = f"captured in {ev.get('function') or '?'} ({ev.get('file') or '?'}), not inside {locus}"
            else:
                ok.append(self._at_locus(ev, locus) if locus is not None else ev)
        return ok, refused

    @staticmethod
    def _at_locus(ev: Dict[str, Any], locus: str) -> Optional[Dict[str, Any]]:
        """The event as seen inside `locus`: itself when it was captured there; for an exception, the
        event narrowed to the innermost frame of that function (its locals are what the predicate reads,
        never another frame's), or None when the locus is not among its frames."""
        if ev.get("kind") != "exception":
            return ev if locus_matches(locus, ev.get("file") or "", ev.get("function") or "") else None
        frames = [f for f in ev.get("frames") or [] if isinstance(f, Mapping)
                  and locus_matches(locus, f.get("file") or "", f.get("function") or "")]
        if not frames:
            return None
        return {**ev, "frames": [frames[-1]], "locals": frames[-1].get("locals") or {}}

    def _located(self, verdict: Verdict, service: str, locus: str, what: str) -> GateResult:
        reasons: List[str] = []
        if not verdict.predicate:
            reasons.append("no predicate: say what the evidence must show")
        else:
            reasons += _vacuous(verdict.predicate, locus)
        if not service or not locus:
            reasons.append(f"no service and locus for {what}")
        elif not all(parse_locus(locus)):
            reasons.append(f"the locus {locus!r} needs a file and a function: path.py:Qualified.name")
        if reasons:
            return self._downgrade(verdict, {}, reasons)
        ok, refused = self._admissible(verdict, service, locus)
        if not ok:
            return self._downgrade(verdict, refused, ["no cited evidence passed"] if not refused else [])
        why = judge(verdict.predicate, ok)  # type: ignore[arg-type]
        if why is None:
            return self._downgrade(verdict, refused, [f"the cited evidence does not show "
                                                      f"{verdict.predicate.describe()}"])  # type: ignore[union-attr]
        passed = [e["evidence_id"] for e in ok if verdict.predicate.agg == "median"  # type: ignore[union-attr]
                  or holds(verdict.predicate, e)]  # type: ignore[arg-type]
        return GateResult(replace(verdict, reasons=[f"proof: {why}"]), passed, refused)

    def _no_fault(self, verdict: Verdict) -> GateResult:
        pred = verdict.predicate
        if pred is None:
            return self._downgrade(verdict, {}, ["no predicate: say what a fault would have shown"])
        if not verdict.locus or not all(parse_locus(verdict.locus)):
            return self._downgrade(verdict, {}, ["no-fault names the path it watched: a locus path.py:Qualified.name"])
        ok, refused = self._admissible(verdict, verdict.service, verdict.locus)
        blind = [e["evidence_id"] for e in ok if value_of(pred, e) is None and not pred.stack]
        if blind:  # a predicate on something the events do not hold is false of anything
            return self._downgrade(verdict, refused, [f"{blind[0]} holds no {pred.capture or pred.field}: the "
                                                      f"predicate cannot be false there, only absent"])
        bad = [e["evidence_id"] for e in ok if holds(pred, e)]
        if bad:
            return self._downgrade(verdict, refused, [f"{bad[0]} shows {pred.describe()}: that is the fault"])
        if len(ok) < self.no_fault_min_hits:
            return self._downgrade(verdict, refused, [f"only {len(ok)} admissible events with the predicate false; "
                                                      f"no-fault needs {self.no_fault_min_hits}"])
        return GateResult(replace(verdict, reasons=[f"proof: {len(ok)} events on the suspected path, none shows "
                                                    f"{pred.describe()}"]), [e["evidence_id"] for e in ok], refused)

    @staticmethod
    def _downgrade(verdict: Verdict, refused: Mapping[str, str], reasons: List[str]) -> GateResult:
        kind = "likely" if verdict.kind != "no-fault" and verdict.service and (verdict.locus or verdict.kind ==
                                                                             "outside") else "inconclusive"
        why = [f"{eid}: {r}" for eid, r in refused.items()] + reasons
        return GateResult(replace(verdict, kind=kind, reasons=why), [], dict(refused))
