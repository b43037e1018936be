"""The timeline view: what happened in the investigation, oldest first (marks, probes placed and
removed, connections), each entry with the evidence id a postmortem cites. Refreshed by the
publisher when an entry is added.

>>> TimelineView(inv)                                                     # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

import polars as pl

from probebook.session import Investigation

from .base import HtmlPanel
from .publisher import LiveView
from .render import panel
from .tables import frame_html

__all__ = ["TimelineView"]


class TimelineView(HtmlPanel, LiveView):
    """The investigation's timeline; looks for new entries at most once per `check_interval` s."""

    def __init__(self, inv: Investigation, check_interval: float = 1.0) -> None:
        super().__init__()
        self.inv = inv
        self.check_interval = check_interval
        self.entries = pl.DataFrame()
        self._checked = 0.0
        self.html = self.compute(time.time(), force=True)["html"]  # type: ignore[index]

    def compute(self, now: float, force: bool = False) -> Optional[Dict[str, Any]]:
        if not force and now - self._checked < self.check_interval:
            return None
        self._checked = now
        entries = self.inv.timeline()
        if not force and entries.height == self.entries.height:
            return None
        self.entries = entries
        return {"html": self._render()}

    def _render(self) -> str:
        n = self.entries.height
        if not n:
            return panel("timeline (0 entries)", '<div class="pb-note">nothing yet</div>', "timeline")
        shown = self.entries.select("ts", "source", "text", "evidence_id")
        return panel(f"timeline ({n} entries)", frame_html(shown, reorder=False, clock=True, badged=("source",),
                                                           limit=500, newest=True), "timeline")

    def text(self) -> str:
        return "\n".join([f"timeline ({self.entries.height} entries)"] + [
            f"  {r['ts']:%H:%M:%S} {r['source']:<8} {r['text']}  [{r['evidence_id']}]"
            for r in self.entries.iter_rows(named=True)])
