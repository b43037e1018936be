"""`sys.monitoring` local events, our own tool id (Python >= 3.12): the path of frames already running
when a probe is placed (`hybrid`), or the whole backend where code swaps are off (`backend.swaps_unavailable`).

Only probed code objects get events (``set_local_events``), so code without probes runs at full
speed. LINE events on lines that carry no probe answer ``DISABLE`` and cost nothing after their
first pass; when a later probe needs one of them we call ``restart_events()`` (it is global, which
only means other tools see their own disabled events once more).

Exceptions leaving a probed function need ``PY_UNWIND``, which CPython offers only as a global
event: it is switched on only while a function-level probe exists, and the callback returns at
once for code we do not watch. Changes reach frames that are already running.
"""

from __future__ import annotations

import sys
import threading
from types import CodeType
from typing import Any, Dict, Optional

from probebook.errors import ProbebookError
from .hookset import HookSet
from .locate import PROLOGUE_OPS

__all__ = ["MonitoringBackend", "TOOL_IDS_TRIED"]

# 0 debugger, 1 coverage, 2 profiler and 5 optimizer belong to others by convention.
TOOL_IDS_TRIED = (4, 3)


class MonitoringBackend:
    name = "sys.monitoring"
    affects_running_frames = True

    def __init__(self) -> None:
        mon = sys.monitoring
        self._mon = mon
        self._ev = mon.events
        self.tool_id = self._claim_tool_id()
        self._hooks: Dict[int, HookSet] = {}
        # id(code) -> {line: hook}: what a LINE event needs, in two dict reads
        self._line_hooks: Dict[int, Dict[int, Any]] = {}
        self._codes: Dict[int, CodeType] = {}
        self._disabled_seen: set = set()
        # 3.13+ emits no LINE event for a body on the def line itself (lambdas, one-liners):
        # such a line is hooked at PY_START instead.
        self._start_lines: Dict[int, int] = {}
        self._lock = threading.RLock()
        disable = mon.DISABLE
        hooks = self._hooks
        disabled_seen = self._disabled_seen

        start_lines = self._start_lines
        line_hooks = self._line_hooks

        def on_line(code: CodeType, line: int) -> Any:  # every hit of a probed line: kept short
            by_line = line_hooks.get(id(code))
            hook = by_line.get(line) if by_line is not None else None
            if hook is None:
                disabled_seen.add(id(code))
                return disable
            hook(line)
            return None

        def on_start(code: CodeType, offset: int) -> Any:
            h = hooks.get(id(code))
            first = start_lines.get(id(code))
            if h is None or not (h.function_hooks or first):
                disabled_seen.add(id(code))
                return disable
            if first:
                h.line_hook(first)  # type: ignore[misc]
            if h.function_hooks:
                h.enter_hook(None)  # type: ignore[misc]
            return None

        def on_return(code: CodeType, offset: int, retval: Any) -> Any:
            h = hooks.get(id(code))
            if h is None or not h.function_hooks:
                disabled_seen.add(id(code))
                return disable
            h.return_hook(None)  # type: ignore[misc]
            return None

        def on_unwind(code: CodeType, offset: int, exc: BaseException) -> Any:
            h = hooks.get(id(code))
            if h is not None and h.function_hooks:
                h.raise_hook(exc)  # type: ignore[misc]
            return None

        ev = self._ev
        mon.register_callback(self.tool_id, ev.LINE, on_line)
        mon.register_callback(self.tool_id, ev.PY_START, on_start)
        mon.register_callback(self.tool_id, ev.PY_RETURN, on_return)
        mon.register_callback(self.tool_id, ev.PY_UNWIND, on_unwind)

    def _claim_tool_id(self) -> int:
        for tid in TOOL_IDS_TRIED:
            if self._mon.get_tool(tid) is None:
                self._mon.use_tool_id(tid, "probebook")
                return tid
            if self._mon.get_tool(tid) == "probebook":
                return tid
        raise ProbebookError(
            "sys.monitoring tool ids 3 and 4 are both taken by other tools; free one to use probebook"
        )

    def original_of(self, code: CodeType) -> CodeType:
        return code  # sys.monitoring never replaces code objects

    def update(self, code: CodeType, hooks: Optional[HookSet], parents: Any = None) -> None:
        """Make `code` carry exactly `hooks` (None: none). `parents` is unused here."""
        ev = self._ev
        with self._lock:
            key = id(code)
            if hooks is None or not (hooks.lines or hooks.function_hooks):
                self._hooks.pop(key, None)
                self._line_hooks.pop(key, None)
                self._codes.pop(key, None)
                self._start_lines.pop(key, None)
                self._mon.set_local_events(self.tool_id, code, 0)
            else:
                wanted = 0
                if hooks.lines:
                    wanted |= ev.LINE
                if hooks.function_hooks:
                    wanted |= ev.PY_START | ev.PY_RETURN
                first = _line_on_def(code) if sys.version_info >= (3, 13) else None
                if first is not None and first in hooks.lines:
                    self._start_lines[key] = first
                    wanted |= ev.PY_START
                else:
                    self._start_lines.pop(key, None)
                self._codes[key] = code
                self._hooks[key] = hooks
                # the def line of a 3.13 one-liner is hooked at PY_START, never at LINE
                self._line_hooks[key] = {line: hooks.line_hook for line in hooks.lines if line != first}
                self._mon.set_local_events(self.tool_id, code, wanted)
                if key in self._disabled_seen:
                    # a line we answered DISABLE for may now carry a probe
                    self._disabled_seen.discard(key)
                    self._mon.restart_events()
            need_unwind = any(h.function_hooks for h in self._hooks.values())
            self._mon.set_events(self.tool_id, ev.PY_UNWIND if need_unwind else 0)

    def active_codes(self) -> int:
        return len(self._hooks)

    def release(self) -> bool:
        """Hand the tool id back (no probe left): no events, no callbacks, the id free for another tool.
        False, keeping it all, while any code still carries hooks."""
        with self._lock:
            if self._hooks:
                return False
            ev = self._ev
            self._mon.set_events(self.tool_id, 0)
            for event in (ev.LINE, ev.PY_START, ev.PY_RETURN, ev.PY_UNWIND):
                self._mon.register_callback(self.tool_id, event, None)
            if self._mon.get_tool(self.tool_id) == "probebook":
                self._mon.free_tool_id(self.tool_id)
            return True

    def close(self) -> None:
        with self._lock:
            for key, code in list(self._codes.items()):
                self._mon.set_local_events(self.tool_id, code, 0)
            self._hooks.clear()
            self._line_hooks.clear()
            self._codes.clear()
            self._mon.set_events(self.tool_id, 0)


def _line_on_def(code: CodeType) -> Optional[int]:
    """The first body line when it is also the line of RESUME (so LINE will not fire for it)."""
    import dis

    resume_line = None
    for ins in dis.get_instructions(code):
        line = ins.positions.lineno if ins.positions else None
        if ins.opname in PROLOGUE_OPS or ins.opname == "POP_TOP":  # POP_TOP after RETURN_GENERATOR
            resume_line = resume_line or line
            continue
        return line if line is not None and line == resume_line else None
    return None
