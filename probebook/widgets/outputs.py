"""The outputs a kernel shows its panels in, kept true to the panels in the saved notebook.

A panel is displayed with a display id (`HtmlPanel._ipython_display_`). At the end of every cell
(IPython's `post_run_cell`: in the kernel's thread while the cell's request is still open, so
nbclient records it as JupyterLab does) each panel whose HTML changed since its output was last
written gets that output written again (`update_display`): the widget view, and as `text/html`
the panel as it is now. A live view's widget keeps being updated by the publisher as before.

A panel that cannot change any more is frozen: its output becomes its last HTML and text, with no
widget view, so an exporter cannot prefer a widget placeholder that needs JavaScript from a CDN.
That is when a view says it is `final` (a probe panel whose probes all ended, an assistant view
whose run ended), when a newer panel of the same thing replaces it, and for every panel when the
investigation closes (`%unload_ext probebook`). A view that turns final while no cell runs is
frozen at once (JupyterLab sees it) and written again at the end of the next cell (nbclient reads
only the messages of the cell it runs).

>>> outputs = PanelOutputs(shell, publisher)                                   # doctest: +SKIP
>>> outputs.adopt(panel); display(panel)                                       # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

from .base import HtmlPanel
from .publisher import LivePublisher

__all__ = ["PanelOutputs"]

_FRESH = 1.0  # seconds after its display in which a live panel's output is not written again


class PanelOutputs:
    """One per kernel session; `close()` freezes every panel shown and unhooks from the shell."""

    def __init__(self, shell: Any, publisher: LivePublisher, settle_timeout: float = 0.5) -> None:
        self.shell = shell
        self.publisher = publisher
        self.settle_timeout = settle_timeout
        self.writes = 0
        self._shown: Dict[str, HtmlPanel] = {}  # display id -> panel whose outputs may still change
        self._written: Dict[str, Tuple[bool, str]] = {}  # display id -> (frozen, html) written in a cell
        self._shown_at: Dict[str, float] = {}  # display id -> when last displayed (monotonic)
        publisher.on_flushed = self._after_flush
        events = getattr(shell, "events", None)
        if events is not None:
            events.register("post_run_cell", self._after_cell)

    def adopt(self, panel: HtmlPanel) -> HtmlPanel:
        """Keep `panel`'s outputs current from its first display on."""
        panel.outputs = self
        return panel

    def shown(self, panel: HtmlPanel) -> None:
        """`panel` was just displayed (in the kernel's thread) with `panel.bundle()`."""
        self._shown[panel.display_id] = panel
        self._written[panel.display_id] = (panel.frozen, panel.html)
        self._shown_at[panel.display_id] = time.monotonic()

    # ------------------------------------------------------------------ writing outputs
    def refresh(self) -> None:
        """Write again the outputs of the panels that changed; freeze those that are final. Runs in
        the kernel's thread at the end of each cell."""
        now = time.monotonic()
        if any(not p.frozen and self.publisher.has(p) for p in self._shown.values()):
            self.publisher.settle(self.settle_timeout)
        for did, panel in list(self._shown.items()):
            if not panel.frozen:
                changes = self.publisher.pending(panel)  # computed, not sent yet: the newest state
                html = changes.get("html", panel.html)
                if changes.get("final", panel.final):
                    self.freeze(panel, html)
                elif now - self._shown_at.get(did, 0.0) >= _FRESH:  # a view just drawn is not drawn again
                    self._write(panel, html, in_cell=True)
                continue
            self._write(panel, panel.html, in_cell=True)
            self._forget(did)  # frozen: written for good

    def freeze(self, panel: HtmlPanel, html: Optional[str] = None, in_cell: bool = True) -> None:
        """Make `panel` static (`html`, default its own) and write its outputs so; the publisher lets it go."""
        if panel.frozen:
            return
        self.publisher.discard(panel)
        panel.freeze(html)
        if panel.display_id in self._shown:
            self._write(panel, panel.html, in_cell)
            if in_cell:
                self._forget(panel.display_id)

    def close(self) -> None:
        """The investigation closes: every panel shown is drawn once more and frozen (run after the
        publisher stopped and the probes were removed, in the kernel's thread)."""
        events = getattr(self.shell, "events", None)
        if events is not None:
            try:
                events.unregister("post_run_cell", self._after_cell)
            except ValueError:
                pass
        if self.publisher.on_flushed == self._after_flush:
            self.publisher.on_flushed = None
        for panel in list(self._shown.values()):
            html = self.publisher.pending(panel).get("html")
            try:
                changes = panel.compute(time.time()) if hasattr(panel, "compute") else None
                html = (changes or {}).get("html", html)
            except Exception:
                pass  # drawn as it last was
            self.freeze(panel, html)
        self._shown.clear()
        self._written.clear()
        self._shown_at.clear()

    def _write(self, panel: HtmlPanel, html: str, in_cell: bool) -> None:
        did = panel.display_id
        if in_cell and self._written.get(did) == (panel.frozen, html):
            return
        from IPython.display import update_display

        try:
            update_display(panel.bundle(html), raw=True, display_id=did)
        except Exception:
            return  # the kernel is going away; nothing to write to
        self.writes += 1
        # written outside a cell, nbclient did not see it: the end of the next cell writes it again
        self._written[did] = (panel.frozen, html) if in_cell else (False, "")

    def _forget(self, did: str) -> None:
        self._shown.pop(did, None)
        self._written.pop(did, None)
        self._shown_at.pop(did, None)

    # ------------------------------------------------------------------ hooks
    def _after_cell(self, _result: Any = None) -> None:
        try:
            self.refresh()
        except Exception:
            pass  # never into the user's cell; the next cell writes them again

    def _after_flush(self, views: Any) -> None:
        """The kernel's IO loop applied a flush: a view that turned final is frozen now."""
        for view in views:
            if isinstance(view, HtmlPanel) and view.final and view.display_id in self._shown:
                self.freeze(view, in_cell=False)
