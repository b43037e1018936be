"""Is the symptom still there? After a containment action (or a fix), two checks, each evidence with ids:
the PromQL of every alert that opened the incident (each rule of its name whose labels agree), asked until
none of its series matches the alert's labels (sooner than waiting for Alertmanager to resolve it), and the
probes that proved the cause placed again with the same predicate (`verify_fix`).

The alert is the symptom: ``contained`` when every alert's query answered and none holds, ``still`` when
one holds, ``partly`` when one holds but another that held before the action went (the action undid part
of it; what stays may have another cause, an outside one still there); an alert whose query did not hold
before the action either (`before`) cannot credit the action with its going: ``inconclusive``. Without an
alert the probe decides (``gone`` or ``still``); with neither, ``inconclusive``. When the alerts are gone
but the proof's predicate still holds, the answer says so beside ``contained``: the predicate may describe
the failing calls rather than the fault.

>>> SymptomCheck("contained", [{"alert": "HighErrorRate", "holds": False}]).summary()
'symptom gone: HighErrorRate no longer holds'
>>> matches_alert({"alertname": "X", "route": "/a"}, {"route": "/a", "value": 0.4}, ["route"])
True
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from probebook.errors import ProbebookError, one_line
from probebook.session import Investigation

from .model import Alert, Verdict
from .verify import verify_fix

__all__ = ["SymptomCheck", "check_symptom", "matches_alert", "ask_alert_query", "alerts_now", "lookback_s"]

_NOT_LABELS = ("evidence_id", "ts", "series", "metric", "value")


@dataclass
class SymptomCheck:
    """`outcome`: ``contained``, ``still``, ``partly`` or ``inconclusive``. `alerts`: per alert and query,
    whether it still holds (None: could not be asked) and the evidence; `probe`: the verification's report."""

    outcome: str
    alerts: List[Dict[str, Any]] = field(default_factory=list)
    probe: Optional[Dict[str, Any]] = None
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        word = {"contained": "symptom gone", "still": "SYMPTOM STILL THERE", "partly": "contained in part",
                "inconclusive": "inconclusive"}
        parts = [f"{_named(a)} {'still holds' if a['holds'] else 'no longer holds'}"
                 for a in self.alerts if a.get("holds") is not None]
        if self.probe:
            parts.append(str(self.probe.get("headline")))
        parts += self.notes
        return f"{word[self.outcome]}: " + ("; ".join(parts) or "nothing could be checked")

    def to_dict(self) -> Dict[str, Any]:
        return {"outcome": self.outcome, "alerts": self.alerts, "probe": self.probe, "notes": self.notes,
                "summary": self.summary()}


def _named(row: Mapping[str, Any]) -> str:
    """An alert with the labels that tell it from others of its name: ``HighErrorRate{route=/pay}``."""
    own = {k: v for k, v in (row.get("labels") or {}).items() if k not in ("alertname", "severity")}
    return str(row["alert"]) + ("{" + ", ".join(f"{k}={v}" for k, v in sorted(own.items())) + "}" if own else "")


def matches_alert(alert_labels: Mapping[str, str], row: Mapping[str, Any], columns: Sequence[str]) -> bool:
    """Does a series of the alert's query belong to this alert? Every label both have must agree."""
    return all(str(row.get(c)) == str(alert_labels[c]) for c in columns if c in alert_labels and row.get(c) is not None)


def ask_alert_query(inv: Investigation, query: str, labels: Mapping[str, str]) -> Tuple[bool, List[Dict[str, Any]],
                                                                                       List[str]]:
    """Does `query` (an alert's rule) give a series of the alert with `labels` now? Answers that, those
    series, and the evidence ids (the series' rows, or with none the query's own id in `queries`)."""
    frame = inv.telemetry.promql(query)
    columns = [c for c in frame.columns if c not in _NOT_LABELS]
    hits = [r for r in frame.to_dicts() if matches_alert(labels, r, columns)]
    if hits:
        return True, hits, [str(r["evidence_id"]) for r in hits][:5]
    last = inv.telemetry.last
    return False, [], [last.query_id] if last is not None else []


def _rows(inv: Investigation, alerts: Sequence[Alert], notes: List[str]) -> List[Dict[str, Any]]:
    rows = []
    for alert in {(a.name, tuple(sorted(a.labels.items()))): a for a in alerts}.values():
        try:
            queries = inv.telemetry.alert_queries(alert.name, alert.labels)
        except ProbebookError as exc:
            notes.append(f"{alert.name}: its rule could not be read ({one_line(exc, 120)})")
            continue
        if not queries:
            notes.append(f"{alert.name}: no alerting rule of that name (and labels) in Prometheus")
        rows += [{"alert": alert.name, "labels": dict(alert.labels), "query": q, "holds": None, "evidence": []}
                 for q in queries]
    return rows


def _ask_all(inv: Investigation, rows: List[Dict[str, Any]]) -> None:
    for row in rows:
        if row["holds"] is False:
            continue
        try:
            row["holds"], _, found = ask_alert_query(inv, row["query"], row["labels"])
            row["evidence"] = found or row["evidence"]
        except ProbebookError as exc:
            row["holds"], row["error"] = None, one_line(exc, 160)


