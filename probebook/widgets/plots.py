"""Plotly charts of evidence: a metric over time, one line per (metric, instance).

>>> fig = metric_figure(inv.metric_frame("order_total"))                  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import polars as pl

__all__ = ["metric_figure"]


def metric_figure(frame: pl.DataFrame, title: str = "metric") -> Any:
    """`frame` has ts, instance_id, name, value (as `Investigation.metric_frame` gives)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if frame.height:
        for (name, instance), part in frame.sort("ts").group_by(["name", "instance_id"], maintain_order=True):
            fig.add_trace(go.Scatter(x=part["ts"].to_list(), y=part["value"].to_list(), mode="lines+markers",
                                     name=f"{name} · {instance}", marker={"size": 4}))
    fig.update_layout(title=f"{title} ({frame.height} points)", xaxis_title="time", yaxis_title="value",
                      height=320, margin={"l": 40, "r": 10, "t": 40, "b": 40}, template="plotly_white")
    return fig
