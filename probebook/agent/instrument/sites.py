"""A probed code object and the hooks its instrumentation calls.

The backends call these bound methods from inside the host's frame (directly for injected code,
through a `sys.monitoring` callback on >= 3.12, hence `depth`: the site's own, or the one a caller
passes, as the monitoring path of `hybrid` does). They find the frame themselves,
so the injected call carries a single constant argument.
"""

from __future__ import annotations

import sys
import time
from types import CodeType
from typing import Any, Dict, List, Optional, Tuple

from ..probes import ProbeRuntime

__all__ = ["Site"]

_getframe = sys._getframe
_now_ns = time.perf_counter_ns
_MAX_CALLS_IN_FLIGHT = 10_000


class Site:
    """Probes attached to one original code object, grouped the way the hooks need them."""

    __slots__ = ("code", "parents", "depth", "line_probes", "entry_probes", "exit_probes", "calls", "lost_calls")

    def __init__(self, code: CodeType, parents: List[CodeType], depth: int) -> None:
        self.code = code
        self.parents = parents
        self.depth = depth
        self.line_probes: Dict[int, Tuple[ProbeRuntime, ...]] = {}
        self.entry_probes: Tuple[ProbeRuntime, ...] = ()
        self.exit_probes: Tuple[ProbeRuntime, ...] = ()
        self.calls: Dict[int, Tuple[int, List[Tuple[ProbeRuntime, Any]]]] = {}
        self.lost_calls = 0

    def add(self, probe: ProbeRuntime, line: Optional[int], function_level: bool) -> None:
        if function_level:
            self.exit_probes += (probe,)
        elif line is None:
            self.entry_probes += (probe,)
        else:
            self.line_probes[line] = self.line_probes.get(line, ()) + (probe,)

    def discard(self, probe: ProbeRuntime) -> None:
        self.entry_probes = tuple(p for p in self.entry_probes if p is not probe)
        self.exit_probes = tuple(p for p in self.exit_probes if p is not probe)
        for line, probes in list(self.line_probes.items()):
            left = tuple(p for p in probes if p is not probe)
            if left:
                self.line_probes[line] = left
            else:
                del self.line_probes[line]

    @property
    def empty(self) -> bool:
        return not (self.line_probes or self.entry_probes or self.exit_probes)

    @property
    def needs_function_hooks(self) -> bool:
        return bool(self.entry_probes or self.exit_probes)

    # -------------------------------------------------------------- hooks (application thread)
    def line(self, line: int, depth: int = 0) -> None:
        probes = self.line_probes.get(line)
        if probes:
            frame = _getframe(depth or self.depth)
            f_locals = frame.f_locals  # one read for all probes of the line (a dict build on <= 3.12)
            for p in probes:
                fast_false = p.fast_false
                if fast_false is not None and fast_false(f_locals):
                    p.filtered += 1  # an unlocked count: at worst one lost under a race, never a wrong hit
                    continue
                p.on_line(frame, f_locals, line)

    def enter(self, _: Any, depth: int = 0) -> None:
        try:
            frame = _getframe(depth or self.depth)
            for p in self.entry_probes:
                p.on_line(frame, frame.f_locals)
            if self.exit_probes:
                if len(self.calls) >= _MAX_CALLS_IN_FLIGHT:  # abandoned generators never return
                    self.lost_calls += len(self.calls)
                    self.calls.clear()
                self.calls[id(frame)] = (_now_ns(), [(p, p.on_enter(frame)) for p in self.exit_probes])
        except Exception:  # the probes report their own failures; this only guards the host
            pass

    def leave(self, _: Any, depth: int = 0) -> None:
        try:
            frame = _getframe(depth or self.depth)
            self._finish(frame, None)
        except Exception:
            pass

    def raised(self, exc: BaseException) -> None:
        try:
            tb = exc.__traceback__
            frame = tb.tb_frame if tb is not None else None
            self._finish(frame, None if isinstance(exc, GeneratorExit) else exc)
        except Exception:
            pass

    def _finish(self, frame: Any, exc: Optional[BaseException]) -> None:
        call = self.calls.pop(id(frame), None) if frame is not None else None
        if call is None:  # the call began before the probe: only an exception probe can still report
            if exc is not None:
                for p in self.exit_probes:
                    if p.spec.kind == "exception":
                        p.on_exit(frame, exc, 0, None)
            return
        start, tokens = call
        for p, token in tokens:
            p.on_exit(frame, exc, start, token)
