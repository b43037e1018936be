"""Probes on a whole function (span, exception, duration metric) and metric values: a condition filters
them like a line probe's, an exception event says where and what was raised in full, a metric value that
is not a number is refused in one line and counted, and a probe that raises, spans and all, is disabled
without leaving the trace context behind."""

import pytest
import shapes
from conformance_support import HERE, events, marker_line, where
from support import wait_for

from probebook.agent import tracecontext


def _info(agent, probe):
    return agent.get_probe(probe.id)


def _disabled(agent, probe):
    """The probe's state once the agent has carried out its request to stop (on its housekeeping tick)."""
    return wait_for(lambda: _info(agent, probe) if _info(agent, probe).status == "disabled" else None, timeout=10,
                    what="the probe to be disabled")


@pytest.mark.parametrize("kind, extra", [("span", {}), ("exception", {}),
                                         ("metric", {"metric": {"name": "fails_ms", "type": "duration"}})])
def test_a_condition_on_a_function_probe_lets_only_its_calls_through(agent, kind, extra):
    probe = agent.add_probe({"kind": kind, "where": "shapes:fails", "when": "x == 0", "rate": 1000, **extra})
    for x in (2, 0, 5, 0):
        try:
            shapes.fails(x)
        except ZeroDivisionError:
            pass
    got = events(agent, kind)
    assert len(got) == 2, got  # the two calls with x == 0; the others are filtered
    info = _info(agent, probe)
    # an exception probe looks at its condition only for calls that raised (x == 2, 5 did not)
    assert info.hits == 2 and info.filtered == (0 if kind == "exception" else 2), info
    if kind == "metric":
        assert all(e.error is True and e.unit == "ms" and e.function.endswith("fails") for e in got)
    if kind == "span":
        assert all(e.error == "ZeroDivisionError" for e in got)
    assert tracecontext.current() is None


def test_an_exception_event_says_what_was_raised_where_and_every_frames_place(agent):
    probe = agent.add_probe({"kind": "exception", "where": "shapes:deep_fail"})
    with pytest.raises(ZeroDivisionError):
        shapes.deep_fail({"qty": 0, "password": "hunter2"})
    (exc,) = events(agent, "exception")
    assert exc.exc_type == "ZeroDivisionError" and exc.probe_id == probe.id
    assert exc.function.endswith("deep_fail") and exc.file.endswith("shapes.py") and exc.line > 0
    assert exc.message["type"] == "ZeroDivisionError"
    assert [a.get("value") for a in exc.message["args"]["elements"]] == ["division by zero"]
    outer, inner = exc.frames
    assert [f["function"].split(".")[-1] for f in exc.frames] == ["deep_fail", "_inner_fail"]
    assert all(f["file"] == f"{HERE}/shapes.py" for f in exc.frames)
    assert inner["line"] == marker_line("inner_fail") and outer["line"] == marker_line("inner_fail") - 5
    assert outer["locals"]["order"]["entries"][1][1] == {"type": "str", "not_captured": "redacted"}
    assert exc.trace_id == ""


def test_an_exception_event_keeps_at_most_max_frames(agent):
    agent.add_probe({"kind": "exception", "where": "shapes:deep_fail", "limits": {"max_frames": 1}})
    with pytest.raises(ZeroDivisionError):
        shapes.deep_fail({"qty": 0})
    (exc,) = events(agent, "exception")
    assert [f["function"].split(".")[-1] for f in exc.frames] == ["deep_fail"]


def test_a_metric_value_that_is_not_a_number_is_refused_counted_and_the_probe_stops(agent):
    probe = agent.add_probe({"kind": "metric", "where": where("method"),
                             "metric": {"name": "first", "type": "gauge", "value": "self.items[0]"}})
    cart = shapes.Cart(["a", "b"])
    for _ in range(10):
        try:
            cart.total()
        except TypeError:
            pass
    info = _disabled(agent, probe)
    assert events(agent, "metric") == []
    assert info.failed == 10, info
    assert "metric value is a str, expected a number" in info.reason


def test_a_metric_value_that_fails_says_why(agent):
    probe = agent.add_probe({"kind": "metric", "where": where("method"),
                             "metric": {"name": "tenth", "type": "gauge", "value": "self.items[10]"}})
    for _ in range(10):
        shapes.Cart([1, 2]).total()
    info = _disabled(agent, probe)
    assert info.reason.startswith("metric value failed:"), info
    assert "IndexError" in info.reason or "index" in info.reason


def test_a_gauge_carries_its_unit(agent):
    agent.add_probe({"kind": "metric", "where": where("method"),
                     "metric": {"name": "size", "type": "gauge", "value": "len(self.items)", "unit": "items"}})
    shapes.Cart([1, 2, 3]).total()
    (m,) = events(agent, "metric")
    assert (m.name, m.value, m.unit, m.metric_type) == ("size", 3.0, "items", "gauge")
    assert m.function.endswith("total") and m.line == int(where("method").rsplit(":", 1)[1])


def test_a_duration_metric_reads_the_cpu_clock_only_for_calls_it_may_emit(agent):
    agent.add_probe({"kind": "metric", "where": "shapes:slow", "rate": "1/m",
                     "metric": {"name": "slow_ms", "type": "duration"}})
    shapes.slow(1)
    shapes.slow(1)  # rate-limited: not emitted
    (dur,) = events(agent, "metric")
    assert dur.cpu_ms is not None and dur.value >= 0.5


def test_our_trace_context_is_put_back_when_a_span_probe_is_removed_mid_call(agent):
    probe = agent.add_probe({"kind": "span", "where": "shapes:slow"})
    shapes.slow(1)
    agent.remove_probe(probe.id)
    shapes.slow(1)
    assert len(events(agent, "span")) == 1 and tracecontext.current() is None
