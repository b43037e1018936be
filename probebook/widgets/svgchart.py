"""A chart as a static SVG image, drawn from the plotly figure itself with no browser and no package:
what a reader without JavaScript sees (GitHub's notebook view, a PDF, an image preview), beside the
interactive plotly output. Lines and bars, the title, the y-axis unit, the legend and the vertical
marks; no hover, no zoom.

>>> import plotly.graph_objects as go
>>> fig = go.Figure([go.Scatter(x=[1, 2, 3], y=[2.0, 4.0, 3.0], name="/api/cart"),
...                   go.Scatter(x=[1, 2, 3], y=[1.0, 1.0, 2.0], name="/api/checkout")])
>>> svg = figure_svg(fig)
>>> svg.startswith("<svg") and "/api/checkout" in svg and svg.count("<polyline") == 2
True
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from typing import Any, List, Optional, Sequence, Tuple

from .render import epoch

__all__ = ["figure_svg"]

_COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff",
            "#fecb52")
_L, _R, _T, _B = 64, 16, 40, 58  # margins: y ticks, right, title, x ticks and legend


def _num(v: Any) -> Optional[float]:
    """A coordinate as a float: a time (datetime or ISO text, as plotly keeps them) in epoch seconds."""
    if isinstance(v, (_dt.datetime, str)):
        return epoch(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _ticks(lo: float, hi: float, n: int = 5) -> List[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if step * m >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _label(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def _text(x: float, y: float, s: str, size: int = 11, anchor: str = "start", colour: str = "#444",
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{colour}"{extra}>'
            f"{html.escape(s)}</text>")


def figure_svg(fig: Any, width: int = 760, height: int = 340) -> str:
    """The figure's lines (Scatter) or bars (Bar), its title, y-axis title and tick suffix, legend and
    vertical line shapes with their annotations, as one SVG document."""
    layout = fig.layout
    suffix = layout.yaxis.ticksuffix or ""
    traces = [t for t in fig.data if t.type in ("scatter", "scattergl", "bar")]
    bars = bool(traces) and all(t.type == "bar" for t in traces)
    series: List[Tuple[str, List[Tuple[float, float]]]] = []
    for i, t in enumerate(traces):
        ys = list(t.y or ())
        xs = list(range(len(series), len(series) + len(ys))) if bars else list(t.x or ())
        pts = [(px, py) for px, py in ((_num(a), _num(b)) for a, b in zip(xs, ys)) if px is not None and py is not None]
        series.append((str(t.name or f"trace {i}"), pts))
    xs = [p[0] for _, pts in series for p in pts]
    ys = [p[1] for _, pts in series for p in pts]
    x_range = [_num(v) for v in (layout.xaxis.range or ())]
    x0, x1 = (x_range[0], x_range[1]) if len(x_range) == 2 and None not in x_range else (
        (min(xs), max(xs)) if xs else (0.0, 1.0))
    if bars:
        x0, x1 = -0.5, len(series) - 0.5
    yt = _ticks(min([0.0] + ys), max(ys) if ys else 1.0)
    y0, y1 = yt[0], max(yt[-1], max(ys) if ys else 1.0)
    pw, ph = width - _L - _R, height - _T - _B

    def X(v: float) -> float:
        return _L + (v - x0) / ((x1 - x0) or 1.0) * pw

    def Y(v: float) -> float:
        return _T + ph - (v - y0) / ((y1 - y0) or 1.0) * ph

    title = str((layout.title.text if layout.title else "") or "").split("<br>")[0]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'font-family="sans-serif"><rect width="{width}" height="{height}" fill="#fff"/>',
           _text(_L, 22, title, 14, colour="#222")]
    for v in yt:
        out.append(f'<line x1="{_L}" x2="{_L + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#eee"/>')
        out.append(_text(_L - 6, Y(v) + 4, _label(v) + suffix, anchor="end"))
    ytitle = str(layout.yaxis.title.text or "") if layout.yaxis.title else ""
    if ytitle:
        out.append(_text(14, _T + ph / 2, ytitle, 11, "middle", extra=f' transform="rotate(-90 14 {_T + ph / 2:.1f})"'))
    if not bars and xs:
        for v in _ticks(x0, x1, 4):
            if x0 <= v <= x1:
                when = _dt.datetime.fromtimestamp(v, _dt.timezone.utc).strftime("%H:%M:%S") if v > 1e8 else _label(v)
                out.append(_text(X(v), _T + ph + 16, when, anchor="middle"))
    for shape, note in zip(_vertical_lines(layout.shapes), _notes(layout.annotations, len(layout.shapes))):
        xv = _num(shape.x0)
        if xv is None or not x0 <= xv <= x1:
            continue
        colour = (shape.line.color if shape.line else None) or "#7f7f7f"
        out.append(f'<line x1="{X(xv):.1f}" x2="{X(xv):.1f}" y1="{_T}" y2="{_T + ph}" stroke="{colour}" '
                   f'stroke-dasharray="3,3"/>')
        if note:
            out.append(_text(X(xv) + 3, _T + 10, note, 10, colour="#555"))
    for i, (name, pts) in enumerate(series):
        colour = _COLOURS[i % len(_COLOURS)]
        if bars:
            for px, py in pts:
                w = pw / max(1, len(series)) * 0.6
                out.append(f'<rect x="{X(px) - w / 2:.1f}" y="{min(Y(py), Y(0.0)):.1f}" width="{w:.1f}" '
                           f'height="{abs(Y(0.0) - Y(py)):.1f}" fill="{colour}"/>')
        elif pts:
            line = " ".join(f"{X(px):.1f},{Y(py):.1f}" for px, py in sorted(pts))
            out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
    out.append(f'<line x1="{_L}" x2="{_L + pw}" y1="{_T + ph}" y2="{_T + ph}" stroke="#999"/>')
    lx = _L
    for i, (name, _) in enumerate(series if len(series) > 1 else ()):
        if lx > width - 80:
            break
        colour = _COLOURS[i % len(_COLOURS)]
        out.append(f'<rect x="{lx}" y="{height - 18}" width="14" height="3" fill="{colour}"/>')
        out.append(_text(lx + 18, height - 13, name[:40]))
        lx += 30 + 7 * len(name[:40])
    out.append("</svg>")
    return "".join(out)


def _vertical_lines(shapes: Sequence[Any]) -> List[Any]:
    return [s for s in shapes if s.type == "line" and s.x0 == s.x1 and s.yref == "paper"]


def _notes(annotations: Sequence[Any], n: int) -> List[str]:
    texts = [str(a.text or "") for a in annotations]
    return (texts + [""] * n)[:n]
