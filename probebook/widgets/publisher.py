"""One background thread that keeps every live panel current, without flooding the kernel.

Each tick (at most `max_hz` a second, 10 by default) the publisher asks every registered view
what changed (`LiveView.compute`, in the publisher's thread: network polls and formatting happen
here). Changes are coalesced per view, newest wins, and applied in ONE callback scheduled onto
the kernel's IO loop, where the comm messages go out from the kernel's own thread, each view's
traits in one message (`hold_sync`). Widgets are not thread-safe and ipykernel 7 routes messages
sent from other threads by guesswork, so nothing is sent from the publisher's thread itself.

While a cell runs, the IO loop waits; updates pile up as one pending state per view and go out
when the cell ends. So a panel sends at most `max_hz` messages a second, whatever the hit rate.
`settle()` has the thread compute now and waits for it (the end of a cell reads `pending` to write
the panels' outputs as they are); `on_flushed` hears which views a flush updated.

>>> pub = LivePublisher(dispatch=lambda fn: fn())     # doctest: +SKIP
>>> pub.add(panel)                                    # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional

__all__ = ["LivePublisher", "LiveView", "kernel_dispatch"]

Dispatch = Callable[[Callable[[], None]], None]


class LiveView:
    """What the publisher needs of a view (mixed into the panels)."""

    def compute(self, now: float) -> Optional[Dict[str, Any]]:
        """Trait values that changed since the last call, or None. Runs in the publisher thread."""
        raise NotImplementedError

    def apply(self, changes: Dict[str, Any]) -> None:
        """Set the traits; runs where widgets may be touched (the kernel's IO loop)."""
        for name, value in changes.items():
            setattr(self, name, value)


def kernel_dispatch(shell: Any = None) -> Optional[Dispatch]:
    """`add_callback` of the running kernel's IO loop (thread-safe), or None outside a kernel."""
    kernel = getattr(shell, "kernel", None)
    loop = getattr(kernel, "io_loop", None)
    return loop.add_callback if loop is not None else None


class LivePublisher:
    """Start with the first `add`; `stop()` ends the thread. `dispatch` runs the flush callback
    (the kernel's IO loop); without one, the flush runs in the publisher thread (no kernel: no
    front end to race with)."""

    def __init__(self, dispatch: Optional[Dispatch] = None, max_hz: float = 10.0) -> None:
        self.dispatch = dispatch
        self.interval = 1.0 / min(10.0, max(0.1, max_hz))
        self.ticks = 0
        self.flushes = 0
        self.on_flushed: Optional[Callable[[List[Any]], None]] = None  # runs where the flush runs
        self._cond = threading.Condition()
        self._started = self._finished = 0  # ticks of the thread, for settle()
        self._urgent = False
        self._views: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._pending: Dict[int, tuple] = {}  # id(view) -> (view, changes)
        self._scheduled = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, view: Any) -> None:
        self._views.add(view)
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="probebook-publisher", daemon=True)
            self._thread.start()

    def discard(self, view: Any) -> None:
        self._views.discard(view)
        with self._lock:
            self._pending.pop(id(view), None)

    def has(self, view: Any) -> bool:
        return view in self._views

    def poke(self) -> None:
        """Refresh now rather than at the next tick (after a button click, say)."""
        self._wake.set()

    def pending(self, view: Any) -> Dict[str, Any]:
        """What was computed for `view` and not sent yet (the next flush sends it)."""
        with self._lock:
            item = self._pending.get(id(view))
        return dict(item[1]) if item else {}

    def settle(self, timeout: float = 0.5) -> bool:
        """Have the thread compute every view now and wait until it has (at most `timeout` s), so
        `pending` and the views are as of this moment. Sends nothing itself; False if it timed out."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return False
        with self._cond:
            wanted = self._started + 1  # a tick that starts after this call
            self._urgent = True
        self._wake.set()
        with self._cond:
            return self._cond.wait_for(lambda: self._finished >= wanted or self._stop.is_set(), timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            with self._cond:
                self._urgent = False
                self._started += 1
            self.tick()
            with self._cond:
                self._finished += 1
                self._cond.notify_all()
            # a poke still respects the rate: never two ticks closer than the interval; a settle
            # computes at once (what it computes is sent by the next regular flush)
            while not self._stop.is_set() and not self._urgent:
                left = self.interval - (time.monotonic() - started)
                if left <= 0:
                    break
                if self._wake.wait(left):
                    self._wake.clear()

    def tick(self) -> None:
        """One round: compute every view, queue what changed, schedule one flush."""
        self.ticks += 1
        now = time.time()
        for view in list(self._views):
            try:
                changes = view.compute(now)
            except Exception:  # a view that cannot compute keeps its last state; the others go on
                continue
            if changes:
                with self._lock:
                    old = self._pending.get(id(view))
                    merged = {**old[1], **changes} if old else changes
                    self._pending[id(view)] = (view, merged)
        with self._lock:
            if not self._pending or self._scheduled:
                return
            self._scheduled = True
        if self.dispatch is None:
            self._flush()
        else:
            try:
                self.dispatch(self._flush)
            except RuntimeError:  # the kernel's loop has closed (shutting down)
                self._scheduled = False

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
            self._scheduled = False
        self.flushes += 1
        for view, changes in batch.values():
            try:
                with view.hold_sync():
                    view.apply(changes)
            except Exception:
                continue  # a closed widget; nothing to update
        if self.on_flushed is not None and batch:
            try:
                self.on_flushed([view for view, _ in batch.values()])
            except Exception:
                pass  # the panels' outputs are written again at the end of the next cell

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
