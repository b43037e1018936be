"""One live probe: its condition, budgets and what it emits at a hit.

Everything here runs on the application thread, so it is written for the common case (condition
false) first and never lets an exception out: a failure becomes a status event and, when it keeps
happening, the probe disables itself.
"""

from __future__ import annotations

import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, List, Optional, Tuple

from probebook.errors import EvaluationError, OverBudget
from probebook.protocol.events import (Event, ExceptionEvent, LogEvent, MetricEvent, SnapshotEvent, SpanEvent,
                                       StatusEvent)
from probebook.protocol.kinds import Status
from probebook.protocol.spec import ProbeSpec

from . import tracecontext
from .capture.safe_access import class_name, type_name
from .capture.safe_repr import repr_reads, safe_repr
from .capture.tree import as_stack, as_tree, error_raw, field_map_raw
from .capture.values import (CaptureLimits, capture_locals, capture_locals_raw, capture_stack_raw, capture_value,
                             capture_value_raw, deadline_for)
from .expr.expressions import Expression
from .expr.template import Template
from .expr.work import WORK_BUDGET, METER
from .limits import RateLimiter
from .instrument.guards import SkipCount
from .instrument.locate import code_name, parameter_names
from .tracecontext import thread_name

__all__ = ["ProbeRuntime", "ProbeHost"]

_now_ns = time.perf_counter_ns  # durations of the host's calls
# What probes spend, for the CPU budget and the condition budget: the thread's CPU time, so that
# being preempted (by the OS, or waiting for the GIL) is not charged as work.
_cpu_ns = time.thread_time_ns
_time = time.time
# by type id: `type(v) in (...)` would call the __eq__ of a hostile metaclass
_TRUTHY_TYPES = frozenset(map(id, (bool, int, float, str, bytes, list, tuple, dict, set, frozenset, type(None))))
_NUMBER = frozenset(map(id, (int, float, bool)))


class ProbeHost:
    """What a probe needs from its agent (kept narrow so probes stay testable on their own)."""

    emit: Callable[[Event], None]
    redactor: Any
    cpu_spent: Callable[["ProbeRuntime", int], None]
    allow_snapshot: Callable[[], bool]
    request_disable: Callable[["ProbeRuntime", str, str], None]
    condition_budget_ns: int
    condition_failures: int


