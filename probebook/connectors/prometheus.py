"""Prometheus instant and range queries as polars frames: one row per sample, labels as columns.

>>> prom = PrometheusClient("http://127.0.0.1:9090", timeout=10)                   # doctest: +SKIP
>>> prom.query_range("rate(http_requests_total[1m])", start=t0, end=t1, step=15).frame   # doctest: +SKIP
shape: (240, 6)
ts                       value  series                                         metric  code  route
2024-05-01 10:00:00 UTC  3.2    {code="200",route="/api/checkout"}             null    200   /api/checkout

Columns: ``ts`` (UTC), ``value``, ``series`` (the series' labels written the PromQL way, one key
per series), ``metric`` (``__name__``, null after functions drop it), then one column per label.
A label whose name is one of those columns arrives as ``label_<name>``. Labels as columns (not a
struct) because an SRE filters and colours by them: ``frame.filter(pl.col("route") == "/charges")``.

A PromQL error raises `QueryRejected` in Prometheus's own words. A range needing more points than
Prometheus returns in one answer (11,000 per series) is fetched in chunks; when a later chunk
fails (the server went down, or the deadline passed), the chunks already read come back with
``partial=True`` and the reason in `warnings`, never a hang.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import polars as pl

from probebook.errors import QueryRejected, SourceUnreachable, SpecError, TelemetryInputError
from probebook.protocol.spec import parse_duration

from .http_json import check_base_url, get

__all__ = ["PrometheusClient", "PromResult", "series_key", "RESERVED_COLUMNS", "MAX_POINTS", "parse_step"]

MAX_POINTS = 11000  # Prometheus refuses range answers with more points per series than this
RESERVED_COLUMNS = ("ts", "value", "series", "metric", "evidence_id")

Progress = Callable[[int, int], None]  # (chunks done, chunks in all)


@dataclass
class PromResult:
    """One query's answer. `params` re-runs it exactly (absolute times)."""

    query: str
    kind: str  # instant | range
    frame: pl.DataFrame
    source: str
    params: Dict[str, Any]
    partial: bool = False
    warnings: List[str] = field(default_factory=list)
    result_type: str = ""
    label_columns: List[str] = field(default_factory=list)

    @property
    def series_count(self) -> int:
        return self.frame["series"].n_unique() if self.frame.height else 0


def series_key(labels: Mapping[str, str]) -> str:
    """``http_requests_total{code="200",route="/x"}``: the series as PromQL writes it."""
    name = labels.get("__name__", "")
    rest = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def parse_step(step: Any, what: str = "step") -> float:
    try:
        return parse_duration(step, what)
    except SpecError as exc:
        raise TelemetryInputError(str(exc)) from None


class PrometheusClient:
    """Prometheus's HTTP API. `timeout` bounds each query, start to end (the server is asked to
    give up a little earlier, so that its own words arrive instead of our timeout)."""

    def __init__(self, url: str, timeout: float = 10.0, headers: Optional[Mapping[str, str]] = None,
                 max_points: int = MAX_POINTS) -> None:
        self.url = check_base_url(url, "Prometheus")
        self.timeout, self.headers, self.max_points = float(timeout), dict(headers or {}), max(2, max_points)

    # ------------------------------------------------------------------ queries
    def query(self, promql: str, at: Optional[float] = None) -> PromResult:
        """The value of `promql` at `at` (epoch seconds; default now)."""
        promql = _check_query(promql)
        at = time.time() if at is None else float(at)
        params = {"query": promql, "time": f"{at:.3f}"}
        data, warnings = self._call("/api/v1/query", params, time.monotonic() + self.timeout)
        rows, skipped = _rows(data)
        frame, labels = _frame(rows)
        return PromResult(promql, "instant", frame, self.url, {"time": at}, bool(warnings) or skipped > 0,
                          warnings + _skipped_note(skipped), data.get("resultType", ""), labels)

    def query_range(self, promql: str, start: float, end: float, step: Any,
                    progress: Optional[Progress] = None) -> PromResult:
        """`promql` from `start` to `end` (epoch seconds) every `step` (seconds or ``"15s"``)."""
        promql = _check_query(promql)
        step_s = parse_step(step)
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise TelemetryInputError(f"range: the end ({end}) is before the start ({start})")
        chunks = _chunks(start, end, step_s, self.max_points)
        deadline = time.monotonic() + self.timeout
        rows: List[Tuple[Dict[str, str], float, float]] = []
        warnings: List[str] = []
        partial, skipped, result_type = False, 0, ""
        for i, (lo, hi) in enumerate(chunks):
            params = {"query": promql, "start": f"{lo:.3f}", "end": f"{hi:.3f}", "step": f"{step_s:g}"}
            try:
                data, warn = self._call("/api/v1/query_range", params, deadline)
            except SourceUnreachable as exc:  # timeouts too
                if i == 0:
                    raise
                partial = True
                warnings.append(f"partial: {len(chunks) - i} of {len(chunks)} chunks not read "
                                f"(from {lo:.0f}): {exc}")
                break
            warnings += warn
            got, dropped = _rows(data)
            rows += got
            skipped += dropped
            result_type = data.get("resultType", result_type)
            if progress is not None:
                progress(i + 1, len(chunks))
        frame, labels = _frame(rows)
        return PromResult(promql, "range", frame, self.url, {"start": start, "end": end, "step": step_s},
                          partial or bool(warnings) or skipped > 0, warnings + _skipped_note(skipped),
                          result_type, labels)

    def alert_rules(self) -> Dict[str, List[Tuple[str, Dict[str, str]]]]:
        """Each alerting rule's name and, for every rule of that name (a warning and a critical one may
        share it), its PromQL and its own labels (`/api/v1/rules`): the query whose series are the alerts,
        so a symptom can be checked again without waiting for the alert to resolve."""
        data, _ = self._call("/api/v1/rules", {"type": "alert"}, time.monotonic() + self.timeout)
        out: Dict[str, List[Tuple[str, Dict[str, str]]]] = {}
        for group in data.get("groups") or []:
            for rule in (group or {}).get("rules") or []:
                if isinstance(rule, dict) and rule.get("type", "alerting") == "alerting" and rule.get("name"):
                    labels = {str(k): str(v) for k, v in (rule.get("labels") or {}).items()}
                    out.setdefault(str(rule["name"]), []).append((str(rule.get("query", "")), labels))
        return out

    # ------------------------------------------------------------------ HTTP
    def _call(self, path: str, params: Dict[str, str], deadline: float) -> Tuple[Dict[str, Any], List[str]]:
        left = deadline - time.monotonic()
        if left <= 0.05:
            raise SourceUnreachable(f"Prometheus at {self.url}: the {self.timeout:g}s timeout passed")
        server_budget = max(0.5, left - 0.5) if left > 1.0 else left
        answer = get(self.url, path, {**params, "timeout": f"{int(server_budget * 1000)}ms"}, timeout=left,
                     what="Prometheus", headers=self.headers)
        doc = answer.json("Prometheus", self.url)
        if not isinstance(doc, dict):
            raise SourceUnreachable(f"Prometheus at {self.url} answered {answer.text(80)!r}; is the URL that of "
                                    f"Prometheus?")
        if doc.get("status") != "success":
            kind = str(doc.get("errorType", ""))
            words = str(doc.get("error", "") or answer.text())
            raise QueryRejected(f"Prometheus: {kind + ': ' if kind else ''}{words}", answer.status, kind)
        data = doc.get("data")
        if not isinstance(data, dict):
            raise SourceUnreachable(f"Prometheus at {self.url} answered without data: {answer.text(80)!r}")
        return data, [str(w) for w in doc.get("warnings") or []]


