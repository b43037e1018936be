"""A progress line for waits in the kernel's own thread (`%%snapshot`): one display, updated in
place, at most a few times a second; the last state stays in the saved notebook.

>>> progress = WaitProgress("snapshot at cart.py:42")                       # doctest: +SKIP
>>> inv.snapshot(..., progress=progress); progress.finish("got 1 snapshot")   # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any, Optional

from .render import badge, esc, fmt_seconds

__all__ = ["WaitProgress"]


class _Line:
    def __init__(self, text: str, state: str, fraction: float) -> None:
        self.text, self.state, self.fraction = text, state, fraction

    def _repr_html_(self) -> str:
        width = int(max(0.0, min(1.0, self.fraction)) * 160)
        bar = (f'<span style="display:inline-block;width:160px;height:8px;background:#eee;vertical-align:middle">'
               f'<span style="display:block;width:{width}px;height:8px;background:#4a8"></span></span>')
        return f'<div class="pb-progress">{badge(self.state)} {bar} {esc(self.text)}</div>'

    def __repr__(self) -> str:
        return f"[{self.state}] {self.text}"


class WaitProgress:
    """Call with (got, wanted, seconds left); `finish(text)` writes the final line."""

    def __init__(self, label: str, min_interval: float = 0.25) -> None:
        self.label = label
        self.min_interval = min_interval
        self.updates = 0
        self._handle: Optional[Any] = None
        self._last = (-1, 0.0)
        self._started = time.monotonic()

    def _show(self, line: _Line) -> None:
        from IPython.display import display

        if self._handle is None:
            self._handle = display(line, display_id=True)
        else:
            self._handle.update(line)
        self.updates += 1

    def __call__(self, got: int, wanted: int, left: float) -> None:
        now = time.monotonic()
        if got == self._last[0] and now - self._last[1] < self.min_interval:
            return
        self._last = (got, now)
        self._show(_Line(f"{self.label}: {got} of {wanted}, {fmt_seconds(left)} left", "waiting",
                         got / max(1, wanted)))

    def finish(self, text: str, ok: bool = True) -> None:
        took = time.monotonic() - self._started
        self._show(_Line(f"{self.label}: {text} ({took:.1f}s)", "done" if ok else "timed out", 1.0 if ok else 0.0))
