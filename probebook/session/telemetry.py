"""The investigation's view of the existing telemetry: alerts, PromQL, logs and changes, each
fetched, stored as evidence (with its query) and returned as a polars frame.

>>> inv = Investigation("incident-42.duckdb")                                     # doctest: +SKIP
>>> inv.configure_telemetry(prometheus="http://127.0.0.1:9090", alertmanager="http://127.0.0.1:9093",
...                         log_paths={"orders": ["/var/log/orders/*.jsonl"]})      # doctest: +SKIP
>>> inv.alerts()                      # open and recently resolved alerts          # doctest: +SKIP
>>> inv.promql("sum by (route) (rate(http_requests_total[1m]))", range="30m", step="15s")   # doctest: +SKIP
>>> inv.logs("orders", grep="timeout", since="10m")                                # doctest: +SKIP
>>> inv.changes(since="2h")                                                        # doctest: +SKIP

Sources come from the environment (``PROBEBOOK_PROMETHEUS_URL``, ``PROBEBOOK_ALERTMANAGER_URL``,
``PROBEBOOK_LOKI_URL``, ``PROBEBOOK_LOG_GLOB``, ``PROBEBOOK_GIT_REPO``, ``PROBEBOOK_GIT_PATHS``,
``PROBEBOOK_CHANGE_LOG``), from a running lab (`use_lab`), and from `configure_telemetry`, in that
order of strength. A result that is not whole (a chunk that failed, a half-written log line, a
limit reached) comes back all the same, with a `PartialResultWarning`; `telemetry.last` says why.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import polars as pl

from probebook.connectors.alertmanager import Alert, AlertmanagerClient, AlertReceiver
from probebook.connectors.changes import ChangeResult, GitHistory, read_change_log
from probebook.connectors.http_json import check_base_url
from probebook.connectors.logs import LogFilter, LokiClient, read_log_files
from probebook.connectors.prometheus import PrometheusClient, parse_step
from probebook.connectors.source_errors import TelemetryInputError
from probebook.connectors.timefmt import Since, parse_time, window_start
from probebook.evidence import EvidenceStore
from probebook.evidence import telemetry as ev

__all__ = ["Telemetry", "TelemetryMixin", "TelemetrySources", "FetchInfo", "PartialResultWarning", "promql_figure"]

DEFAULT_CHANGES_SINCE = "24h"


class PartialResultWarning(UserWarning):
    """A fetch returned less than was asked for; the reasons are in the message and `telemetry.last`."""


@dataclass
class FetchInfo:
    """The last fetch: its query id (in `telemetry_queries`), rows, and whether it is whole."""

    query_id: str
    rows: int
    partial: bool = False
    notes: List[str] = field(default_factory=list)


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
                   timeout=seconds)

    def with_lab(self, state_dir: str) -> "TelemetrySources":
        """These sources plus a running lab's: its Prometheus, Alertmanager, service logs and change log."""
        manifest = os.path.join(state_dir, "lab.json")
        try:
            with open(manifest, encoding="utf-8") as fh:
                lab = json.load(fh)
        except (OSError, ValueError) as exc:
            raise TelemetryInputError(f"no lab in {state_dir} ({getattr(exc, 'strerror', None) or exc}); "
                                      f"start one with python -m probebook.lab.cli up") from None
        mon = lab.get("monitoring") or {}
        logs = {name: [entry["log"]] for name, entry in (lab.get("services") or {}).items() if entry.get("log")}
        return replace(self, prometheus=mon.get("prometheus") or self.prometheus,
                       alertmanager=mon.get("alertmanager") or self.alertmanager,
                       log_paths={**self.log_paths, **logs},
                       change_logs=sorted(set(self.change_logs) | ({lab["changes"]} if lab.get("changes") else set())))

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

    def configure(self, **changes: Any) -> TelemetrySources:
        """Change sources by name (``prometheus="http://..."``); unknown names are a one-line error."""
        known = {f.name for f in fields(TelemetrySources)}
        wrong = sorted(set(changes) - known)
        if wrong:
            raise TelemetryInputError(f"unknown telemetry setting {wrong[0]!r}; settings: {', '.join(sorted(known))}")
        self.sources = replace(self.sources, **changes).checked()
        return self.sources

    def use_lab(self, state_dir: Optional[str] = None) -> TelemetrySources:
        """Add the sources of the lab running in `state_dir` (default: where `lab up` puts it)."""
        if state_dir is None:
            from probebook.lab.runner import default_state_dir  # the lab's own default, not a copy of it

            state_dir = default_state_dir()
        self.sources = self.sources.with_lab(state_dir).checked()
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
                raise TelemetryInputError("no Alertmanager configured: configure_telemetry(alertmanager=URL), set "
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
    def promql(self, query: str, range: Optional[Since] = None, step: Optional[Any] = None,  # noqa: A002
               end: Optional[Any] = None, at: Optional[Any] = None,
               progress: Optional[Callable[[int, int], None]] = None) -> pl.DataFrame:
        """An instant query (no `range`), or `range` back from `end` (default now) every `step`."""
        if not self.sources.prometheus:
            raise TelemetryInputError("no Prometheus configured: configure_telemetry(prometheus=URL) or set "
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

    # ------------------------------------------------------------------ logs
    def logs(self, service: str, grep: Optional[str] = None, since: Since = None, trace: Optional[str] = None,
             level: Optional[str] = None, until: Since = None, fields: Optional[Mapping[str, str]] = None,
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
            raise TelemetryInputError(f"no log source for {service}: configure_telemetry(log_paths={{'{service}': "
                                      f"['/var/log/{service}/*.jsonl']}}), log_glob=..., or loki=URL")
        frame, qid = ev.store_log_lines(self.store, result, kind)
        self._done(qid, frame.height, result.partial, result.notes)
        return frame

    # ------------------------------------------------------------------ changes
    def changes(self, since: Since = None, service: Optional[str] = None, until: Since = None) -> pl.DataFrame:
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
            raise TelemetryInputError("no change source configured: configure_telemetry(git_repo=PATH, "
                                      "git_paths={...}) or change_logs=[FILE], or use_lab()")
        frame, qids = ev.store_changes(self.store, results)
        notes = [n for r in results for n in r.notes]
        self._done(", ".join(qids), frame.height, bool(notes), notes)
        return frame

    # ------------------------------------------------------------------ re-running
    def queries(self) -> pl.DataFrame:
        """Every fetch of this investigation: kind, source, query, parameters, rows, partial."""
        return self.store.sql("SELECT * FROM telemetry_queries ORDER BY ts")

    def rerun(self, query_id: str) -> pl.DataFrame:
        """Run a stored PromQL fetch again with its exact parameters (as a postmortem does)."""
        rows = self.store.sql(f"SELECT kind, query, params FROM telemetry_queries WHERE evidence_id = "
                              f"'{query_id.replace(chr(39), '')}'").rows()
        if not rows:
            raise TelemetryInputError(f"no stored query {query_id!r}; see queries()")
        kind, query, params = rows[0][0], rows[0][1], json.loads(rows[0][2])
        if kind == "promql_instant":
            return self.promql(query, at=params["time"])
        if kind == "promql_range":
            return self.promql(query, range=params["end"] - params["start"], step=params["step"], end=params["end"])
        raise TelemetryInputError(f"{query_id}: only PromQL fetches are re-run here; run {kind} again by its "
                                  f"parameters {params}")

    def close(self) -> None:
        with self._lock:
            if self.receiver is not None:
                self.receiver.stop()
                self.receiver = None


def _instant(value: Any, what: str) -> Optional[float]:
    if value is None:
        return None
    stamp = parse_time(value)
    if stamp is None:
        raise TelemetryInputError(f"{what}: expected a time (epoch seconds, ISO 8601 or datetime), got {value!r}")
    return stamp


def promql_figure(frame: pl.DataFrame, title: str = "") -> Any:
    """A plotly figure of a `promql` frame: a line per series over time, or bars for an instant query."""
    import plotly.graph_objects as go

    fig = go.Figure()
    instant = frame.height > 0 and frame["ts"].n_unique() == 1
    for (series,), part in frame.group_by(["series"], maintain_order=True):
        name = series if len(series) <= 80 else series[:79] + "…"
        if instant:
            fig.add_trace(go.Bar(x=[name], y=part["value"].to_list(), name=name))
        else:
            fig.add_trace(go.Scatter(x=part["ts"].to_list(), y=part["value"].to_list(), mode="lines", name=name))
    fig.update_layout(title=title[:120], height=360, margin={"l": 40, "r": 20, "t": 40, "b": 30},
                      showlegend=frame["series"].n_unique() <= 20 if frame.height else False)
    return fig


_MIXIN_LOCK = threading.Lock()


class TelemetryMixin:
    """What `Investigation` gains: `alerts`, `promql`, `logs`, `changes`, `listen_alerts`,
    `configure_telemetry`, `use_lab`; `close_telemetry` stops the alert receiver."""

    store: EvidenceStore

    @property
    def telemetry(self) -> Telemetry:
        tel = self.__dict__.get("_telemetry")
        if tel is None:
            with _MIXIN_LOCK:
                tel = self.__dict__.get("_telemetry")
                if tel is None:
                    tel = self.__dict__["_telemetry"] = Telemetry(self.store)
        return tel

    def configure_telemetry(self, **sources: Any) -> TelemetrySources:
        return self.telemetry.configure(**sources)

    def use_lab(self, state_dir: Optional[str] = None) -> TelemetrySources:
        return self.telemetry.use_lab(state_dir)

    def alerts(self, poll: bool = True, recent: Since = "1h") -> pl.DataFrame:
        return self.telemetry.alerts(poll, recent)

    def listen_alerts(self, port: int = 0) -> str:
        return self.telemetry.listen_alerts(port)

    def promql(self, query: str, range: Optional[Since] = None, step: Optional[Any] = None,  # noqa: A002
               **kw: Any) -> pl.DataFrame:
        return self.telemetry.promql(query, range, step, **kw)

    def logs(self, service: str, grep: Optional[str] = None, since: Since = None, trace: Optional[str] = None,
             **kw: Any) -> pl.DataFrame:
        return self.telemetry.logs(service, grep, since, trace, **kw)

    def changes(self, since: Since = None, **kw: Any) -> pl.DataFrame:
        return self.telemetry.changes(since, **kw)

    def close_telemetry(self) -> None:
        tel = self.__dict__.get("_telemetry")
        if tel is not None:
            tel.close()
