"""The bounded buffer that holds the events probes emit until a reader takes them.

The records themselves are the protocol's (`probebook.protocol.events`): the application thread
only builds one and appends it; JSON encoding happens in whichever thread reads (`Event.to_dict`).
The buffer is a ring: when full, the oldest event is evicted and counted, and a reader that fell
behind is told how many it missed. Status events are never refused.

>>> buf = EventBuffer(capacity=2)
>>> for i in range(3): _ = buf.append(StatusEvent(probe_id="p1", status="emitting"))
>>> batch = buf.read(after=0)
>>> [e.seq for e in batch.events], batch.missed
([2, 3], 1)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, List, Tuple

from probebook.protocol.events import Event, StatusEvent

__all__ = ["EventBatch", "EventBuffer"]


@dataclass
class EventBatch:
    events: List[Event]
    next_seq: int  # pass back as `after` to continue
    missed: int  # events evicted before this reader saw them
    dropped_total: int


class EventBuffer:
    """Bounded, thread-safe ring of events with monotonically increasing sequence numbers.

    An entry is an `Event`, or a tuple `(factory, *args)` that becomes one when read: the hot
    paths append tuples, so building the event object is the reader's work. Sequence numbers are
    positions: the ring only ever appends on the right and evicts on the left, so the entry at
    index i has seq `last_seq - len + 1 + i`.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._events: Deque[Any] = deque(maxlen=max(1, int(capacity)))
        self._seq = 0
        self._drain_cursor = 0
        self._dropped_drained = 0  # evicted unread, as seen by earlier drains
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0  # readers blocked in a long-poll; appends notify only when there are some

    @property
    def capacity(self) -> int:
        return self._events.maxlen  # type: ignore[return-value]

    @capacity.setter
    def capacity(self, value: int) -> None:
        with self._lock:
            self._events = deque(self._events, maxlen=max(1, int(value)))

    def append(self, event: Any) -> None:
        """Add an event (or a `(factory, *args)` tuple); when full, the oldest entry is evicted."""
        with self._lock:  # the condition's own lock, without Condition's Python-level __enter__
            self._seq += 1
            self._events.append(event)
            if self._waiting:
                self._cond.notify_all()

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def waiting(self) -> int:
        """Readers parked in a long poll now (the health answer shows it: a client can see its poll wait)."""
        return self._waiting

    @property
    def dropped(self) -> int:
        """Events evicted before anyone read them through `drain`."""
        with self._lock:
            return self._dropped_locked()

    def _dropped_locked(self) -> int:
        first = self._seq - len(self._events) + 1
        return self._dropped_drained + max(0, first - 1 - self._drain_cursor)

    def read(self, after: int = 0, limit: int = 1000, timeout: float = 0.0) -> EventBatch:
        """Events with seq > `after` (at most `limit`), waiting up to `timeout` s for the first."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._seq <= after and timeout > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._waiting += 1
                try:
                    self._cond.wait(left)
                finally:
                    self._waiting -= 1
            first, raw, nxt, missed, dropped = self._slice_locked(after, limit)
        return EventBatch(_built(raw, first), nxt, missed, dropped)

    def _slice_locked(self, after: int, limit: int) -> Tuple[int, List[Any], int, int, int]:
        """(seq of the first entry returned, entries, next cursor, missed, dropped) after `after`."""
        events = self._events
        first = self._seq - len(events) + 1
        missed = max(0, first - after - 1) if self._seq > after else 0
        start = max(0, after + 1 - first)
        stop = min(len(events), start + max(0, limit))
        raw = [events[i] for i in range(start, stop)] if start < stop else []
        nxt = first + stop - 1 if raw else max(after, first - 1)
        return first + start, raw, nxt, missed, self._dropped_locked()

    def drain(self, limit: int = 100_000) -> EventBatch:
        """Everything not yet drained, for the in-process API; advances the drain cursor."""
        with self._lock:
            after = self._drain_cursor
            first, raw, nxt, missed, dropped = self._slice_locked(after, limit)
            self._dropped_drained += missed
            self._drain_cursor = max(after, nxt)
        return EventBatch(_built(raw, first), nxt, missed, dropped)


def _built(raw: List[Any], first: int) -> List[Any]:
    """Events from ring entries (outside the lock: building and numbering is the reader's work)."""
    out = []
    for i, e in enumerate(raw):
        if type(e) is tuple:
            try:
                e = e[0](*e[1:])
            except Exception as exc:  # a bug of ours must not cost the reader the rest of the batch
                e = StatusEvent(probe_id="", status="error", reason=f"an event could not be read: {type(exc).__name__}")
        e.seq = first + i
        out.append(e)
    return out
