"""Span probes use OpenTelemetry when the service has it."""

import shapes
from conformance_support import events
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_PROVIDER)


def test_span_probe_makes_real_opentelemetry_spans_under_the_current_one(agent):
    _EXPORTER.clear()
    agent.add_probe({"kind": "span", "where": "shapes:fact", "name": "fact-call"})
    tracer = trace.get_tracer("service")
    with tracer.start_as_current_span("request") as request:
        assert shapes.fact(2) == 2
    ours = events(agent, "span")
    exported = [s for s in _EXPORTER.get_finished_spans() if s.name == "fact-call"]
    assert len(ours) == 2 and len(exported) == 2
    assert all(e.otel for e in ours)
    trace_id = format(request.get_span_context().trace_id, "032x")
    assert {e.trace_id for e in ours} == {trace_id}
    assert {format(s.context.span_id, "016x") for s in exported} == {e.span_id for e in ours}
    outer = [s for s in exported if s.parent.span_id == request.get_span_context().span_id]
    assert len(outer) == 1  # the outer fact() nests under the request; the inner under the outer


def test_span_error_status_uses_the_type_name_only(agent):
    _EXPORTER.clear()
    agent.add_probe({"kind": "span", "where": "shapes:fails"})
    try:
        shapes.fails(0)
    except ZeroDivisionError:
        pass
    (span,) = [s for s in _EXPORTER.get_finished_spans()]
    assert span.status.status_code.name == "ERROR" and span.status.description == "ZeroDivisionError"
    (ev,) = events(agent, "span")
    assert ev.error == "ZeroDivisionError"
