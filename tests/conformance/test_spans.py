"""A span probe's event says everything a trace needs, with OpenTelemetry and without it: its name, ids,
parent, start, duration and error, and it leaves the trace context as it found it."""

import re
import sys
import time

import pytest
import shapes
from conformance_support import events

from probebook.agent import tracecontext

HEX16, HEX32 = re.compile(r"^[0-9a-f]{16}$"), re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def no_otel(monkeypatch):
    """The service without the OpenTelemetry API (another test of this run may have imported it)."""
    for name in ("opentelemetry.trace", "opentelemetry.context"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def _timed(call):
    before = time.time_ns()
    try:
        call()
    except ZeroDivisionError:
        pass
    return before, time.time_ns()


def test_without_opentelemetry_the_span_has_our_ids_a_parent_and_its_times(agent, no_otel):
    agent.add_probe({"kind": "span", "where": "shapes:fact"})
    before, after = _timed(lambda: shapes.fact(3))
    inner, middle, outer = events(agent, "span")
    for span in (inner, middle, outer):
        assert span.name == span.function and span.function.endswith("fact"), span
        assert HEX16.match(span.span_id) and HEX32.match(span.trace_id) and span.trace_id != "0" * 32
        # the end is the wall clock read when the duration (perf_counter) ended; the start is back from it by
        # the duration: two clocks, which may disagree by a few microseconds over the call
        assert before - 50_000 <= span.start_ns and span.start_ns + span.duration_ns <= after, (before, span, after)
        assert span.duration_ns > 0
        assert span.error == "" and span.otel is False and span.probe_id
    assert outer.parent_span_id == "" and middle.parent_span_id == outer.span_id
    assert inner.parent_span_id == middle.span_id and len({s.trace_id for s in (inner, middle, outer)}) == 1
    assert outer.start_ns <= middle.start_ns <= inner.start_ns
    assert len({s.span_id for s in (inner, middle, outer)}) == 3
    assert tracecontext.current() is None  # the context is as it was before the call


def test_a_named_span_that_raises_says_which_exception_and_keeps_an_outer_trace(agent, no_otel):
    agent.add_probe({"kind": "span", "where": "shapes:fails", "name": "ratio"})
    outer = tracecontext.push_span("ab" * 16, "cd" * 8)  # a request's trace, as a web framework's hook sets it
    try:
        before, after = _timed(lambda: shapes.fails(0))
    finally:
        tracecontext.reset(outer)
    (span,) = events(agent, "span")
    assert (span.name, span.error, span.trace_id, span.parent_span_id) == ("ratio", "ZeroDivisionError",
                                                                            "ab" * 16, "cd" * 8)
    assert before <= span.start_ns <= after and span.otel is False
    _timed(lambda: shapes.fails(2))
    assert [s.error for s in events(agent, "span")][-1:] == [""]


def test_opentelemetry_that_records_nothing_still_gets_our_ids(agent, monkeypatch):
    from opentelemetry import trace
    monkeypatch.setattr(trace, "get_tracer", lambda *a, **k: trace.NoOpTracer())  # no provider: invalid spans
    agent.add_probe({"kind": "span", "where": "shapes:fact"})
    shapes.fact(2)
    inner, outer = events(agent, "span")
    assert HEX32.match(outer.trace_id) and outer.trace_id != "0" * 32 and HEX16.match(outer.span_id)
    assert inner.trace_id == outer.trace_id and inner.parent_span_id == outer.span_id