class ProbeRuntime:
    """State and hit logic of one probe. Build through `Agent.add_probe`."""

    def __init__(
        self,
        probe_id: str,
        spec: ProbeSpec,
        host: ProbeHost,
        *,
        condition: Optional[Expression],
        template: Optional[Template],
        captures: Tuple[Tuple[str, Expression], ...],
        metric_value: Optional[Expression],
        limits: CaptureLimits,
        rate: float,
        ttl: float,
    ) -> None:
        self.id = probe_id
        self.spec = spec
        self.host = host
        self.condition = condition
        self.template = template
        self.captures = captures
        self.metric_value = metric_value
        self.limits = limits
        self.rate = rate
        self.ttl = ttl
        self.limiter = RateLimiter(rate, burst=max(1.0, rate))  # up to one second of events at once
        self.created = time.time()
        self.expires_at = time.monotonic() + ttl
        self.ended_at, self.active = 0.0, False  # ended_at: its final status (monotonic); expired: unlisted later
        self.status = "new"
        self.reason = ""
        # every hit is one of: filtered (its condition false), or counted in `hits` and then emitted,
        # rate-limited or failed (its metric value could not be read); failed conditions count in `failed`
        self.hits = 0  # condition held (or no condition)
        self.emitted = self.rate_limited = self.filtered = self.failed = 0
        self.guard_skips = SkipCount()  # filtered by the inline guard compiled into the code (<= 3.11)
        self.evaluations = 0
        self.failures = 0  # consecutive evaluation failures
        self.slow = 0  # timed evaluations over the budget since the last timed one within it
        self.cpu_ns = 0
        self.budget_ns = 0  # what it charged the process's CPU budget (conditions included)
        self.location = ""  # "file:line (function)" once resolved
        # set at install when the condition is simple enough: skips the evaluator when certainly false
        self.fast_false: Optional[Callable[[Any], bool]] = None
        self._lock = threading.Lock()
        self._snapshot_like = spec.kind in ("snapshot", "exception")
        # whether a hit evaluates anything, and so needs its work budget armed
        self._metered = bool(condition is not None or captures or metric_value is not None
                             or (template is not None and template.evaluates))
        self._redacted = host.redactor  # configured again in place, never replaced
        self._untimed = 0  # emitted hits since the last timed one (see on_line)
        self._log_format: Optional[Tuple[Any, Callable[[Any], str], Callable[[tuple], str], int]] = None
        self._emit_fn = {"log": self._emit_log, "snapshot": self._emit_snapshot, "metric": self._emit_metric}.get(
            spec.kind
        )

    # ---------------------------------------------------------------- line / entry hits
    def on_line(self, frame: FrameType, f_locals: Any, line: int = 0) -> None:
        """A hit at the probed `line` (0: function entry, for line kinds placed on a function);
        the caller has already applied `fast_false`."""
        if not self.active:
            return
        try:
            if self._metered:
                METER.hit = [WORK_BUDGET, self._redacted]  # work.arm, inline: this hit's work budget
            if self.condition is not None and not self._condition_holds(f_locals, frame.f_globals):
                return
            if not self._admit():
                return
            if self._snapshot_like or not self.emitted & 7 or self.spec.max_hits is not None:
                t0 = _cpu_ns()
                if self._emit_fn(frame, f_locals, line) is False:  # type: ignore[misc]
                    return  # nothing emitted: counted in `failed`
                self._spent((_cpu_ns() - t0) * (1 + self._untimed))  # also for the untimed hits since the last
                self._untimed = 0
            else:  # log and metric hits cost about the same each time: one in eight is timed
                if self._emit_fn(frame, f_locals, line) is False:  # type: ignore[misc]
                    return
                self.emitted += 1  # what _spent does for an untimed hit of a probe without a hit cap
                self._untimed += 1
        except OverBudget as exc:
            self._over_budget(exc)
        except Exception as exc:  # never into the host
            self._internal_error(exc)

    def _condition_holds(self, f_locals: Any, f_globals: Any) -> bool:
        self.evaluations += 1
        timed = self.evaluations == 1 or (self.evaluations & 7) == 0  # the first, then every 8th
        t0 = _cpu_ns() if timed else 0
        try:
            value = self.condition.run(f_locals, f_globals)  # type: ignore[union-attr]
        except OverBudget:
            raise
        except EvaluationError as exc:
            self._evaluation_failed(f"condition failed: {exc}")
            return False
        if timed:
            took = _cpu_ns() - t0
            self.host.cpu_spent(self, took * 8)
            budget = self.host.condition_budget_ns
            if took > budget:
                # only a timed evaluation within the budget clears this count: the untimed ones in between
                # say nothing about cost. Ten times over, or three timed ones in a row, and it is disabled now.
                self.slow += 1
                if took > 10 * budget or self.slow >= 3:
                    self.failures = self.host.condition_failures
                self._evaluation_failed(f"condition took {took / 1000:.0f} us, over its budget of "
                                        f"{budget / 1000:.0f} us")
                return False
            self.slow = 0
        if value is not True and (value is False or value is None or (id(type(value)) in _TRUTHY_TYPES and not value)):
            self.failures = 0
            self.filtered += 1
            return False
        if value is True or id(type(value)) in _TRUTHY_TYPES:
            self.failures = 0
            return True
        # a value that is no truth is a failure the evaluation must not clear: in a row, they disable the probe
        self._evaluation_failed(f"condition gave a {type_name(value)}, expected true/false")
        return False

    def _admit(self) -> bool:
        """Count the hit; apply hit cap, per-probe rate and the process snapshot cap."""
        with self._lock:  # also guards the probe's own rate limiter
            self.hits += 1
            cap = self.spec.max_hits
            if cap is not None and self.emitted >= cap:
                self.active = False
                self.host.request_disable(self, Status.DISABLED, f"max_hits reached ({cap})")
                return False
            if not self.limiter.take():
                self.rate_limited += 1
                return False
        if self._snapshot_like and not self.host.allow_snapshot():
            self.rate_limited += 1
            return False
        return True

    def _spent(self, ns: int) -> None:
        """Count an emitted event; `ns` is its cost (0: this hit was not timed)."""
        first = self.emitted == 0
        self.emitted += 1
        if ns:
            self.cpu_ns += ns
            self.host.cpu_spent(self, ns)
        if first:
            self.status = Status.EMITTING
            self.host.emit(StatusEvent(probe_id=self.id, status=Status.EMITTING))
        cap = self.spec.max_hits
        if cap is not None and self.emitted >= cap:
            self.active = False
            self.host.request_disable(self, Status.DISABLED, f"max_hits reached ({cap})")

    def _evaluation_failed(self, message: str) -> None:
        self.failures += 1
        self.failed += 1
        if self.failures >= self.host.condition_failures and self.active:
            self.active = False
            self.host.request_disable(
                self, Status.DISABLED,
                f"{message} ({self.failures} times in a row); fix the expression and add it again"
            )

    def _over_budget(self, exc: OverBudget) -> None:
        """An expression would have spent more work than a hit may: nothing more runs, now or later."""
        self.failed += 1
        if self.active:
            self.active = False
            self.host.request_disable(self, Status.DISABLED,
                                      f"{exc}; the probe stopped at that hit; probe something smaller and add it again")

    def _internal_error(self, exc: BaseException) -> None:
        self.active = False
        self.host.request_disable(self, Status.ERROR, f"probe failed and disabled itself: {type(exc).__name__}: {exc}")

    # ---------------------------------------------------------------- emitters
    def _header(self, frame: FrameType, line: int = 0) -> Tuple[str, str, int, str, str, str]:
        """(probe_id, file, line, function, thread, trace_id): the fields every located event starts with."""
        code = frame.f_code
        ctx = tracecontext.current()
        # f_lineno walks the line table: the hooks know the line
        return (self.id, code.co_filename, line or frame.f_lineno, code_name(code),
                thread_name(), ctx[0] if ctx else "")

    def _where(self, frame: FrameType, line: int = 0) -> dict:
        return _header_fields(self._header(frame, line))

    def _emit_log(self, frame: FrameType, f_locals: Any, line: int) -> None:
        # Values read now, text finished by the reader: numbers and strings are immutable, so
        # formatting them later, on the reader's thread, gives the same line.
        rules = self.host.redactor.rules
        fmt = self._log_format
        if fmt is None or fmt[0] is not rules:
            fmt = self._log_format = self._log_formatter(rules)
        values = self.template.read(f_locals, frame.f_globals, fmt[1], fmt[3])  # type: ignore[union-attr]
        # a tuple, not the event: the ring's reader builds the object (see EventBuffer)
        self.host.emit((_log_event, self._header(frame, line), fmt[2], values, _time()))

    def _log_formatter(self, rules: Any) -> Tuple[Any, Callable[[Any], str], Callable[[tuple], str], int]:
        """(rules, format one value, finish a line from read values, chars kept of a string)."""
        limit, template = self.limits.max_string, self.template

        def format_value(value: Any) -> str:
            return safe_repr(value, limit, rules)

        def finish(values: tuple) -> str:
            return template.finish(values, format_value)  # type: ignore[union-attr]

        return rules, format_value, finish, repr_reads(limit)

    def _emit_snapshot(self, frame: FrameType, f_locals: Any, line: int) -> None:
        # Internal capture nodes, made into the documented trees by the ring's reader (_snapshot_event).
        redactor, limits = self.host.redactor, self.limits
        deadline = deadline_for(limits)  # the hit's captures share it
        arguments, captured = capture_locals_raw(dict(f_locals), parameter_names(frame.f_code), limits, redactor, deadline)
        exprs = field_map_raw({src: self._capture_expr(e, f_locals, frame.f_globals, deadline) for src, e in self.captures})
        stack = capture_stack_raw(frame, limits)
        self.host.emit((_snapshot_event, self._header(frame, line), arguments, captured, exprs, stack, _time()))

    def _capture_expr(self, expr: Expression, f_locals: Any, f_globals: Any, deadline: int) -> tuple:
        try:
            return capture_value_raw(expr.run(f_locals, f_globals), self.limits, self.host.redactor, None, deadline)
        except OverBudget:
            raise
        except EvaluationError as exc:
            return error_raw(str(exc))

    def _emit_metric(self, frame: FrameType, f_locals: Any, line: int) -> bool:
        metric = self.spec.metric
        value: Any = 1
        if self.metric_value is not None:
            try:
                value = self.metric_value.run(f_locals, frame.f_globals)
            except OverBudget:
                raise
            except EvaluationError as exc:
                self._evaluation_failed(f"metric value failed: {exc}")
                return False
            if id(type(value)) not in _NUMBER:
                self._evaluation_failed(f"metric value is a {type_name(value)}, expected a number")
                return False
        self.host.emit(MetricEvent(name=metric.name, metric_type=metric.type, value=float(value),  # type: ignore
                                   unit=metric.unit, **self._where(frame, line)))  # type: ignore[union-attr]
        return True

    # ---------------------------------------------------------------- function enter / exit
    def on_enter(self, frame: FrameType) -> Any:
        """Start of a call of a function-level probe; returns a token for `on_exit`: a span in flight, or
        for a duration metric the thread's CPU clock (so the event tells work from waiting), read only
        when the rate limiter would admit a hit now (the read costs about a microsecond)."""
        if not self.active:
            return None
        if self.spec.kind != "span":
            return _cpu_ns() if self.spec.kind == "metric" and self.limiter.ready() else None
        try:
            return _SpanToken.start(self, frame)
        except Exception as exc:
            self._internal_error(exc)
            return None

    def on_exit(self, frame: Optional[FrameType], exc: Optional[BaseException], start_ns: int, token: Any) -> None:
        span = token if isinstance(token, _SpanToken) else None
        if not self.active:
            if span is not None:
                span.abandon()
            return
        try:
            kind = self.spec.kind
            if kind == "exception" and exc is None:
                return
            if self._metered:
                METER.hit = [WORK_BUDGET, self._redacted]
            if self.condition is not None and frame is not None:
                if not self._condition_holds(frame.f_locals, frame.f_globals):
                    if span is not None:
                        span.abandon()
                    return
            if not self._admit():
                if span is not None:
                    span.abandon()
                return
            t0, c0 = _now_ns(), _cpu_ns()
            if kind == "span":
                token.finish(self, frame, exc, t0 - start_ns, time.time_ns())
            elif kind == "exception":
                self._emit_exception(frame, exc)  # type: ignore[arg-type]
            else:  # duration metric
                metric = self.spec.metric
                where = self._where(frame) if frame is not None else {"probe_id": self.id}
                cpu = (c0 - token) / 1e6 if type(token) is int else None  # not read at entry
                self.host.emit(MetricEvent(name=metric.name, metric_type="duration",  # type: ignore[union-attr]
                                           value=(t0 - start_ns) / 1e6, unit="ms", error=exc is not None,
                                           cpu_ms=cpu, **where))
            self._spent(_cpu_ns() - c0)
        except OverBudget as err:
            if span is not None:
                span.abandon()
            self._over_budget(err)
        except Exception as err:
            self._internal_error(err)

    def _emit_exception(self, frame: Optional[FrameType], exc: BaseException) -> None:
        redactor, limits = self.host.redactor, self.limits
        deadline, frames = deadline_for(limits), []  # type: int, List[dict]
        tb = exc.__traceback__
        while tb is not None and len(frames) < limits.max_frames:
            f = tb.tb_frame
            frames.append({
                "function": code_name(f.f_code),
                "file": f.f_code.co_filename,
                "line": tb.tb_lineno,
                "locals": capture_locals(dict(f.f_locals), limits, redactor, deadline),
            })
            tb = tb.tb_next
        where = self._where(frame) if frame is not None else {"probe_id": self.id}
        self.host.emit(ExceptionEvent(
            exc_type=type_name(exc),
            message=capture_value(exc, limits, redactor, None, deadline), frames=frames, **where))


