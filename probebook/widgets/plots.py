"""Charts of evidence as an SRE reads them: a title that says what is measured (not the raw query),
a y-axis with the unit the metric's name implies, legend names made of only the labels that differ
between series, the investigation's marks (onset, `%mark`, probes placed, deploys) as vertical lines,
and one template for every chart. They are `EvidenceFigure`s: an exported notebook draws them with
no network.

>>> unit_of("histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))").name
'seconds'
>>> unit_of('sum by (route) (rate(http_requests_total{code=~"5.."}[1m]))').name
'per second'
>>> unit_of("sum(rate(errors_total[5m])) / sum(rate(requests_total[5m]))").name
'ratio'
>>> unit_of('sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m] offset 1h))').name
'ratio'
>>> describe("histogram_quantile(0.9, sum by (le, route) (rate(http_request_duration_seconds_bucket[5m])))")
'p90 of http_request_duration_seconds by route'
>>> describe('sum by (route) (rate(http_requests_total{code=~"5.."}[1m]))')
'rate of http_requests_total{code=~"5.."} by route, summed'
>>> fig = promql_figure(inv.telemetry.promql("up", range="10m"), "up")    # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import html
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import polars as pl

from .render import epoch

__all__ = ["metric_figure", "promql_figure", "unit_of", "describe", "legend_names", "Unit", "Mark", "investigation_marks",
           "fitted"]

Mark = Tuple[Any, str]  # (a datetime or epoch seconds, a short label)

_FUNCS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
          "inf", "nan"}
_AGGS = ("sum", "avg", "max", "min", "count", "stddev", "topk", "bottomk", "quantile")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass(frozen=True)
class Unit:
    """How a metric's values read: `name` for the axis title, `suffix` after each tick, `scale` applied
    to the values first, and plotly's `tickformat` (SI prefixes for bytes, a percentage for ratios)."""

    name: str = ""
    suffix: str = ""
    scale: float = 1.0
    tickformat: str = ""


_NONE = Unit()


def _strip(query: str) -> str:
    """The query without label matchers, ranges, strings and grouping clauses: only names and functions."""
    q = re.sub(r'"(?:\\.|[^"\\])*"', "", query)
    q = re.sub(r"\{[^}]*\}", "", q)
    q = re.sub(r"\[[^\]]*\]", "", q)
    q = re.sub(r"\boffset\s+-?[\dsmhdwy.]+", "", q)  # `offset 1h`: no metric named h
    q = re.sub(r"(?<![\w:])[\d.]+(e[+-]?\d+)?\b", "", q)  # numbers: 0.9, 1e3
    return re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", q)


def metric_names(query: str, repeat: bool = False) -> List[str]:
    """The metric names a PromQL query reads, in order (functions, keywords and numbers left out);
    `repeat`: each selector, also a name read twice (`rate(x{code="500"}) / rate(x)`)."""
    q = _strip(query)
    out: List[str] = []
    for m in _NAME.finditer(q):
        word = m.group(0)
        after = q[m.end():].lstrip()[:1]
        if after == "(" or word.lower() in _FUNCS or (word in out and not repeat):
            continue
        out.append(word)
    return out


def _is_ratio(query: str, names: Sequence[str]) -> bool:
    """A division of one count by another of the same kind (errors / requests), or a `_ratio` metric."""
    if any(n.endswith(("_ratio", "_ratios")) for n in names):
        return True
    q = _strip(query)
    selectors = metric_names(query, repeat=True)
    if "/" not in q or len(selectors) < 2 or re.search(r"/\s*[\d.]+\s*$", query):
        return False
    kinds = {re.sub(r"^.*?(_total|_count|_bucket|_sum|_seconds|_bytes)?$", r"\1", n) for n in selectors[:2]}
    return len(kinds) == 1


def unit_of(query: str, unit: str = "") -> Unit:
    """The unit a chart of `query` (a PromQL expression or a metric name) has; `unit`: one already
    known (a probe metric's), which wins."""
    given = unit.strip().lower()
    if given in ("s", "sec", "seconds"):
        return Unit("seconds", " s")
    if given in ("ms", "milliseconds"):
        return Unit("milliseconds", " ms")
    if given in ("bytes", "b"):
        return Unit("bytes", "B", tickformat=".3~s")
    if given in ("%", "percent"):
        return Unit("percent", "%")
    if given:
        return Unit(unit.strip(), " " + unit.strip())
    names = metric_names(query)
    base = re.sub(r"_(bucket|sum|count)$", "", names[0]) if names else ""
    low = query.replace(" ", "")
    if _is_ratio(query, names):
        return Unit("ratio", "%", scale=100.0)
    if base.endswith("_seconds") and not names[0].endswith("_count"):  # a quantile, an average, a gauge
        return Unit("seconds", " s")
    if base.endswith("_bytes"):
        return Unit("bytes", "B", tickformat=".3~s")
    if re.search(r"\b(i?rate)\(", low):
        return Unit("per second", "/s")
    if base.endswith("_percent"):
        return Unit("percent", "%")
    return _NONE


