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
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

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

_time = time.time


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


class LogEvent:
    """A dynamic log line, with the header fields of every located event.

    Not a dataclass, unlike the others: it is built on every log hit, so it has slots and a plain
    positional constructor. The hit may leave the text unfinished (`finish` and the `values` it
    takes); the first reader of `message` finishes it, off the application thread.

    >>> LogEvent("p1", message="total=3").message
    'total=3'
    >>> LogEvent("p1", finish=" ".join, values=("a", "b")).to_dict()["message"]
    'a b'
    """

    __slots__ = ("probe_id", "seq", "ts", "file", "line", "function", "thread", "trace_id", "_message", "_finish",
                 "_values")
    kind = "log"

    def __init__(self, probe_id: str, file: str = "", line: int = 0, function: str = "", thread: str = "",
                 trace_id: str = "", message: str = "", finish: Optional[Callable[[Any], str]] = None,
                 values: Any = None, ts: Optional[float] = None) -> None:
        self.probe_id = probe_id
        self.seq = 0
        self.ts = _time() if ts is None else ts
        self.file = file
        self.line = line
        self.function = function
        self.thread = thread
        self.trace_id = trace_id
        self._message = message
        self._finish = finish
        self._values = values

    @property
    def message(self) -> str:
        finish = self._finish
        if finish is not None:
            self._message = finish(self._values)
            self._finish = self._values = None
        return self._message

    def to_dict(self) -> Dict[str, Any]:
        return {"probe_id": self.probe_id, "seq": self.seq, "ts": self.ts, "file": self.file, "line": self.line,
                "function": self.function, "thread": self.thread, "trace_id": self.trace_id,
                "message": self.message, "kind": "log"}

    def __repr__(self) -> str:
        return f"LogEvent(probe_id={self.probe_id!r}, seq={self.seq}, line={self.line}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is LogEvent and self.to_dict() == other.to_dict()  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]


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
