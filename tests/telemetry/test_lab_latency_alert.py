"""The lab's HighLatency alert reads the p95 the way Prometheus does, interpolated inside a histogram
bucket: with a bucket as wide as 0.25-0.5 s it paged for customers whose p95 was 334 ms. The shop's
buckets put an edge at the threshold, so requests that all answer under it never page."""

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from probebook.lab.alerts import RULES, parse_metrics
from probebook.lab.shop.observe import LATENCY_BUCKETS


def _scrape(registry):
    return {"shop": parse_metrics(generate_latest(registry).decode())}


def _fires(samples):
    registry = CollectorRegistry()
    hist = Histogram("http_request_duration_seconds", "Time to answer a request", ["route"],
                     buckets=LATENCY_BUCKETS, registry=registry)
    hist.labels("/api/checkout")
    before = _scrape(registry)
    for s in samples:
        hist.labels("/api/checkout").observe(s)
    return [f.value for f in RULES["HighLatency"].evaluate(before, _scrape(registry), 10.0)]


def test_requests_under_the_threshold_never_page():
    rule = RULES["HighLatency"]
    assert rule.threshold in LATENCY_BUCKETS
    # 60% fast, 40% at 330-340 ms: the true p95 is 334 ms, under the 400 ms threshold
    assert _fires([0.05] * 60 + [0.33, 0.334, 0.338, 0.34] * 10) == []


def test_requests_over_the_threshold_page():
    assert _fires([0.05] * 60 + [0.45, 0.6] * 20)