def describe(query: str) -> str:
    """What a query measures, in words: `p90 of X by route`, `rate of X by code, summed`."""
    q = query.strip()
    names = metric_names(q)
    if not names:
        return q[:100]
    m = re.search(r"\b(by|without)\s*\(([^)]*)\)", q)
    labels = [x.strip() for x in m.group(2).split(",") if x.strip() and x.strip() != "le"] if m else []
    grouped = f" {m.group(1)} {', '.join(labels)}" if m and labels else ""
    matchers = re.search(re.escape(names[0]) + r"(\{[^}]*\})", q)
    subject = names[0] + (matchers.group(1) if matchers else "")
    quantile = re.match(r"histogram_quantile\(\s*([\d.]+)", q)
    if quantile:
        return f"p{float(quantile.group(1)) * 100:g} of {re.sub(r'_bucket$', '', names[0])}{grouped}"
    if _is_ratio(q, names):
        selectors = re.findall(re.escape(names[0]) + r"(\{[^}]*\})?", q)
        if len(names) >= 2:
            return f"{names[0]} / {names[1]}{grouped}"
        return f"{names[0]}{selectors[0] if selectors else ''} / all {names[0]}{grouped}"
    fn = re.search(r"\b(irate|rate|increase|delta|deriv)\(", q)
    agg = re.match(r"(" + "|".join(_AGGS) + r")\b", q)
    text = f"{fn.group(1)} of {subject}" if fn else subject
    text += grouped
    if agg:
        text += {"sum": ", summed", "avg": ", averaged", "max": ", max", "min": ", min", "count": ", counted"}.get(
            agg.group(1), f", {agg.group(1)}")
    return text


def legend_names(frame: pl.DataFrame, keys: Sequence[str] = ("series",)) -> Dict[Any, str]:
    """series -> a short name: the values of the labels that differ between the series (`/api/cart`,
    or `route=/api/cart, code=500` when several differ); the metric name when only one series."""
    ignore = {"evidence_id", "ts", "value", "series", "error", "query", "source", "query_id"}
    labels = [c for c in frame.columns if c not in ignore and frame.schema[c] == pl.Utf8]
    per = frame.unique(subset=list(keys), maintain_order=True)
    differ = [c for c in labels if per[c].n_unique() > 1]
    out: Dict[Any, str] = {}
    for row in per.iter_rows(named=True):
        key = tuple(row[k] for k in keys) if len(keys) > 1 else row[keys[0]]
        if len(differ) == 1:
            name = str(row[differ[0]])
        elif differ:
            name = ", ".join(f"{c}={row[c]}" for c in differ if row[c] is not None)
        else:
            name = str(row.get("metric") or row.get("name") or "value")
        name = name if len(name) <= 60 else name[:59] + "…"
        out[key] = html.escape(name, quote=False)  # plotly reads <br>, <a href> in names as markup
    return out


def fitted(unit: Unit, values: Sequence[Optional[float]]) -> Unit:
    """Seconds that are all under one read better as milliseconds."""
    finite = [abs(v) for v in values if v is not None and v == v]
    if unit.name == "seconds" and finite and max(finite) < 1.0:
        return Unit("milliseconds", " ms", scale=1000.0)
    return unit


def investigation_marks(store: Any) -> List[Mark]:
    """What a chart of this investigation marks: the onset (the earliest start of an alert still
    firing), `%mark` notes, deploys and other changes, probes placed and removed."""
    marks: List[Mark] = []
    try:
        for row in store.sql("SELECT ts, source, text FROM timeline WHERE source IN ('mark', 'change', 'probe') "
                             "ORDER BY ts DESC LIMIT 40").iter_rows(named=True):
            text = row["text"]
            if row["source"] == "probe":  # "probe tot (log) placed on shop at ...": "probe tot placed"
                words = text.split()
                text = " ".join(words[:2] + [w for w in words[2:5] if w in ("placed", "removed")])
            marks.append((row["ts"], text))
    except Exception:  # noqa: BLE001 - no timeline yet: a chart without marks
        pass
    try:
        onset = store.sql("SELECT min(ts) AS t FROM alerts WHERE status = 'firing'")["t"][0]
        if onset is not None:
            marks.append((onset, "onset"))
    except Exception:  # noqa: BLE001 - no alerts table: no onset known
        pass
    return marks


# ---------------------------------------------------------------------- one look for every chart
def _template() -> Any:
    import plotly.graph_objects as go
    import plotly.io as pio

    if "probebook" not in pio.templates:
        t = go.layout.Template(pio.templates["plotly_white"])
        t.layout.update(font={"size": 12}, height=340, margin={"l": 60, "r": 20, "t": 56, "b": 40},
                        legend={"orientation": "h", "y": -0.2, "x": 0, "font": {"size": 11}},
                        hovermode="x unified", title={"x": 0.01, "font": {"size": 14}})
        pio.templates["probebook"] = t
    return "probebook"


