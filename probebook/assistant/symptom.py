"""Is the symptom still there? After a containment action (or a fix), two checks, each evidence with ids:
the PromQL of every alert that opened the incident, asked until none of its series matches the alert's
labels (sooner than waiting for Alertmanager to resolve it), and the probes that proved the cause placed
again with the same predicate (`verify_fix`). `contained` needs at least one check that answered, and
none that still sees the symptom; too little to judge is `inconclusive`, said as such.

>>> SymptomCheck("contained", [{"alert": "HighErrorRate", "holds": False}]).summary()
'symptom gone: HighErrorRate no longer holds'
>>> matches_alert({"alertname": "X", "route": "/a"}, {"route": "/a", "value": 0.4}, ["route"])
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from probebook.errors import ProbebookError, one_line
from probebook.session import Investigation

from .model import Alert, Verdict
from .verify import verify_fix

__all__ = ["SymptomCheck", "check_symptom", "matches_alert"]

_NOT_LABELS = ("evidence_id", "ts", "series", "metric", "value")


@dataclass
class SymptomCheck:
    """`outcome`: ``contained``, ``still`` or ``inconclusive``. `alerts`: per alert its query, whether
    it still holds (None: could not be asked) and the evidence; `probe`: the verification's report."""

    outcome: str
    alerts: List[Dict[str, Any]] = field(default_factory=list)
    probe: Optional[Dict[str, Any]] = None
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        word = {"contained": "symptom gone", "still": "SYMPTOM STILL THERE", "inconclusive": "inconclusive"}
        parts = [f"{a['alert']} {'still holds' if a['holds'] else 'no longer holds'}"
                 for a in self.alerts if a.get("holds") is not None]
        if self.probe:
            parts.append(str(self.probe.get("headline")))
        parts += self.notes
        return f"{word[self.outcome]}: " + ("; ".join(parts) or "nothing could be checked")

    def to_dict(self) -> Dict[str, Any]:
        return {"outcome": self.outcome, "alerts": self.alerts, "probe": self.probe, "notes": self.notes,
                "summary": self.summary()}


def matches_alert(alert_labels: Mapping[str, str], row: Mapping[str, Any], columns: Sequence[str]) -> bool:
    """Does a series of the alert's query belong to this alert? Every label both have must agree."""
    return all(str(row.get(c)) == str(alert_labels[c]) for c in columns if c in alert_labels and row.get(c) is not None)


def _ask(inv: Investigation, query: str, labels: Mapping[str, str]) -> Tuple[bool, List[str]]:
    """Does `query` (an alert's rule) give a series of this alert now? And the evidence ids of those."""
    frame = inv.telemetry.promql(query)
    columns = [c for c in frame.columns if c not in _NOT_LABELS]
    hits = [r for r in frame.to_dicts() if matches_alert(labels, r, columns)]
    if hits:
        return True, [str(r["evidence_id"]) for r in hits][:5]
    last = inv.telemetry.last  # no series: the query itself (its id in `queries`) is the evidence
    return False, [last.query_id] if last is not None else []


def check_symptom(inv: Investigation, alerts: Sequence[Alert] = (), verdict: Optional[Verdict] = None,
                  timeout: float = 120.0, calls: int = 20, poll: float = 3.0,
                  progress: Optional[Callable[[str], None]] = None,
                  anchors: Optional[Mapping[str, str]] = None) -> SymptomCheck:
    """Ask each alert's PromQL every `poll` seconds until none holds or `timeout`; then, for a verdict
    with a predicate and evidence, place its probes again for `calls` calls. Every query and probe is
    stored, so the answer's evidence ids are rows of this investigation."""
    say = progress or (lambda line: None)
    deadline = time.monotonic() + timeout
    rows: List[Dict[str, Any]] = []
    notes: List[str] = []
    for alert in {(a.name, tuple(sorted(a.labels.items()))): a for a in alerts}.values():
        try:
            query = inv.telemetry.alert_query(alert.name)
        except ProbebookError as exc:
            notes.append(f"{alert.name}: its rule could not be read ({one_line(exc, 120)})")
            continue
        if not query:
            notes.append(f"{alert.name}: no alerting rule of that name in Prometheus")
            continue
        rows.append({"alert": alert.name, "labels": dict(alert.labels), "query": query, "holds": None, "evidence": []})
    while rows:
        for row in rows:
            if row["holds"] is False:
                continue
            try:
                row["holds"], found = _ask(inv, row["query"], row["labels"])
                row["evidence"] = found or row["evidence"]
            except ProbebookError as exc:
                row["holds"], row["error"] = None, one_line(exc, 160)
        if all(r["holds"] is False for r in rows) or time.monotonic() + poll > deadline:
            break
        time.sleep(poll)
    for row in rows:
        if row["holds"] is not None:
            say(f"symptom: {row['alert']} {'still holds' if row['holds'] else 'no longer holds'} ({row['query']})")
    probe = None
    if verdict is not None and verdict.predicate is not None and verdict.evidence:
        left = max(15.0, deadline - time.monotonic())
        try:
            probe = verify_fix(inv, verdict, calls=calls, timeout=left, progress=say, anchors=anchors).to_dict()
        except ProbebookError as exc:
            notes.append(f"the proof's probes could not be placed again: {one_line(exc, 160)}")
    answered = [r["holds"] for r in rows if r["holds"] is not None]
    if answered:  # the alert is the symptom; the probe is reported beside it
        outcome = "still" if any(answered) else "contained"
        if not any(answered) and probe and probe["outcome"] == "still":
            notes.append("the alerts are gone but the proof's predicate still holds on the calls seen: it may "
                         "describe the calls that failed rather than the fault; read the verdict again")
    else:
        outcome = {"gone": "contained", "still": "still"}.get(probe["outcome"] if probe else "", "inconclusive")
    check = SymptomCheck(outcome, rows, probe, notes)
    inv.mark(f"symptom check: {check.summary()}")
    return check
