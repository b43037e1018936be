"""The records a probe emits, one class per `Kind` plus `StatusEvent`; their `to_dict()` is the JSON
an agent serves (``GET /v1/events``, the fleet's events stream) and the evidence store's columns
(`probebook.evidence.schema`) are derived from their fields (`fields_of`).

The application thread only builds one of these (a snapshot's tree is already plain data); JSON
encoding happens in whichever thread reads. The agent's ring that holds them is `probebook.agent.events`.

>>> e = MetricEvent("p1", name="cart_total", metric_type="gauge", value=12.5)
>>> d = e.to_dict()
>>> d["kind"], d["name"], d["value"], d["file"]
('metric', 'cart_total', 12.5, '')
>>> [name for name, _ in fields_of(StatusEvent)]
['probe_id', 'seq', 'ts', 'status', 'reason']
"""

from __future__ import annotations

import dataclasses
import time
import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .kinds import STATUS_KIND, Kind

__all__ = [
    "Event",
    "StatusEvent",
    "LogEvent",
    "SnapshotEvent",
    "MetricEvent",
    "SpanEvent",
    "ExceptionEvent",
    "RECORDS",
    "HEADER",
    "fields_of",
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
    """A probe's `Status` changed (installed, pending, emitting, disabled, ...), with the reason."""

    status: str = ""
    reason: str = ""
    kind = STATUS_KIND


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
    kind = Kind.LOG.value
    # the fields `to_dict` carries, declared for `fields_of` (values live in the slots)
    probe_id: str
    seq: int
    ts: float
    file: str
    line: int
    function: str
    thread: str
    trace_id: str
    message: str

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

    @property  # type: ignore[no-redef]
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
    """Locals, arguments and captured expressions as capture trees (`probebook.protocol.capture_tree`)."""

    arguments: Dict[str, Any] = field(default_factory=dict)
    locals: Dict[str, Any] = field(default_factory=dict)
    expressions: Dict[str, Any] = field(default_factory=dict)
    stack: List[Dict[str, Any]] = field(default_factory=list)
    kind = Kind.SNAPSHOT.value


@dataclass
class MetricEvent(_Located):
    name: str = ""
    metric_type: str = "count"  # one of METRIC_TYPES
    value: float = 0.0
    unit: str = ""
    error: bool = False
    # duration metrics: the thread CPU time between entry and exit, ms. Near `value`: the call worked;
    # near 0: it waited (I/O, a lock, a sleep). A coroutine's or generator's counts what else ran on the
    # thread while it was suspended. None when not measured (other metrics; a hit admitted although
    # the rate limiter looked full when the call began).
    cpu_ms: Optional[float] = None
    kind = Kind.METRIC.value


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
    kind = Kind.SPAN.value


@dataclass
class ExceptionEvent(_Located):
    exc_type: str = ""
    message: Dict[str, Any] = field(default_factory=dict)
    frames: List[Dict[str, Any]] = field(default_factory=list)
    kind = Kind.EXCEPTION.value


# event kind -> its record
RECORDS: Dict[str, type] = {Kind.LOG.value: LogEvent, Kind.SNAPSHOT.value: SnapshotEvent,
                            Kind.METRIC.value: MetricEvent, Kind.SPAN.value: SpanEvent,
                            Kind.EXCEPTION.value: ExceptionEvent, STATUS_KIND: StatusEvent}


def fields_of(record: type) -> List[Tuple[str, Any]]:
    """(name, type) of every field `record.to_dict()` carries besides ``kind``, in order; the types
    are resolved (``int``, ``Dict[str, Any]``), not the text of the annotations."""
    hints = typing.get_type_hints(record)
    if dataclasses.is_dataclass(record):
        return [(f.name, hints[f.name]) for f in dataclasses.fields(record)]
    return list(hints.items())


# the header every located event starts with: probe_id, seq, ts, file, line, function, thread, trace_id
HEADER: List[Tuple[str, Any]] = fields_of(_Located)
