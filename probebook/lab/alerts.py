"""The lab's alert rules, written once: rendered to PromQL for Prometheus, and evaluated by the lab
itself from two scrapes of the services' /metrics when Prometheus is not installed.

>>> rule = RULES["QueueBacklog"]
>>> rule.promql("10s")
'max by (service) (queue_depth) > 30'
>>> a = {"worker": [("queue_depth", {"queue": "jobs"}, 12.0)]}
>>> b = {"worker": [("queue_depth", {"queue": "jobs"}, 45.0)]}
>>> [f.labels for f in rule.evaluate(a, b, 2.0)]
[{'service': 'worker'}]
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

__all__ = ["AlertRule", "Firing", "RULES", "Samples", "parse_metrics", "evaluate_all"]

Sample = Tuple[str, Dict[str, str], float]
Samples = Mapping[str, List[Sample]]  # service -> samples of one scrape (a service missing: scrape failed)


@dataclass(frozen=True)
class Firing:
    name: str
    labels: Dict[str, str]
    value: float
    summary: str


@dataclass(frozen=True)
class AlertRule:
    """One alert. `form` says how it is computed:

    error_ratio   share of 5xx among requests, by service and route
    latency_p95   95th percentile of http_request_duration_seconds, by service and route
    gauge_ratio   metric / metric2 (two gauges), by `by`
    gauge_above   max of a gauge, by `by`
    growth        how fast a gauge grows, per second
    rate_ratio    rate of the `selector` series over the rate of the `selector2` series
    down          the service's /metrics cannot be scraped
    """

    name: str
    form: str
    threshold: float
    summary: str
    metric: str = ""
    metric2: str = ""
    selector: Dict[str, str] = field(default_factory=dict)
    selector2: Dict[str, str] = field(default_factory=dict)
    by: Tuple[str, ...] = ("service",)
    min_rate: float = 0.2  # ratios over less traffic than this (per second) do not fire
    op: str = ">"

    # ------------------------------------------------------------------ PromQL
    def promql(self, window: str) -> str:
        by = ", ".join(self.by)
        if self.form == "error_ratio":
            total = f"sum by ({by}) (rate(http_requests_total[{window}]))"
            return (f'(sum by ({by}) (rate(http_requests_total{{code=~"5.."}}[{window}])) / {total}) '
                    f"{self.op} {self.threshold:g} and {total} > {self.min_rate:g}")
        if self.form == "latency_p95":
            return (f"histogram_quantile(0.95, sum by ({by}, le) (rate(http_request_duration_seconds_bucket"
                    f"[{window}]))) {self.op} {self.threshold:g}")
        if self.form == "gauge_ratio":
            return f"max by ({by}) ({self.metric}) / max by ({by}) ({self.metric2}) {self.op} {self.threshold:g}"
        if self.form == "gauge_above":
            return f"max by ({by}) ({self.metric}{_sel(self.selector)}) {self.op} {self.threshold:g}"
        if self.form == "growth":
            return f"max by ({by}) (deriv({self.metric}{_sel(self.selector)}[{window}])) {self.op} {self.threshold:g}"
        if self.form == "rate_ratio":
            top = f"sum(rate({self.metric}{_sel(self.selector)}[{window}]))"
            bottom = f"sum(rate({self.metric2 or self.metric}{_sel(self.selector2)}[{window}]))"
            return f"({top} / {bottom}) {self.op} {self.threshold:g} and {bottom} > {self.min_rate:g}"
        if self.form == "down":
            return 'up{service!=""} == 0'
        raise ValueError(f"unknown alert form {self.form!r}")

    # ------------------------------------------------------------------ the lab's own evaluation
    def evaluate(self, before: Samples, after: Samples, dt: float) -> List[Firing]:
        if self.form == "down":
            return [Firing(self.name, {"service": s}, 0.0, self.summary) for s in before if s not in after]
        values: Dict[Tuple[str, ...], float] = {}
        if self.form in ("error_ratio", "rate_ratio"):
            if self.form == "error_ratio":
                bad = _rates(before, after, dt, "http_requests_total", {}, self.by, lambda l: l["code"][:1] == "5")
                total = _rates(before, after, dt, "http_requests_total", {}, self.by)
            else:
                bad = _rates(before, after, dt, self.metric, self.selector, ())
                total = _rates(before, after, dt, self.metric2 or self.metric, self.selector2, ())
            values = {k: bad.get(k, 0.0) / v for k, v in total.items() if v > self.min_rate}
        elif self.form == "latency_p95":
            buckets: Dict[Tuple[str, ...], Dict[float, float]] = defaultdict(dict)
            for key, rate in _rates(before, after, dt, "http_request_duration_seconds_bucket", {},
                                    self.by + ("le",)).items():
                buckets[key[:-1]][float(key[-1])] = rate
            values = {k: q for k, b in buckets.items() if (q := _quantile(0.95, b)) is not None}
        elif self.form in ("gauge_above", "gauge_ratio"):
            top = _gauges(after, self.metric, self.selector, self.by)
            if self.form == "gauge_above":
                values = top
            else:
                bottom = _gauges(after, self.metric2, {}, self.by)
                values = {k: v / bottom[k] for k, v in top.items() if bottom.get(k)}
        elif self.form == "growth":
            first = _gauges(before, self.metric, self.selector, self.by)
            last = _gauges(after, self.metric, self.selector, self.by)
            values = {k: (v - first.get(k, v)) / dt for k, v in last.items()}
        keys = ("service",) + tuple(b for b in self.by if b != "service") if self.form != "rate_ratio" else ()
        return [Firing(self.name, dict(zip(keys, k)), v, self.summary)
                for k, v in sorted(values.items()) if _compare(v, self.op, self.threshold)]


def _sel(selector: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(selector.items())) + "}" if selector else ""


def _compare(value: float, op: str, threshold: float) -> bool:
    return value >= threshold if op == ">=" else value > threshold


def _rates(before: Samples, after: Samples, dt: float, metric: str, selector: Mapping[str, str],
           by: Tuple[str, ...], keep=lambda labels: True) -> Dict[Tuple[str, ...], float]:
    """Per-second increase by group; a series that restarted counts from zero (as Prometheus does)."""
    out: Dict[Tuple[str, ...], float] = defaultdict(float)
    for service, rows in after.items():
        earlier = {(n, tuple(sorted(l.items()))): v for n, l, v in before.get(service, [])}
        for name, labels, value in rows:
            full = {**labels, "service": service}
            if name != metric or any(full.get(k) != v for k, v in selector.items()) or not keep(full):
                continue
            prev = earlier.get((name, tuple(sorted(labels.items()))), 0.0)
            increase = value - prev if value >= prev else value
            key = (service, *(full.get(b, "") for b in by if b != "service")) if by else ()
            out[key] += increase / dt
    return dict(out)


def _gauges(samples: Samples, metric: str, selector: Mapping[str, str], by: Tuple[str, ...]) -> Dict[Tuple[str, ...], float]:
    out: Dict[Tuple[str, ...], float] = {}
    for service, rows in samples.items():
        for name, labels, value in rows:
            full = {**labels, "service": service}
            if name == metric and all(full.get(k) == v for k, v in selector.items()):
                key = (service, *(full.get(b, "") for b in by if b != "service"))
                out[key] = max(out.get(key, -math.inf), value)
    return out


def _quantile(q: float, buckets: Mapping[float, float]) -> Optional[float]:
    """histogram_quantile as Prometheus computes it: linear within the bucket that holds the rank."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            width = count - prev_count
            return prev_bound + (bound - prev_bound) * ((rank - prev_count) / width if width else 0.0)
        prev_bound, prev_count = bound, count
    return prev_bound


