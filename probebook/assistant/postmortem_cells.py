"""What the cells of a postmortem notebook call (`postmortem.py` writes them): the cited evidence rows, the
proof gate run again on the saved evidence, the metric around the onset. Each reads an `Investigation`
opened read-only and shows the same every time it runs.

>>> from probebook.session import Investigation
>>> inv = Investigation()
>>> cited(inv, ["snap:orders:i1:7"]).height
0
>>> inv.close()
"""

from __future__ import annotations

import json
from typing import Any, List, Optional, Tuple

import polars as pl

from probebook.errors import AssistantError
from probebook.evidence.schema import PREFIX_TABLE, sql_list
from probebook.session import Investigation

from .model import Incident, Verdict
from .proof import ProofGate

__all__ = ["cited", "fix_replays", "gate_again", "onset_chart", "readable", "recorded", "sql_list"]

# what each kind of evidence says, beside where and when
_SAYS = {"snapshots": "expressions", "logs": "message", "metrics": "value", "spans": "duration_ns",
         "exceptions": "exc_type"}


def recorded(inv: Investigation, verdict_id: Optional[str] = None) -> Tuple[Optional[Incident], Optional[Verdict]]:
    """The verdict `verdict_id` (else the last one recorded) and the incident it answers, from the store;
    (None, None) when it recorded no verdict, an `AssistantError` when `verdict_id` is not there."""
    if "assistant_verdicts" not in inv.store.tables():
        if verdict_id:
            raise AssistantError(f"no verdict {verdict_id!r}: this investigation recorded no verdicts")
        return None, None
    where = f"WHERE evidence_id = {sql_list([verdict_id])}" if verdict_id else ""
    rows = inv.sql(f"SELECT incident, body FROM assistant_verdicts {where} ORDER BY ts DESC LIMIT 1").rows()
    if not rows:
        if verdict_id:
            raise AssistantError(f"no verdict {verdict_id!r} in this investigation; leave it out for the last one")
        return None, None
    inc = inv.sql(f"SELECT body FROM assistant_incidents WHERE evidence_id = {sql_list([rows[0][0]])}").rows()
    return (Incident.from_dict(json.loads(inc[0][0])) if inc else None), Verdict.from_dict(json.loads(rows[0][1]))


def readable() -> None:
    """Tables shown whole enough to read: evidence ids and texts uncut, up to 60 rows."""
    pl.Config.set_fmt_str_lengths(120)
    pl.Config.set_tbl_rows(60)
    pl.Config.set_tbl_width_chars(240)


def cited(inv: Investigation, ids: List[str]) -> pl.DataFrame:
    """The evidence rows `ids` name, oldest first: id, time, service, function, line and what each says."""
    frames = []
    for table in sorted({PREFIX_TABLE[i.split(":", 1)[0]] for i in ids if i.split(":", 1)[0] in PREFIX_TABLE}):
        wanted = sql_list(ids)
        frames.append(inv.sql(
            f"SELECT evidence_id, ts, service, function, line, CAST({_SAYS.get(table, 'NULL')} AS VARCHAR) AS says "
            f"FROM {table} WHERE evidence_id IN ({wanted})"))
    if not frames:
        return pl.DataFrame({"evidence_id": [], "says": []}, schema={"evidence_id": pl.Utf8, "says": pl.Utf8})
    return pl.concat(frames, how="vertical_relaxed").sort(["ts", "evidence_id"])


def gate_again(inv: Investigation, verdict_id: str) -> pl.DataFrame:
    """The proof gate run again on the saved evidence of verdict `verdict_id`: what it was, what the gate
    says now, and its reasons (a store edited since shows here as a changed kind)."""
    incident, verdict = recorded(inv, verdict_id)
    if verdict is None:
        raise AssistantError(f"no verdict {verdict_id!r} in this investigation")
    opened = incident.opened_at if incident is not None else 0.0
    again = ProofGate(inv.store, opened).check(verdict)
    return pl.DataFrame({"verdict": [verdict.id], "recorded": [verdict.kind], "gate_now": [again.kind],
                         "reasons": ["; ".join(again.reasons)]})


def onset_chart(inv: Investigation) -> Any:
    """The metric series the investigation fetched, as a plotly figure (one line per series)."""
    import plotly.graph_objects as go

    frame = inv.sql("SELECT ts, series, value, query FROM metric_series ORDER BY series, ts")
    fig = go.Figure()
    for (series,), part in frame.group_by(["series"], maintain_order=True):
        fig.add_trace(go.Scatter(x=part["ts"].to_list(), y=part["value"].to_list(), mode="lines", name=str(series)))
    query = frame["query"][0] if frame.height else ""
    fig.update_layout(title=f"around the onset: {query}", xaxis_title="time", yaxis_title="value")
    return fig


def fix_replays(inv: Investigation) -> pl.DataFrame:
    """Every captured call each candidate fix was replayed on: the validation's id, the function, the
    call's evidence id, whether it showed the defect, its arguments, and the answer before and after, with the
    milliseconds each took in the replay."""
    rows = []
    for vid, body in inv.sql("SELECT evidence_id, body FROM assistant_fix_validations ORDER BY ts, evidence_id").rows():
        for locus, report in json.loads(body).get("reports", {}).items():
            for r in report.get("rows", []):
                rows.append({"validation": vid, "function": locus.rsplit("/", 1)[-1], "call": r["evidence_id"],
                             "showed_defect": bool(r["failed_in_production"]),
                             "arguments": ", ".join(f"{k}={v}" for k, v in r["arguments"].items()),
                             "before": _answer(r["before"]), "after": _answer(r["after"]),
                             "before_ms": r["before"].get("ms"), "after_ms": r["after"].get("ms")})
    schema = {k: pl.Utf8 for k in ("validation", "function", "call", "arguments", "before", "after")}
    return pl.DataFrame(rows, schema={**schema, "showed_defect": pl.Boolean, "before_ms": pl.Float64,
                                      "after_ms": pl.Float64}).select(
        ["validation", "function", "call", "showed_defect", "arguments", "before", "after", "before_ms", "after_ms"])


def _answer(a: Any) -> str:
    if a.get("ok"):
        return str(a.get("value"))
    return f"raised {a.get('raised')}: {a.get('message', '')}"
