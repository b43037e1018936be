"""Notebook panels: assistant view, live probe panel, snapshot viewer, timeline, services table, metric charts.

Every panel renders its HTML in Python; the same HTML is the live widget (anywidget) and the
static fallback for nbconvert and GitHub. Live panels are refreshed by one `LivePublisher`;
`PanelOutputs` keeps what a saved notebook holds of each panel as it last was.
"""

from .assistant_view import AssistantView
from .base import HtmlPanel
from .outputs import PanelOutputs
from .plots import metric_figure, promql_figure
from .probe_board import ProbeBoard, ProbeRow
from .probe_panel import ProbePanel
from .publisher import LivePublisher, LiveView, kernel_dispatch
from .services import ServicesView
from .snapshot_viewer import SnapshotViewer
from .tables import EvidenceTable, frame_html
from .timeline import TimelineView

__all__ = [
    "AssistantView",
    "EvidenceTable",
    "HtmlPanel",
    "LivePublisher",
    "LiveView",
    "PanelOutputs",
    "ProbeBoard",
    "ProbePanel",
    "ProbeRow",
    "ServicesView",
    "SnapshotViewer",
    "TimelineView",
    "frame_html",
    "kernel_dispatch",
    "metric_figure",
    "promql_figure",
]