def _check_query(promql: Any) -> str:
    if not isinstance(promql, str) or not promql.strip():
        raise TelemetryInputError('PromQL query is empty; e.g. rate(http_requests_total[5m])')
    return promql.strip()


def _chunks(start: float, end: float, step: float, max_points: int) -> List[Tuple[float, float]]:
    """[start, end] cut where a piece would pass `max_points` points; pieces share no point."""
    out, lo = [], start
    while True:
        hi = min(end, lo + (max_points - 1) * step)
        out.append((lo, hi))
        if hi >= end:
            return out
        lo = hi + step


def _rows(data: Mapping[str, Any]) -> Tuple[List[Tuple[Dict[str, str], float, float]], int]:
    """(labels, ts, value) per sample, and how many native-histogram samples were skipped."""
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        if kind == "string":
            raise QueryRejected("Prometheus answered a string; query a number or a series", 0, "string")
        return [({}, float(result[0]), float(result[1]))], 0  # type: ignore[index]
    rows: List[Tuple[Dict[str, str], float, float]] = []
    skipped = 0
    for item in result or []:
        labels = item.get("metric") or {}
        if "value" in item:
            ts, value = item["value"]
            rows.append((labels, float(ts), float(value)))
        for ts, value in item.get("values") or []:
            rows.append((labels, float(ts), float(value)))
        skipped += (1 if "histogram" in item else 0) + len(item.get("histograms") or [])
    return rows, skipped


def _skipped_note(skipped: int) -> List[str]:
    return [f"{skipped} native histogram samples skipped (query a histogram_quantile or _count instead)"] \
        if skipped else []


def _frame(rows: List[Tuple[Dict[str, str], float, float]]) -> Tuple[pl.DataFrame, List[str]]:
    names = sorted({k for labels, _, _ in rows for k in labels if k != "__name__"})
    columns = {n: (f"label_{n}" if n in RESERVED_COLUMNS else n) for n in names}
    keys: Dict[int, str] = {}
    data: Dict[str, List[Any]] = {c: [] for c in ("ts", "value", "series", "metric", *columns.values())}
    for labels, ts, value in rows:
        key = keys.get(id(labels))
        if key is None:
            key = keys[id(labels)] = series_key(labels)
        data["ts"].append(int(round(ts * 1_000_000)))
        data["value"].append(value)
        data["series"].append(key)
        data["metric"].append(labels.get("__name__"))
        for name, column in columns.items():
            data[column].append(labels.get(name))
    schema = {"ts": pl.Int64, "value": pl.Float64, "series": pl.Utf8, "metric": pl.Utf8,
              **{c: pl.Utf8 for c in columns.values()}}
    frame = pl.DataFrame(data, schema=schema).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    return frame.sort(["series", "ts"]), list(columns.values())

