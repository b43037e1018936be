"""Instrumentation backend for Python >= 3.12: code-object swaps for new calls, `sys.monitoring` for
the frames that were already running.

New calls run an instrumented copy of the probed code (`inject`, as on <= 3.11): a probe whose inline
guard is false costs a few instructions and no call, which no monitoring callback can match. A frame
that was already executing the original code when the probe was placed (a loop that never returns,
a suspended generator, a closure a running outer frame makes from its own constants) keeps running
the original: it gets the probe through `sys.monitoring` local events on the *original* code object,
our own tool id. Each execution runs exactly one of the two code objects, so a hit fires once, never
twice. The events stay on the original while the probe lives (no call that is not already running
executes the original, so they cost nothing to new calls, and a suspended frame cannot be seen to be
gone); removing the probe swaps the original back (``func.__code__ is original``) and turns every
local event off.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from types import CodeType
from typing import Any, List, Optional

from .codeswap import CodeSwapBackend
from .hookset import HookSet
from .monitor import MonitoringBackend

__all__ = ["SwapAndMonitorBackend"]

_CALLBACK_DEPTH = 2  # a hook called from a monitoring callback: the probed frame is two up


class SwapAndMonitorBackend:
    name = "bytecode-injection+sys.monitoring"
    affects_running_frames = True

    def __init__(self) -> None:
        self.swap = CodeSwapBackend()
        self.monitor = MonitoringBackend()

    def original_of(self, code: CodeType) -> CodeType:
        return self.swap.original_of(code)

    def update(self, code: CodeType, hooks: Optional[HookSet], parents: List[CodeType]) -> None:
        """Make `code` carry exactly `hooks` (None: none) on both paths."""
        self.swap.update(code, hooks, parents)
        self.monitor.update(code, _from_callback(hooks) if hooks is not None else None)

    def active_codes(self) -> int:
        return self.swap.active_codes()

    def release(self) -> bool:
        """Hand the tool id back once no probe is left (code swapped back is the original)."""
        return self.monitor.release()


def _from_callback(hooks: HookSet) -> HookSet:
    """The same hooks, finding the probed frame one level further up (they run inside a monitoring
    callback); a bound method wrapped in `functools.partial` adds no Python frame of its own. No inline
    guard: a condition is evaluated in full on this path, which only frames already running take."""
    def deeper(hook: Any) -> Any:
        return functools.partial(hook, depth=_CALLBACK_DEPTH) if hook is not None else None

    return replace(hooks, line_hook=deeper(hooks.line_hook), enter_hook=deeper(hooks.enter_hook),
                   return_hook=deeper(hooks.return_hook), guards=None, guard_skips=None)
