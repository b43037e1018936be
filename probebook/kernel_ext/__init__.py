"""`%load_ext probebook`: magics over the investigation API, `%config Probebook.*`, live panels.

>>> %load_ext probebook                                                  # doctest: +SKIP
>>> %connect shop http://127.0.0.1:7801 --token-file tokens.txt          # doctest: +SKIP
>>> %probe log shop cart.py:42 "total={cart.total}" --as tot             # doctest: +SKIP
>>> probebook.kernel_ext.investigation().sql("SELECT count(*) FROM logs")  # doctest: +SKIP

docs/notebook.md is the reference of every magic.
"""

from __future__ import annotations

import atexit
from typing import Any, Dict, Optional

from probebook.session import Investigation

from .args import MagicError
from .assistant import AssistantMagics
from .lifecycle import LifecycleMagics
from .config import Probebook
from .magics import ProbebookMagics
from .session import KernelSession
from .telemetry import register_telemetry_magics

__all__ = ["Probebook", "ProbebookMagics", "KernelSession", "investigation", "current_session",
           "load_ipython_extension", "unload_ipython_extension"]

_SESSION: Optional[KernelSession] = None
_REPLACED: Dict[Any, Any] = {}  # frame type -> the HTML printer it had before the extension loaded


def current_session() -> KernelSession:
    """The kernel's session (made on first use when the extension is not loaded, e.g. in a script)."""
    global _SESSION
    if _SESSION is None:
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:  # pragma: no cover - IPython is a dependency of probebook[lab]
            shell = None
        _SESSION = KernelSession(shell)
    return _SESSION


def investigation() -> Investigation:
    """The investigation the magics use: `probebook.kernel_ext.investigation().sql(...)`."""
    return current_session().investigation()


def _loaded_session() -> KernelSession:
    if _SESSION is None:
        raise MagicError("probebook is unloaded; run %load_ext probebook")
    return _SESSION


def load_ipython_extension(ipython: Any) -> None:
    global _SESSION
    if _SESSION is None or _SESSION.shell is not ipython:
        _SESSION = KernelSession(ipython, Probebook(parent=ipython))
    if _SESSION.config not in ipython.configurables:  # also adopts a session `investigation()` made
        ipython.configurables.append(_SESSION.config)
    _tables(ipython, on=True)
    _close_before_kernel_shutdown(getattr(ipython, "kernel", None))
    ipython.register_magics(ProbebookMagics(ipython, _loaded_session))
    ipython.register_magics(AssistantMagics(ipython, _loaded_session))
    ipython.register_magics(LifecycleMagics(ipython, _loaded_session))
    register_telemetry_magics(ipython, lambda: _loaded_session().investigation())


def unload_ipython_extension(ipython: Any) -> None:
    """Removes the probes this kernel placed and closes the evidence file."""
    global _SESSION
    session, _SESSION = _SESSION, None
    if session is None:
        return
    if session.config in ipython.configurables:
        ipython.configurables.remove(session.config)
    _tables(ipython, on=False)
    session.close()


def _tables(ipython: Any, on: bool) -> None:
    """While the extension is loaded, every polars frame the kernel shows (`inv.sql(...)` in a cell, a
    frame of the user's) is drawn by the evidence table renderer, its columns as they are; the
    magics' `EvidenceTable`s keep their own order and title."""
    formatter = getattr(getattr(ipython, "display_formatter", None), "formatters", {}).get("text/html")
    if formatter is None:
        return
    import polars as pl

    from probebook.widgets import EvidenceTable, frame_html

    for cls, draw in ((pl.DataFrame, lambda f: frame_html(f, reorder=False)), (EvidenceTable, EvidenceTable._repr_html_)):
        if on:  # loaded twice: what was there before the first load stays the one to restore
            _REPLACED.setdefault(cls, formatter.for_type(cls, draw))
        else:
            formatter.pop(cls, None)
            before = _REPLACED.pop(cls, None)
            if before is not None:  # the printer someone else had registered for frames
                formatter.for_type(cls, before)


def _close_before_kernel_shutdown(kernel: Any) -> None:
    """A kernel shut down or restarted from the notebook closes the session while it can still send:
    the probes leave the services and every panel is drawn once more, `removed`, into the notebook
    (at interpreter exit, below, the kernel's channels are already closed and the panels would keep
    saying their probes are live)."""
    original = getattr(kernel, "do_shutdown", None)
    if original is None or getattr(original, "probebook_closes", False):
        return

    def do_shutdown(restart: bool) -> Any:
        _close_at_exit(wait=2.0)  # quick: the kernel's manager kills a kernel that takes more than a few seconds
        return original(restart)

    do_shutdown.probebook_closes = True  # type: ignore[attr-defined]
    kernel.do_shutdown = do_shutdown


@atexit.register
def _close_at_exit(wait: float = 30.0) -> None:  # a kernel that shuts down takes its probes out of the services
    if _SESSION is not None:
        try:
            _SESSION.close(wait=wait)
        except Exception:
            pass