def _when(value: Any) -> Optional[_dt.datetime]:
    """A mark's or a range's time as an aware datetime (from a datetime, ISO text or epoch seconds)."""
    t = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else epoch(value)
    return None if t is None else _dt.datetime.fromtimestamp(t, _dt.timezone.utc)


def _finish(fig: Any, title: str, query: str, unit: Unit, marks: Sequence[Mark],
            x_range: Optional[Tuple[Any, Any]]) -> Any:
    sub = f"<br><sup>{html.escape(query[:160], quote=False)}</sup>" if query and query != title else ""
    fig.update_layout(template=_template(), title={"text": html.escape(title[:120], quote=False) + sub},
                      yaxis={"title": {"text": unit.name or "value"}, "ticksuffix": unit.suffix,
                             "tickformat": unit.tickformat or None}, xaxis={"title": {"text": "time (UTC)"}})
    lo, hi = (_when(x_range[0]), _when(x_range[1])) if x_range else (None, None)
    shown = sorted((x, label) for x, label in ((_when(at), label) for at, label in marks)
                   if x is not None and not (lo and x < lo) and not (hi and x > hi))
    for x, labels in _clusters(shown, lo, hi):
        onset = "onset" in labels
        text = labels[0] if len(labels) == 1 else (
            f"{len(labels)} probes" if all(t.startswith("probe ") for t in labels) else f"{len(labels)} marks")
        fig.add_shape(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                      line={"color": "#c0392b" if onset else "#7f7f7f", "width": 1, "dash": "dot"})
        fig.add_annotation(x=x, y=1, xref="x", yref="paper", text=html.escape(("onset" if onset else text)[:32],
                                                                              quote=False),
                           showarrow=False, yanchor="bottom", font={"size": 10, "color": "#555"},
                           hovertext="<br>".join(html.escape(t, quote=False) for t in labels))
    if lo and hi:
        fig.update_xaxes(range=[lo, hi])
    return fig


def _clusters(marks: Sequence[Tuple[_dt.datetime, str]], lo: Optional[_dt.datetime],
              hi: Optional[_dt.datetime]) -> List[Tuple[_dt.datetime, List[str]]]:
    """Marks closer than 4 % of the time shown drawn as one line, their labels together (on hover)."""
    if not marks:
        return []
    start, end = lo or marks[0][0], hi or marks[-1][0]
    gap = max((end - start).total_seconds(), 1.0) * 0.04
    out: List[Tuple[_dt.datetime, List[str]]] = []
    for x, label in marks:
        if out and (x - out[-1][0]).total_seconds() <= gap:
            out[-1][1].append(label)
        else:
            out.append((x, [label]))
    return out


def metric_figure(frame: pl.DataFrame, title: str = "metric", unit: str = "", marks: Sequence[Mark] = (),
                  x_range: Optional[Tuple[Any, Any]] = None) -> Any:
    """A probe metric over time, one line per (metric, instance); `frame` has ts, instance_id, name, value
    (as `Investigation.metric_frame` gives); `unit`: the probe's, else inferred from the name."""
    import plotly.graph_objects as go

    from .figure import EvidenceFigure

    fig = EvidenceFigure()
    shape = fitted(unit_of(title, unit), frame["value"].to_list() if frame.height else [])
    if frame.height:
        names = legend_names(frame, ("name", "instance_id"))
        for (name, instance), part in frame.sort("ts").group_by(["name", "instance_id"], maintain_order=True):
            fig.add_trace(go.Scatter(x=part["ts"].to_list(), y=[v * shape.scale for v in part["value"].to_list()],
                                     mode="lines+markers", name=names.get((name, instance), name), marker={"size": 4}))
    return _finish(fig, f"{title} ({frame.height} values)", "", shape, marks, x_range)


def promql_figure(frame: pl.DataFrame, query: str = "", title: str = "", marks: Sequence[Mark] = (),
                  x_range: Optional[Tuple[Any, Any]] = None) -> Any:
    """A figure of a `Telemetry.promql` frame: a line per series over time, or bars for an instant query;
    `title`: what it shows (an alert's name), else `describe(query)`."""
    import plotly.graph_objects as go

    from .figure import EvidenceFigure

    fig = EvidenceFigure()
    shape = fitted(unit_of(query), frame["value"].to_list() if frame.height else [])
    instant = frame.height > 0 and frame["ts"].n_unique() == 1
    names = legend_names(frame) if frame.height else {}
    for (series,), part in frame.group_by(["series"], maintain_order=True):
        name = names.get(series, series)
        values = [v * shape.scale if v is not None else None for v in part["value"].to_list()]
        if instant:
            fig.add_trace(go.Bar(x=[name], y=values, name=name))
        else:
            fig.add_trace(go.Scatter(x=part["ts"].to_list(), y=values, mode="lines", name=name))
    fig.update_layout(showlegend=bool(frame.height) and 1 < frame["series"].n_unique() <= 20)
    return _finish(fig, title or describe(query), query, shape, () if instant else marks,
                   None if instant else x_range)
