"""Plotly charts of evidence: a probe metric over time, one line per (metric, instance); a PromQL
result, one line per series (bars for an instant query). They are `EvidenceFigure`s: a notebook
exported to HTML draws them with no network.

>>> fig = metric_figure(inv.metric_frame("order_total"))                  # doctest: +SKIP
>>> fig = promql_figure(inv.telemetry.promql("up", range="10m"), "up")    # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import polars as pl

__all__ = ["metric_figure", "promql_figure"]


def metric_figure(frame: pl.DataFrame, title: str = "metric") -> Any:
    """`frame` has ts, instance_id, name, value (as `Investigation.metric_frame` gives)."""
    import plotly.graph_objects as go

    from .figure import EvidenceFigure

    fig = EvidenceFigure()
    if frame.height:
        for (name, instance), part in frame.sort("ts").group_by(["name", "instance_id"], maintain_order=True):
            fig.add_trace(go.Scatter(x=part["ts"].to_list(), y=part["value"].to_list(), mode="lines+markers",
                                     name=f"{name} · {instance}", marker={"size": 4}))
    fig.update_layout(title=f"{title} ({frame.height} points)", xaxis_title="time", yaxis_title="value",
                      height=320, margin={"l": 40, "r": 10, "t": 40, "b": 40}, template="plotly_white")
    return fig


def promql_figure(frame: pl.DataFrame, title: str = "") -> Any:
    """A figure of a `Telemetry.promql` frame: a line per series over time, or bars for an instant query."""
    import plotly.graph_objects as go

    from .figure import EvidenceFigure

    fig = EvidenceFigure()
    instant = frame.height > 0 and frame["ts"].n_unique() == 1
    for (series,), part in frame.group_by(["series"], maintain_order=True):
        name = series if len(series) <= 80 else series[:79] + "…"
        if instant:
            fig.add_trace(go.Bar(x=[name], y=part["value"].to_list(), name=name))
        else:
            fig.add_trace(go.Scatter(x=part["ts"].to_list(), y=part["value"].to_list(), mode="lines", name=name))
    fig.update_layout(title=title[:120], height=360, margin={"l": 40, "r": 20, "t": 40, "b": 30},
                      showlegend=frame["series"].n_unique() <= 20 if frame.height else False)
    return fig
