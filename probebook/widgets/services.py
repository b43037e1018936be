"""The services table of `%services`: instances, Python, probes and health of each connected service.

>>> ServicesView(inv.services())                                          # doctest: +SKIP
"""

from __future__ import annotations

import polars as pl

from .render import CSS, badge, esc, panel, table

__all__ = ["ServicesView"]

_COLUMNS = ("service", "target", "instances", "healthy", "python", "probes", "dropped_events", "health", "problem")


class ServicesView:
    """A static table (a service's health is a moment's answer; run `%services` again to refresh)."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    def _repr_html_(self) -> str:
        cols = [c for c in _COLUMNS if c in self.frame.columns]
        rows = [[badge(r[c]) if c == "health" else esc(r[c]) for c in cols] for r in self.frame.iter_rows(named=True)]
        body = table(cols, rows) if rows else '<div class="pb-note">no service connected: %connect NAME URL</div>'
        return f"<style>{CSS}</style>" + panel("services", body, "services")

    def __repr__(self) -> str:
        if not self.frame.height:
            return "no service connected: %connect NAME URL"
        return "\n".join(f"{r['service']}: {r.get('health')} instances={r.get('instances')} healthy={r.get('healthy')} "
                         f"python={r.get('python')} probes={r.get('probes')}"
                         + (f" problem={r['problem']}" if r.get("problem") else "")
                         for r in self.frame.iter_rows(named=True))
