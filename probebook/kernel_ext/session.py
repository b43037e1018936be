"""The kernel's one investigation, opened when a magic first needs it, with its live panels.

`probebook.kernel_ext.investigation()` returns the same `Investigation` the magics use, so a cell
can mix magics and plain Python calls. In a kernel, `PanelOutputs` keeps the panels' outputs as
they last were (and static once they cannot change, or when the session closes).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

from probebook.assistant.background import AssistantRun
from probebook.errors import EvidenceError, SessionError, one_line
from probebook.session import Investigation
from probebook.widgets import (AssistantView, HtmlPanel, LivePublisher, PanelOutputs, ProbeBoard, ProbePanel,
                               TimelineView, kernel_dispatch)

from .config import Probebook

__all__ = ["KernelSession"]


class KernelSession:
    """One per kernel (or per process outside one). `close()` removes the probes it placed."""

    def __init__(self, shell: Any = None, config: Optional[Probebook] = None) -> None:
        self.shell = shell
        self.config = config if config is not None else Probebook(parent=shell)
        self._inv: Optional[Investigation] = None
        self._board: Optional[ProbeBoard] = None
        self._publisher: Optional[LivePublisher] = None
        self._outputs: Optional[PanelOutputs] = None
        self._live: Dict[Any, Any] = {}  # what a panel shows -> the panel kept live for it
        self.assistant_run: Optional[AssistantRun] = None  # the last one %%assistant / %investigate started
        self.remediation: Any = None  # what %contain changes services through (--remediation), once named

    # ------------------------------------------------------------------ the investigation
    def evidence_path(self) -> str:
        """`Probebook.evidence_path`, else beside the notebook, else the working directory."""
        if self.config.evidence_path:
            path = self.config.evidence_path
            return path if path == ":memory:" else os.path.abspath(os.path.expanduser(path))
        notebook = os.environ.get("JPY_SESSION_NAME", "")
        if notebook.endswith(".ipynb") and os.path.isdir(os.path.dirname(notebook) or "."):
            return os.path.abspath(notebook[: -len(".ipynb")] + ".evidence.duckdb")
        return os.path.abspath("probebook-evidence.duckdb")

    def investigation(self) -> Investigation:
        if self._inv is None:
            path = self.evidence_path()
            try:
                self._inv = Investigation(path)
            except EvidenceError as exc:  # in use by another process, a directory, no permission
                raise SessionError(f"cannot open the evidence file {path}: {one_line(exc, 200)}; "
                                   f"choose another with %config Probebook.evidence_path = 'FILE'") from None
            # the board listens from the start, so panels count every event, even those before them
            self._board = ProbeBoard(self._inv, poll_interval=max(0.2, self.config.status_interval))
        return self._inv

    @property
    def board(self) -> ProbeBoard:
        self.investigation()
        assert self._board is not None
        return self._board

    @property
    def publisher(self) -> LivePublisher:
        if self._publisher is None:
            self._publisher = LivePublisher(kernel_dispatch(self.shell), max_hz=self.config.update_hz)
        return self._publisher

    def adopt(self, panel: HtmlPanel) -> HtmlPanel:
        """In a kernel, keep `panel`'s outputs in the notebook as it last was (outside one there is no
        notebook to keep)."""
        if self._outputs is None and kernel_dispatch(self.shell) is not None:
            self._outputs = PanelOutputs(self.shell, self.publisher)
        return self._outputs.adopt(panel) if self._outputs is not None else panel

    # ------------------------------------------------------------------ panels
    def probe_panel(self, aliases: Optional[Sequence[str]] = None) -> ProbePanel:
        """A live panel of these probes (all when None); its buttons remove and extend."""
        inv = self.investigation()
        panel = ProbePanel(self.board, aliases, poke=self.publisher.poke, actions={
            "remove": lambda alias: inv.remove(alias),
            "extend": lambda alias: inv.extend(alias, self.config.extend_ttl),
        })
        self._go_live(("probes", tuple(aliases) if aliases is not None else None), panel)
        return panel

    def timeline_view(self) -> TimelineView:
        view = TimelineView(self.investigation())
        self._go_live(("timeline",), view)
        return view

    def assistant_view(self, run: AssistantRun, live: bool = True) -> AssistantView:
        """The view of `run`; `live`: refreshed by the publisher (else by `view.refresh()`, from a cell
        that waits for the run)."""
        view = AssistantView(run, self.board, poke=self.publisher.poke)
        if live:
            self._go_live(("assistant",), view)
        return self.adopt(view)  # type: ignore[return-value]

    def _go_live(self, key: Any, view: Any) -> None:
        """Only the newest view of the same thing stays live: a cell run again leaves its old
        panel (whose output JupyterLab has cleared) frozen, so re-runs never add traffic."""
        old = self._live.get(key)
        if old is not None:
            self.publisher.discard(old)
            if self._outputs is not None:  # where it is still shown, it stays as it last was
                self._outputs.freeze(old)
        self._live[key] = view
        self.adopt(view)
        self.publisher.add(view)

    def close(self, wait: float = 30.0) -> List[str]:
        """Stop the panels, remove the probes still live, close the evidence file; `wait`: at most this
        long for a running assistant to stop (its probes are removed below either way)."""
        removed: List[str] = []
        run, self.assistant_run = self.assistant_run, None
        if run is not None and not run.done:  # it removes its own probes; the rest are removed below
            run.stop()
            run.wait(wait)
        if self._publisher is not None:
            self._publisher.stop()
        try:
            if self._inv is not None:
                removed = self._inv.remove(everything=True)
        finally:
            if self._outputs is not None:  # after the removal, so probe panels show their probes removed
                self._outputs.close()
            if self._board is not None:
                self._board.close()
            if self._inv is not None:
                self._inv.close()
        self._inv = self._board = self._publisher = self._outputs = None
        self._live.clear()
        return removed
