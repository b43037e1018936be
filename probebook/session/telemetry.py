"""The investigation's view of the existing telemetry: alerts, PromQL, logs and changes, each
fetched, stored as evidence (with its query) and returned as a polars frame.

>>> tel = Investigation("incident-42.duckdb").telemetry                           # doctest: +SKIP
>>> tel.configure(prometheus="http://127.0.0.1:9090", alertmanager="http://127.0.0.1:9093",
...               log_paths={"orders": ["/var/log/orders/*.jsonl"]})                # doctest: +SKIP
>>> tel.alerts()                      # open and recently resolved alerts          # doctest: +SKIP
>>> tel.promql("sum by (route) (rate(http_requests_total[1m]))", range="30m", step="15s")   # doctest: +SKIP
>>> tel.logs("orders", grep="timeout", since="10m")                                # doctest: +SKIP
>>> tel.changes(since="2h")                                                        # doctest: +SKIP

Sources come from the environment (``PROBEBOOK_PROMETHEUS_URL``, ``PROBEBOOK_ALERTMANAGER_URL``,
``PROBEBOOK_LOKI_URL``, ``PROBEBOOK_LOG_GLOB``, ``PROBEBOOK_GIT_REPO``, ``PROBEBOOK_GIT_PATHS``,
``PROBEBOOK_CHANGE_LOG``), then from `join` (what a running system offers; its caller reads
that system's own description), then from `configure`, in that order of strength. A result
that is not whole (a chunk that failed, a half-written log line, a limit reached) comes back all
the same, with a `PartialResultWarning`; `telemetry.last` says why.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import polars as pl

from probebook.connectors.alertmanager import Alert, AlertmanagerClient, AlertReceiver
from probebook.connectors.changes import ChangeResult, GitHistory, read_change_log
from probebook.connectors.http_json import check_base_url
from probebook.connectors.logs import LogFilter, LokiClient, read_log_files
from probebook.connectors.prometheus import PrometheusClient, parse_step
from probebook.connectors.timefmt import Since, parse_time, window_start
from probebook.errors import TelemetryInputError
from probebook.evidence import EvidenceStore
from probebook.evidence import telemetry as ev

__all__ = ["Telemetry", "TelemetrySources", "FetchInfo", "PartialResultWarning", "Instant", "Step"]

DEFAULT_CHANGES_SINCE = "24h"

Instant = Union[float, int, str, _dt.datetime]  # epoch seconds (or ms, us, ns), ISO 8601, or a datetime
Step = Union[float, int, str]  # seconds, or a duration such as "15s"


class PartialResultWarning(UserWarning):
    """A fetch returned less than was asked for; the reasons are in the message and `telemetry.last`."""


@dataclass
class FetchInfo:
    """The last fetch: its query id (in `telemetry_queries`), rows, and whether it is whole."""

    query_id: str
    rows: int
    partial: bool = False
    notes: List[str] = field(default_factory=list)


def _host_port(url: str) -> Optional[Tuple[str, int]]:
    try:
        parts = urlsplit(url if "//" in url else f"//{url}")
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme or "http")
    except ValueError:
        return None
    return (parts.hostname or "", port) if parts.hostname and port else None


def _pairs(text: str, what: str) -> Dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise TelemetryInputError(f"{what}: expected SERVICE=VALUE pairs separated by commas, got {part!r}")
        out[key.strip()] = value.strip()
    return out


@dataclass
class TelemetrySources:
    """Where telemetry is read from. Unset sources are simply not asked."""

    prometheus: Optional[str] = None
    alertmanager: Optional[str] = None
    loki: Optional[str] = None
    loki_label: str = "service"  # the Loki stream label naming a service
    log_paths: Dict[str, List[str]] = field(default_factory=dict)  # service -> globs of JSON-lines files
    log_glob: Optional[str] = None  # for other services: a glob with {service}, e.g. /var/log/{service}/*.jsonl
    git_repo: Optional[str] = None
    git_paths: Dict[str, str] = field(default_factory=dict)  # service -> its folder in git_repo
    change_logs: List[str] = field(default_factory=list)  # JSON-lines change logs (the lab's changes.jsonl)
    catalog: Dict[str, str] = field(default_factory=dict)  # system -> its base URL, ours or an outside one's
    timeout: float = 10.0

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "TelemetrySources":
        env = os.environ if environ is None else environ
        get = lambda key: env.get(key) or None  # noqa: E731
        timeout = get("PROBEBOOK_TELEMETRY_TIMEOUT") or "10"
        try:
            seconds = float(timeout)
        except ValueError:
            raise TelemetryInputError(f"PROBEBOOK_TELEMETRY_TIMEOUT: expected seconds, got {timeout!r}") from None
        return cls(prometheus=get("PROBEBOOK_PROMETHEUS_URL"), alertmanager=get("PROBEBOOK_ALERTMANAGER_URL"),
                   loki=get("PROBEBOOK_LOKI_URL"), log_glob=get("PROBEBOOK_LOG_GLOB"),
                   git_repo=get("PROBEBOOK_GIT_REPO"),
                   git_paths=_pairs(get("PROBEBOOK_GIT_PATHS") or "", "PROBEBOOK_GIT_PATHS"),
                   change_logs=[p for p in (get("PROBEBOOK_CHANGE_LOG") or "").split(os.pathsep) if p],
                   catalog=_pairs(get("PROBEBOOK_CATALOG") or "", "PROBEBOOK_CATALOG"), timeout=seconds)

    def joined(self, prometheus: Optional[str] = None, alertmanager: Optional[str] = None,
               log_paths: Optional[Mapping[str, Sequence[str]]] = None,
               change_logs: Sequence[str] = (), catalog: Optional[Mapping[str, str]] = None) -> "TelemetrySources":
        """These sources and more: a URL given replaces this one; log files, change logs and catalog
        entries are added.

        >>> TelemetrySources(change_logs=["a.jsonl"]).joined(prometheus="http://p:9090",
        ...     log_paths={"orders": ["orders.jsonl"]}, change_logs=["b.jsonl"]).change_logs
        ['a.jsonl', 'b.jsonl']
        """
        return replace(self, prometheus=prometheus or self.prometheus, alertmanager=alertmanager or self.alertmanager,
                       log_paths={**self.log_paths, **{k: list(v) for k, v in (log_paths or {}).items()}},
                       change_logs=sorted(set(self.change_logs) | set(change_logs)),
                       catalog={**self.catalog, **dict(catalog or {})})

    def system_at(self, url: str) -> Optional[str]:
        """The catalog's name for the system a URL points at (same host and port), or None.

        >>> TelemetrySources(catalog={"bank": "http://10.0.0.9:8443"}).system_at("http://10.0.0.9:8443/v1/pay")
        'bank'
        """
        want = _host_port(url)
        return next((name for name, base in self.catalog.items() if want and _host_port(base) == want), None)

    def checked(self) -> "TelemetrySources":
        for name in ("prometheus", "alertmanager", "loki"):
            url = getattr(self, name)
            if url:
                check_base_url(url, name.capitalize())
        if not (isinstance(self.timeout, (int, float)) and 0 < self.timeout <= 600):
            raise TelemetryInputError(f"timeout: expected seconds from 0 to 600, got {self.timeout!r}")
        return self

    def log_files(self, service: str) -> List[str]:
        if service in self.log_paths:
            return list(self.log_paths[service])
        return [self.log_glob.replace("{service}", service)] if self.log_glob else []


class Telemetry:
    """Fetches from the configured sources into `store`. Thread-safe as the store is."""

    def __init__(self, store: EvidenceStore, sources: Optional[TelemetrySources] = None) -> None:
        self.store = store
        self.sources = (sources or TelemetrySources.from_env()).checked()
        self.receiver: Optional[AlertReceiver] = None
        self.last: Optional[FetchInfo] = None
        self._lock = threading.Lock()
        ev.ensure_tables(store)

    def configure(self, *, prometheus: Optional[str] = None, alertmanager: Optional[str] = None,
                  loki: Optional[str] = None, loki_label: Optional[str] = None,
                  log_paths: Optional[Mapping[str, Sequence[str]]] = None, log_glob: Optional[str] = None,
                  git_repo: Optional[str] = None, git_paths: Optional[Mapping[str, str]] = None,
                  change_logs: Optional[Sequence[str]] = None, timeout: Optional[float] = None) -> TelemetrySources:
        """Set the sources named; None leaves one as it is, ``""`` (or an empty mapping) clears it.
        A bad URL or timeout is a one-line `TelemetryInputError` and changes nothing."""
        changes: Dict[str, object] = {}
        for name, url in (("prometheus", prometheus), ("alertmanager", alertmanager), ("loki", loki),
                          ("log_glob", log_glob), ("git_repo", git_repo)):
            if url is not None:
                changes[name] = url or None
        if loki_label is not None:
            changes["loki_label"] = loki_label or "service"
        if log_paths is not None:
            changes["log_paths"] = {k: list(v) for k, v in log_paths.items()}
        if git_paths is not None:
            changes["git_paths"] = dict(git_paths)
        if change_logs is not None:
            changes["change_logs"] = list(change_logs)
        if timeout is not None:
            changes["timeout"] = timeout
        self.sources = replace(self.sources, **changes).checked()  # type: ignore[arg-type]
        return self.sources

    def join(self, prometheus: Optional[str] = None, alertmanager: Optional[str] = None,
             log_paths: Optional[Mapping[str, Sequence[str]]] = None,
             change_logs: Sequence[str] = (), catalog: Optional[Mapping[str, str]] = None) -> TelemetrySources:
        """Add what a running system offers (`TelemetrySources.joined`); `configure` still wins after."""
        self.sources = self.sources.joined(prometheus, alertmanager, log_paths, change_logs, catalog).checked()
        return self.sources

    def _done(self, qid: str, rows: int, partial: bool, notes: Sequence[str]) -> None:
        self.last = FetchInfo(qid, rows, partial, list(notes))
        if partial:
            warnings.warn(PartialResultWarning("partial result: " + "; ".join(notes)[:500]), stacklevel=3)

    # ------------------------------------------------------------------ alerts
    def alerts(self, poll: bool = True, recent: Since = "1h") -> pl.DataFrame:
        """Open alerts and those resolved within `recent`, after asking Alertmanager (when `poll`
        and one is configured); webhook deliveries are in the store already."""
        cutoff = window_start(recent, what="recent")
        if poll:
            if not self.sources.alertmanager and self.receiver is None:
                raise TelemetryInputError("no Alertmanager configured: telemetry.configure(alertmanager=URL), set "
                                          "PROBEBOOK_ALERTMANAGER_URL, or receive alerts with listen_alerts()")
            if self.sources.alertmanager:
                client = AlertmanagerClient(self.sources.alertmanager, self.sources.timeout)
                params = client.params()
                got = client.alerts()
                query = "GET /api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true"
                ev.store_alerts(self.store, got, client.url, query)
                ev.close_missing_alerts(self.store, got, client.url)
                qid = ev.record_query(self.store, "alerts", client.url, query, params, len(got))
                self._done(qid, len(got), False, [])
        return ev.alerts_frame(self.store, time.time() - (cutoff or 0.0))

    def listen_alerts(self, port: int = 0) -> str:
        """Start (once) a webhook receiver storing what Alertmanager sends; answers its URL."""
        with self._lock:
            if self.receiver is None or not self.receiver.running:
                self.receiver = AlertReceiver(self._received, port=port).start()
            return self.receiver.url

    def _received(self, alerts: List[Alert]) -> None:
        ev.store_alerts(self.store, alerts, "webhook", f"POST {self.receiver.url if self.receiver else ''}")

    # ------------------------------------------------------------------ metrics
    def promql(self, query: str, range: Since = None, step: Optional[Step] = None,  # noqa: A002
               end: Optional[Instant] = None, at: Optional[Instant] = None,
               progress: Optional[Callable[[int, int], None]] = None) -> pl.DataFrame:
        """An instant query (no `range`), or `range` back from `end` (default now) every `step`."""
        if not self.sources.prometheus:
            raise TelemetryInputError("no Prometheus configured: telemetry.configure(prometheus=URL) or set "
                                      "PROBEBOOK_PROMETHEUS_URL")
        client = PrometheusClient(self.sources.prometheus, self.sources.timeout)
        if range is None:
            if step is not None:
                raise TelemetryInputError("step needs a range, e.g. promql(q, range='30m', step='15s')")
            result = client.query(query, _instant(at, "at"))
        else:
            stop = _instant(end, "end") or time.time()
            start = window_start(range, now=stop, what="range")
            assert start is not None
            step_s = parse_step(step) if step is not None else max(1.0, math.ceil((stop - start) / 250))
            result = client.query_range(query, start, stop, step_s, progress)
        frame, qid = ev.store_metric_samples(self.store, result)
        self._done(qid, frame.height, result.partial, result.warnings)
        return frame

    def alert_queries(self, name: str, labels: Optional[Mapping[str, str]] = None) -> List[str]:
        """The PromQL of each alerting rule `name` in the configured Prometheus whose own labels agree with
        `labels` (an alert's: a critical and a warning rule may share a name); empty when it has none."""
        if not self.sources.prometheus:
            raise TelemetryInputError("no Prometheus configured: telemetry.configure(prometheus=URL) or set "
                                      "PROBEBOOK_PROMETHEUS_URL")
        rules = PrometheusClient(self.sources.prometheus, self.sources.timeout).alert_rules().get(name, [])
        want = dict(labels or {})
        return [q for q, own in rules if q and all(want.get(k, v) == v for k, v in own.items())]

    # ------------------------------------------------------------------ logs
    def logs(self, service: str, grep: Optional[str] = None, since: Since = None, trace: Optional[str] = None,
             level: Optional[str] = None, until: Optional[Instant] = None, fields: Optional[Mapping[str, str]] = None,
             limit: int = 10000) -> pl.DataFrame:
        """Lines of `service` from its files (`log_paths`, `log_glob`) or else from Loki."""
        if not isinstance(service, str) or not service.strip():
            raise TelemetryInputError("logs needs a service name, e.g. logs('orders', grep='timeout')")
        flt = LogFilter(service=service, since=window_start(since), until=_instant(until, "until"), level=level,
                        grep=grep or None, trace=trace, fields={k: str(v) for k, v in (fields or {}).items()})
        files = self.sources.log_files(service)
        if files:
            result = read_log_files(files, flt, limit=limit, timeout=max(self.sources.timeout, 30.0))
            kind = "logs"
        elif self.sources.loki:
            result = LokiClient(self.sources.loki, self.sources.timeout, label=self.sources.loki_label).query_range(
                flt, limit=limit)
            kind = "loki"
        else:
            raise TelemetryInputError(f"no log source for {service}: telemetry.configure(log_paths={{'{service}': "
                                      f"['/var/log/{service}/*.jsonl']}}), log_glob=..., or loki=URL")
        frame, qid = ev.store_log_lines(self.store, result, kind)
        self._done(qid, frame.height, result.partial, result.notes)
        return frame

    # ------------------------------------------------------------------ changes
    def changes(self, since: Since = None, service: Optional[str] = None, until: Optional[Instant] = None
                ) -> pl.DataFrame:
        """Commits, tags and change-log entries since `since` (default the last 24 hours), oldest first."""
        lo = window_start(since if since is not None else DEFAULT_CHANGES_SINCE)
        hi = _instant(until, "until")
        services = [service] if service else None
        results: List[ChangeResult] = []
        if self.sources.git_repo:
            history = GitHistory(self.sources.git_repo, self.sources.git_paths, timeout=max(self.sources.timeout, 20))
            results.append(history.changes(lo, hi, services))
        for path in self.sources.change_logs:
            results.append(read_change_log(path, lo, hi, services))
        if not results:
            raise TelemetryInputError("no change source configured: telemetry.configure(git_repo=PATH, "
                                      "git_paths={...}) or change_logs=[FILE]")
        frame, qids = ev.store_changes(self.store, results)
        notes = [n for r in results for n in r.notes]
        self._done(", ".join(qids), frame.height, bool(notes), notes)
        return frame

    # ------------------------------------------------------------------ re-running
    def queries(self) -> pl.DataFrame:
        """Every fetch of this investigation: kind, source, query, parameters, rows, partial."""
        return self.store.sql("SELECT * FROM telemetry_queries ORDER BY ts")

    def rerun(self, query_id: str) -> pl.DataFrame:
        """Run a stored fetch again with its exact parameters (as a postmortem does): a PromQL query at
        its time or over its range, log lines or changes over the window it read (up to when it ran)."""
        rows = self.store.sql(f"SELECT kind, query, params, epoch(ts) FROM telemetry_queries WHERE evidence_id = "
                              f"'{query_id.replace(chr(39), '')}'").rows()
        if not rows:
            raise TelemetryInputError(f"no stored query {query_id!r}; see queries()")
        kind, query, params, ran_at = rows[0][0], rows[0][1], json.loads(rows[0][2]), float(rows[0][3])
        if kind == "promql_instant":
            return self.promql(query, at=params["time"])
        if kind == "promql_range":
            return self.promql(query, range=params["end"] - params["start"], step=params["step"], end=params["end"])
        flt = params.get("filter", params)  # a log fetch keeps its filter beside the files it read
        since = _as_time(flt.get("since"))
        until = flt.get("until") if flt.get("until") is not None else ran_at
        if kind in ("logs", "loki") and flt.get("service"):
            return self.logs(flt["service"], grep=flt.get("grep"), since=since, trace=flt.get("trace"),
                             level=flt.get("level"), until=until, fields=flt.get("fields"))
        if kind == "changes":
            return self.changes(since=since if since is not None else _as_time(1.0), until=until)
        raise TelemetryInputError(f"{query_id}: a {kind} fetch is not re-run here; run it again by its "
                                  f"parameters {params}")

    def close(self) -> None:
        with self._lock:
            if self.receiver is not None:
                self.receiver.stop()
                self.receiver = None


def _as_time(epoch: Any) -> Optional[_dt.datetime]:
    """A stored window bound (epoch seconds) as the absolute time the fetch methods take."""
    return _dt.datetime.fromtimestamp(float(epoch), tz=_dt.timezone.utc) if epoch is not None else None


def _instant(value: Optional[Instant], what: str) -> Optional[float]:
    if value is None:
        return None
    stamp = parse_time(value)
    if stamp is None:
        raise TelemetryInputError(f"{what}: expected a time (epoch seconds, ISO 8601 or datetime), got {value!r}")
    return stamp