_HEADER = ("probe_id", "file", "line", "function", "thread", "trace_id")


def _header_fields(header: tuple) -> dict:
    """`ProbeRuntime._header`'s tuple as the keyword arguments of a located event."""
    return dict(zip(_HEADER, header))


def _log_event(header: tuple, finish: Callable[[tuple], str], values: tuple, ts: float) -> LogEvent:
    """The reader's half of a log hit (see `_emit_log`); the text is finished on first read."""
    return LogEvent(*header, "", finish, values, ts)


def _snapshot_event(header: tuple, arguments: tuple, captured: tuple, exprs: tuple, stack: tuple,
                    ts: float) -> SnapshotEvent:
    """The reader's half of a snapshot hit (see `_emit_snapshot`)."""
    event = SnapshotEvent(**_header_fields(header), arguments=as_tree(arguments), locals=as_tree(captured),
                          expressions=as_tree(exprs), stack=as_stack(stack))
    event.ts = ts
    return event


class _SpanToken:
    """One span in flight: an OpenTelemetry span when the service has the API, else our own ids."""

    __slots__ = ("trace_id", "span_id", "parent", "ctx_token", "otel_span", "otel_token")

    @classmethod
    def start(cls, probe: ProbeRuntime, frame: FrameType) -> "_SpanToken":
        tok = cls()
        tok.otel_span = tok.otel_token = None
        otel = sys.modules.get("opentelemetry.trace")
        name = probe.spec.name or code_name(frame.f_code)
        parent = tracecontext.current()  # before our span becomes the current one
        tok.parent = parent[1] if parent else ""
        if otel is not None:
            context = sys.modules["opentelemetry.context"]
            span = otel.get_tracer("probebook").start_span(name)
            tok.otel_span = span
            tok.otel_token = context.attach(otel.set_span_in_context(span))
            sc = span.get_span_context()
            tok.trace_id, tok.span_id = format(sc.trace_id, "032x"), format(sc.span_id, "016x")
        if otel is None or tok.trace_id == "0" * 32:
            tok.trace_id = parent[0] if parent else tracecontext.new_trace_id()
            tok.span_id = tracecontext.new_span_id()
        tok.ctx_token = tracecontext.push_span(tok.trace_id, tok.span_id)
        return tok

    def abandon(self) -> None:
        tracecontext.reset(self.ctx_token)
        if self.otel_span is not None:
            sys.modules["opentelemetry.context"].detach(self.otel_token)
            self.otel_span.end()

    def finish(self, probe: ProbeRuntime, frame: Optional[FrameType], exc: Optional[BaseException], ns: int,
               end_wall_ns: int) -> None:
        tracecontext.reset(self.ctx_token)
        if self.otel_span is not None:
            otel = sys.modules["opentelemetry.trace"]
            if exc is not None:  # the type name only: str(exc) could run user code
                self.otel_span.set_status(otel.Status(otel.StatusCode.ERROR, class_name(type(exc))))
            sys.modules["opentelemetry.context"].detach(self.otel_token)
            self.otel_span.end()
        where = probe._where(frame) if frame is not None else {"probe_id": probe.id}
        where["trace_id"] = self.trace_id
        probe.host.emit(SpanEvent(
            name=probe.spec.name or where.get("function", ""), span_id=self.span_id, parent_span_id=self.parent,
            start_ns=end_wall_ns - ns, duration_ns=ns, error=class_name(type(exc)) if exc is not None else "",
            otel=self.otel_span is not None, **where))
