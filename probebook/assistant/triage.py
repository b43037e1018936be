"""Triage steps the runbooks share (notebooks/runbooks/): is the alert real now, which deploys are still
live, which services are slow. Each reads the investigation's telemetry, so every answer is stored
evidence; each prints nothing and answers plain values a runbook's decision cell can say in words.

>>> newest_live([{"service": "orders", "kind": "deploy", "ts": 1, "details": {"from_version": "1", "to_version": "2"}},
...              {"service": "orders", "kind": "rollback", "ts": 2, "details": {"to_version": "1"}}])
[]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from probebook.protocol.spec import parse_duration
from probebook.session import Investigation

from .assistant import open_alerts
from .model import epoch_of
from .symptom import ask_alert_query

__all__ = ["incident_window", "AlertNow", "alert_now", "newest_live", "live_deploys", "slow_services", "calls_between", "bottom_of"]


@dataclass
class AlertNow:
    """`firing`: Alertmanager has it open; `holds`: its rule's PromQL still gives a series with its labels
    now (None: no rule of that name could be read); `series`: those series' labels."""

    name: str
    firing: bool
    holds: Optional[bool]
    query: str = ""
    labels: Dict[str, str] = field(default_factory=dict)
    series: List[Dict[str, Any]] = field(default_factory=list)
    started: float = 0.0

    @property
    def real(self) -> bool:
        return self.firing and self.holds is not False


def alert_now(inv: Investigation, name: str, labels: Optional[Mapping[str, str]] = None) -> AlertNow:
    """The alert `name` (with `labels`, when given) as Alertmanager and Prometheus see it now."""
    want = {str(k): str(v) for k, v in (labels or {}).items()}
    opened = [a for a in open_alerts(inv) if a.name == name and all(a.labels.get(k) == v for k, v in want.items())]
    # of several alerts of that name, the first by its labels: the same one whichever fired first
    opened.sort(key=lambda a: sorted(a.labels.items()))
    if opened and not want:
        want = {k: v for k, v in opened[0].labels.items() if k not in ("alertname", "severity")}
    queries = inv.telemetry.alert_queries(name, want)
    series: List[Dict[str, Any]] = []
    for query in queries:
        series += ask_alert_query(inv, query, want)[1]
    return AlertNow(name, bool(opened), bool(series) if queries else None, " or ".join(queries), want, series,
                    opened[0].starts_at if opened else 0.0)


def newest_live(changes: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Of deploy and rollback rows (in any order), each service's newest one, kept when it was a deploy
    from an earlier release (a rollback after it put the service back)."""
    newest: Dict[str, Mapping[str, Any]] = {}
    for row in sorted(changes, key=lambda r: epoch_of(r.get("ts"))):
        if row.get("kind") in ("deploy", "rollback"):
            newest[str(row.get("service"))] = row
    # a first deploy (nothing before it) has no release to go back to
    return [dict(r) for s, r in sorted(newest.items())
            if r.get("kind") == "deploy" and (r.get("details") or {}).get("from_version")]


def live_deploys(inv: Investigation, since: str = "1h", before: Optional[float] = None) -> List[Dict[str, Any]]:
    """Deploys within `since` (before `before`, epoch seconds, when given) that are still what runs:
    the newest change of a service was that deploy, not a rollback."""
    frame = inv.telemetry.changes(since=since, until=before)
    rows = []
    for row in frame.to_dicts():
        details = row.get("details")
        row["details"] = json.loads(details) if isinstance(details, str) else dict(details or {})
        rows.append(row)
    return newest_live(rows)


def incident_window(now: AlertNow, longest: str = "30s", shortest: float = 10.0) -> str:
    """A PromQL range over the incident only: the time since the alert started, at least `shortest` seconds
    and at most `longest` (a window reaching back before the onset averages the quiet time in, and a p95
    read right after the alert fired can fall under the threshold the alert itself crossed).

    >>> incident_window(AlertNow("X", True, True, started=time.time() - 12.4), "30s"), incident_window(AlertNow("X", True, True), "30s")
    ('12s', '30s')
    """
    top = parse_duration(longest, "window")
    since = time.time() - now.started if now.started else top
    return f"{int(max(shortest, min(since, top)))}s"


def slow_services(inv: Investigation, metric: str = "http_request_duration_seconds", quantile: float = 0.95,
                  threshold: float = 0.4, window: str = "1m") -> List[Tuple[str, float]]:
    """Services with a route whose `quantile` latency (from the histogram `metric`, labelled by service and
    route) is above `threshold` seconds, each with its slowest such route's latency, fastest first. Which of
    them the others wait for is `bottom_of`'s answer (latency alone cannot tell: a caller's fast route may
    sit beside a dependency's slow one)."""
    query = f"histogram_quantile({quantile}, sum by (service, route, le) (rate({metric}_bucket[{window}])))"
    frame = inv.telemetry.promql(query)
    worst: Dict[str, float] = {}
    for r in frame.to_dicts():
        value = float(r["value"]) if r.get("value") is not None else float("nan")
        if r.get("service") and value == value and value > threshold:  # NaN: a route with no requests
            worst[str(r["service"])] = max(value, worst.get(str(r["service"]), 0.0))
    return sorted(worst.items(), key=lambda sv: sv[1])


def calls_between(inv: Investigation, metric: str = "http_client_requests_total", window: str = "1m") -> Set[Tuple[str, str]]:
    """Which service calls which: (service, target) pairs with calls in the last `window`, from a client
    counter labelled by both."""
    frame = inv.telemetry.promql(f"sum by (service, target) (rate({metric}[{window}])) > 0")
    return {(str(r["service"]), str(r["target"])) for r in frame.to_dicts() if r.get("service") and r.get("target")}


def bottom_of(slow: Sequence[str], calls: Set[Tuple[str, str]]) -> List[str]:
    """Of the `slow` services, those none of whose dependencies is slow: where the others wait.

    >>> bottom_of(["gateway", "orders", "inventory"], {("gateway", "orders"), ("orders", "inventory")})
    ['inventory']
    """
    slow_set = set(slow)
    return sorted(s for s in slow_set if not any(a == s and b in slow_set and b != s for a, b in calls))