def parse_metrics(text: str) -> List[Sample]:
    """Samples of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return [(s.name, dict(s.labels), float(s.value)) for fam in text_string_to_metric_families(text)
            for s in fam.samples]


def evaluate_all(before: Samples, after: Samples, dt: float, rules: Iterable[AlertRule] = ()) -> List[Firing]:
    return [f for rule in (rules or RULES.values()) for f in rule.evaluate(before, after, dt)]


RULES: Dict[str, AlertRule] = {r.name: r for r in (
    AlertRule("HighErrorRate", "error_ratio", 0.05, "more than 5% of requests fail with 5xx",
              by=("service", "route")),
    AlertRule("HighLatency", "latency_p95", 0.4, "95th percentile latency above 400 ms", by=("service", "route")),
    AlertRule("PoolSaturated", "gauge_ratio", 1.0, "every database connection is checked out",
              metric="db_pool_in_use", metric2="db_pool_size", by=("service", "pool"), op=">="),
    AlertRule("QueueBacklog", "gauge_above", 30, "more than 30 jobs wait in the queue", metric="queue_depth"),
    AlertRule("CacheGrowth", "growth", 2.0, "the availability cache grows by more than 2 entries a second",
              metric="cache_entries", selector={"cache": "availability"}),
    AlertRule("RetryAmplification", "rate_ratio", 2.5, "orders makes more than 2.5 payment attempts per checkout",
              metric="http_client_requests_total", selector={"service": "orders", "target": "payments"},
              metric2="http_requests_total", selector2={"service": "gateway", "route": "/api/checkout"}),
    AlertRule("MemoryHigh", "gauge_above", 400e6, "a service holds more than 400 MB",
              metric="process_resident_memory_bytes"),
    AlertRule("ServiceDown", "down", 0, "Prometheus cannot scrape the service"),
)}
