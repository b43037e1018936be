"""Events a probe emits, and the bounded buffer that holds them until a reader takes them.

The application thread only builds a small dataclass (the snapshot tree is already plain data)
and appends it; JSON encoding happens in whichever thread reads (`Event.to_dict`). The buffer is a
ring: when full, the oldest event is evicted and counted, and a reader that fell behind is told
how many it missed. Status events are never refused.

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
from dataclasses import asdict, dataclass, field
from typing import Any, Deque, Dict, List

__all__ = [
    "Event",
    "StatusEvent",
    "LogEvent",
    "SnapshotEvent",
    "MetricEvent",
    "SpanEvent",
    "ExceptionEvent",
    "EventBatch",
    "EventBuffer",
]


@dataclass
class Event:
    """Common header: `seq` is set by the buffer, `ts` is wall-clock seconds."""

    probe_id: str
    seq: int = field(default=0, init=False)
    ts: float = field(default_factory=time.time, init=False)
    kind = "event"

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind
        return d


@dataclass
class StatusEvent(Event):
    """installed / pending / emitting / disabled / expired / removed / error, with the reason."""

    status: str = ""
    reason: str = ""
    kind = "status"


@dataclass
class _Located(Event):
    file: str = ""
    line: int = 0
    function: str = ""
    thread: str = ""
    trace_id: str = ""


@dataclass
class LogEvent(_Located):
    message: str = ""
    kind = "log"


@dataclass
class SnapshotEvent(_Located):
    arguments: Dict[str, Any] = field(default_factory=dict)
    locals: Dict[str, Any] = field(default_factory=dict)
    expressions: Dict[str, Any] = field(default_factory=dict)
    stack: List[Dict[str, Any]] = field(default_factory=list)
    kind = "snapshot"


@dataclass
class MetricEvent(_Located):
    name: str = ""
    metric_type: str = "count"  # count | gauge | histogram | duration
    value: float = 0.0
    unit: str = ""
    error: bool = False
    kind = "metric"


@dataclass
class SpanEvent(_Located):
    name: str = ""
    trace_id: str = ""
    span_id: str = ""
    parent_span_id: str = ""
    start_ns: int = 0
    duration_ns: int = 0
    error: str = ""
    otel: bool = False
    kind = "span"


@dataclass
class ExceptionEvent(_Located):
    exc_type: str = ""
    message: Dict[str, Any] = field(default_factory=dict)
    frames: List[Dict[str, Any]] = field(default_factory=list)
    kind = "exception"


@dataclass
class EventBatch:
    events: List[Event]
    next_seq: int  # pass back as `after` to continue
    missed: int  # events evicted before this reader saw them
    dropped_total: int


class EventBuffer:
    """Bounded, thread-safe ring of events with monotonically increasing sequence numbers."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = max(1, int(capacity))
        self._events: Deque[Event] = deque()
        self._seq = 0
        self._evicted = 0
        self._drain_cursor = 0
        self._dropped_unread = 0
        self._cond = threading.Condition(threading.Lock())
        self._waiting = 0  # readers blocked in a long-poll; appends notify only when there are some

    def append(self, event: Event) -> int:
        with self._cond:
            self._seq += 1
            event.seq = self._seq
            self._events.append(event)
            if len(self._events) > self.capacity:
                old = self._events.popleft()
                self._evicted += 1
                if old.seq > self._drain_cursor:
                    self._dropped_unread += 1
            if self._waiting:
                self._cond.notify_all()
            return self._seq

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def dropped(self) -> int:
        """Events evicted before anyone read them through `drain`."""
        return self._dropped_unread

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
            first = self._events[0].seq if self._events else self._seq + 1
            missed = max(0, first - after - 1) if self._seq > after else 0
            start = max(0, after + 1 - first)
            out = [self._events[i] for i in range(start, min(len(self._events), start + max(0, limit)))]
            nxt = out[-1].seq if out else max(after, first - 1)
            return EventBatch(out, nxt, missed, self._dropped_unread)

    def drain(self, limit: int = 100_000) -> EventBatch:
        """Everything not yet drained, for the in-process API; advances the drain cursor."""
        batch = self.read(self._drain_cursor, limit)
        with self._cond:
            self._drain_cursor = max(self._drain_cursor, batch.next_seq)
        return batch