def _ask_until_quiet(inv: Investigation, rows: List[Dict[str, Any]], until: float, poll: float,
                     retry_unasked: bool = False) -> None:
    """Ask every row, then again every `poll` seconds while one holds (with `retry_unasked`, or could not be
    asked: Prometheus restarting) and the next ask is before `until` (a `time.monotonic()` reading)."""
    _ask_all(inv, rows)
    while any(r["holds"] is not False if retry_unasked else r["holds"] for r in rows) and \
            time.monotonic() + poll <= until:
        time.sleep(poll)
        _ask_all(inv, rows)


def alerts_now(inv: Investigation, alerts: Sequence[Alert], since: Optional[float] = None, wait: float = 0.0,
               poll: float = 3.0) -> Dict[Tuple[str, str], Optional[bool]]:
    """Each (alert, query) of `alerts` asked now: holds, does not, or None (could not be asked). With
    `since` (a `time.monotonic()` reading, when a change went out), a query that holds is asked again every
    `poll` seconds until it does not, or until `wait` seconds and its look-back (`lookback_s`, at most five
    minutes) have passed since then: a rule over a window reads the time before the change until the
    window has moved past it, and a restarted service warms up (a cache refills) before it settles."""
    rows = _rows(inv, alerts, [])
    until = time.monotonic()
    if since is not None and rows:
        until = since + max(wait, min(300.0, max(lookback_s(r["query"]) for r in rows) + 2 * poll))
    _ask_until_quiet(inv, rows, until, poll)
    return {(r["alert"], r["query"]): r["holds"] for r in rows}


_RANGE = re.compile(r"\[(\d+(?:\.\d+)?)(ms|s|m|h|d)(?::[^\]]*)?\]")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def lookback_s(query: str) -> float:
    """How far back a PromQL query reads: its longest range (``[5m]``, a subquery's ``[1m:10s]``), else 0.

    >>> lookback_s("rate(x[30s]) > 0 and deriv(y[2m]) > 0"), lookback_s("up == 0")
    (120.0, 0.0)
    """
    return max((float(n) * _UNIT_S[u] for n, u in _RANGE.findall(query)), default=0.0)


def check_symptom(inv: Investigation, alerts: Sequence[Alert] = (), verdict: Optional[Verdict] = None,
                  timeout: float = 120.0, calls: int = 20, poll: float = 3.0,
                  progress: Optional[Callable[[str], None]] = None, anchors: Optional[Mapping[str, str]] = None,
                  before: Optional[Mapping[Tuple[str, str], Optional[bool]]] = None) -> SymptomCheck:
    """Ask each alert's PromQL every `poll` seconds until none holds or `timeout`; then, for a verdict
    with a predicate and evidence, place its probes again for `calls` calls. `before`: what `alerts_now`
    answered before the action. Every query and probe is stored, so the evidence ids are this
    investigation's rows."""
    say = progress or (lambda line: None)
    deadline = time.monotonic() + timeout
    notes: List[str] = []
    rows = _rows(inv, alerts, notes)
    _ask_until_quiet(inv, rows, deadline, poll, retry_unasked=True)  # every query answered, or the deadline
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
    quiet_before = before is not None and bool(rows) and all(before.get((r["alert"], r["query"])) is False
                                                             for r in rows)
    if answered and any(answered):
        was = before or {}
        went = [r for r in rows if r["holds"] is False and was.get((r["alert"], r["query"])) is True]
        if went:  # asked once more: one quiet evaluation of a flapping alert is not its going
            again = [dict(r, holds=None) for r in went]
            _ask_all(inv, again)
            for r, a in zip(went, again):
                if a["holds"] is not None:
                    r.update(holds=a["holds"], evidence=a["evidence"])
            went = [r for r in went if r["holds"] is False]
        outcome = "partly" if went else "still"
        if outcome == "partly":  # what the action undid went; what stays may have another cause (outside)
            notes.append(f"{', '.join(dict.fromkeys(_named(r) for r in went))} held before the action and went; "
                         f"{', '.join(dict.fromkeys(_named(r) for r in rows if r['holds']))} still hold: another "
                         f"cause may be behind those")
        back = [r for r in rows if r["holds"] and was.get((r["alert"], r["query"])) is False]
        if back:  # an incident alert quiet just before the action holds again: it flaps, or the action
            notes.append(f"{', '.join(dict.fromkeys(_named(r) for r in back))} did not hold just before the action "
                         f"and holds now: it flaps, or the action made it fire again")
    elif answered and quiet_before:
        outcome = "inconclusive"
        notes.append("no alert's query held before the action either: its going cannot be credited to the action")
    elif answered:  # the alert is the symptom; the probe is reported beside it
        outcome = "contained"
        if probe and probe["outcome"] == "still":
            notes.append("the alerts are gone but the proof's predicate still holds on the calls seen: it may "
                         "describe the calls that failed rather than the fault; read the verdict again")
    else:
        outcome = {"gone": "contained", "still": "still"}.get(probe["outcome"] if probe else "", "inconclusive")
    check = SymptomCheck(outcome, rows, probe, notes)
    inv.mark(f"symptom check: {check.summary()}")
    return check
