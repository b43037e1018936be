"""Plotly figures whose saved output is drawn offline too (nbconvert's HTML, a browser with no network).

In a kernel plotly's default renderer writes only `application/vnd.plotly.v1+json`: JupyterLab's
plotly extension draws it, an HTML export has nothing to draw. `EvidenceFigure` adds, beside it,
`text/html` that draws the figure with plotly.js, which the first figure a kernel shows carries
inline (about 5 MB, once, as plotly's "notebook" renderer does); the figures after it use that
copy, so each adds only its data. The live view is unchanged (the plotly extension ranks first).
A static SVG of the chart (`svgchart.figure_svg`) rides along as `image/svg+xml`, for readers that
run no script at all (GitHub's notebook view, a PDF).

>>> fig = EvidenceFigure(go.Scatter(x=[1, 2], y=[3, 4]))                   # doctest: +SKIP
>>> fig        # in a kernel: plotly's own output, and HTML that needs no network  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer

__all__ = ["EvidenceFigure", "offline_html"]

_CARRIER: Dict[str, Any] = {}  # the output that carries plotly.js in this kernel: its cell and run


def offline_html(fig: go.Figure, cell: Optional[str] = None, run: int = 0) -> str:
    """The figure as HTML that draws it with no network: plotly.js inline unless an earlier output of
    this kernel carries it (an output of cell `cell` from before this `run` no longer does: JupyterLab
    replaced it when it ran the cell again)."""
    include = not _CARRIER or (cell is not None and _CARRIER["cell"] == cell and _CARRIER["run"] != run)
    html = pio.to_html(fig, include_plotlyjs=include, full_html=False, include_mathjax=False, validate=False,
                       default_width="100%", default_height=fig.layout.height or 450)
    if include:
        _CARRIER.update(cell=cell, run=run)
    return html


def _where() -> Tuple[Optional[str], int]:
    """The cell running (JupyterLab names it; nbclient runs each cell once and does not) and the run."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        parent = getattr(shell, "parent_header", None) or {}
        return (parent.get("metadata") or {}).get("cellId"), int(getattr(shell, "execution_count", 0) or 0)
    except Exception:
        return None, 0


class EvidenceFigure(go.Figure):
    """A `plotly.graph_objects.Figure` whose display also holds offline HTML (see the module)."""

    def _ipython_display_(self) -> None:
        renderers = pio.renderers
        names = (renderers.default or "").split("+") if renderers.render_on_display else []
        if not names or not all(isinstance(renderers[n], MimetypeRenderer) for n in names):
            return super()._ipython_display_()  # a browser, or no rendering: plotly's own way
        bundle = self._repr_mimebundle_()
        if "text/html" in bundle:  # a renderer chosen by the user writes its own HTML
            return super()._ipython_display_()
        from IPython.display import display

        bundle["text/html"] = offline_html(self, *_where())
        try:  # a picture for readers that run no script (GitHub, a PDF); never in the way of the chart
            from .svgchart import figure_svg

            bundle["image/svg+xml"] = figure_svg(self)
        except Exception:  # noqa: BLE001 - a figure this drawing does not know: the HTML still shows it
            pass
        display(bundle, raw=True)
        return None
