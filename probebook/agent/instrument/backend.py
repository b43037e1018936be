"""The process's instrumentation backend, shared by every Agent.

There is one set of `sys.monitoring` callbacks per tool id, and one truth about which code objects are
ours, so the agents of a process share one backend (one agent per process is the normal case;
`probebook.agent.start` makes sure of it). Each agent that installs a probe takes it (`acquire`) and
gives it back when it closes (`release`); the last one out hands back what the backend holds of the
interpreter: on 3.12+ the `sys.monitoring` tool id, its events and callbacks, so another tool (a
debugger, a profiler, coverage) may take the id and nothing of ours runs any more.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Optional, Tuple

__all__ = ["acquire", "name", "release", "swaps_unavailable"]

_BACKEND: Optional[Tuple[Any, int]] = None  # (backend, the depth of hook frames above a hit)
_USERS = 0
_LOCK = threading.Lock()


def acquire() -> Tuple[Any, int]:
    """The backend and its hook depth, made on first use; each call is matched by one `release`."""
    global _BACKEND, _USERS
    with _LOCK:
        if _BACKEND is None:
            if sys.version_info >= (3, 12) and not swaps_unavailable():
                from .hybrid import SwapAndMonitorBackend

                _BACKEND = (SwapAndMonitorBackend(), 1)  # new calls call hooks from the probed frame
            elif sys.version_info >= (3, 12):
                from .monitor import MonitoringBackend

                _BACKEND = (MonitoringBackend(), 2)  # hooks run inside a monitoring callback
            else:
                from .codeswap import CodeSwapBackend

                _BACKEND = (CodeSwapBackend(), 1)
        _USERS += 1
        return _BACKEND


def swaps_unavailable() -> str:
    """Why code-object swaps are not used on this Python >= 3.12 ('' when they are): the `bytecode`
    package is missing, or ``PROBEBOOK_BACKEND=monitoring`` asks for `sys.monitoring` alone."""
    if os.environ.get("PROBEBOOK_BACKEND", "").strip().lower() == "monitoring":
        return "PROBEBOOK_BACKEND=monitoring"
    import importlib.util

    return "" if importlib.util.find_spec("bytecode") is not None else "the 'bytecode' package is not installed"


def name() -> str:
    """The backend `acquire` would make here, named as its `name` says."""
    if sys.version_info < (3, 12):
        return "bytecode-injection"
    return "sys.monitoring" if swaps_unavailable() else "bytecode-injection+sys.monitoring"


def release() -> None:
    """An agent that acquired the backend closed; the last one frees it where it holds anything."""
    global _BACKEND, _USERS
    with _LOCK:
        _USERS = max(0, _USERS - 1)
        if _USERS == 0 and _BACKEND is not None and _BACKEND[0].release():
            _BACKEND = None
