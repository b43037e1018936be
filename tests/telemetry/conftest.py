"""Real Prometheus and Alertmanager for the telemetry tests, started once per session on free
loopback ports with temp configs and data dirs, evaluating the lab's alert rules over a small
metrics endpoint served by this process, and stopped at the end."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import Iterator, List

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from probebook.connectors.alertmanager import Alert, AlertReceiver  # noqa: E402
from probebook.lab.procs import free_port  # noqa: E402
from support import wait_for  # noqa: E402
from telemetry_support import Server, start_alertmanager, start_prometheus  # noqa: E402


@dataclass
class Target:
    """The metrics endpoint Prometheus scrapes: a queue backlog (the lab's QueueBacklog fires on it),
    a request counter that grows, and `flip`, a gauge the tests raise and lower."""

    port: int
    queue_depth: Gauge
    flip: Gauge
    requests: Counter


@dataclass
class Monitoring:
    prometheus: Server
    alertmanager: Server
    receiver: AlertReceiver
    webhook: List[Alert]  # every new or changed alert the receiver passed on, in order
    target: Target
    dead_port: int  # a scrape target nobody serves: the lab's ServiceDown fires for it

    def wait_webhook(self, predicate, timeout: float = 30.0, after: int = 0) -> Alert:
        """The first alert from the `after`-th delivery on for which `predicate` holds."""
        return wait_for(lambda: next((a for a in list(self.webhook)[after:] if predicate(a)), None), timeout,
                        what=lambda: f"such an alert by webhook; got {[a.line() for a in self.webhook]}")


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    registry = CollectorRegistry()
    queue = Gauge("queue_depth", "Jobs waiting", ["queue"], registry=registry)
    flip = Gauge("telemetry_test_flip", "Raised and lowered by the tests, one label value per test", ["case"],
                 registry=registry)
    requests = Counter("http_requests_total", "Requests", ["route", "method", "code"], registry=registry)
    queue.labels(queue="jobs").set(45)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.wait(0.05):
            requests.labels(route="/api/orders", method="GET", code="200").inc()

    load = threading.Thread(target=traffic, daemon=True)
    load.start()
    yield Target(port, queue, flip, requests)
    stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def monitoring(tmp_path_factory: pytest.TempPathFactory, target: Target) -> Iterator[Monitoring]:
    base = str(tmp_path_factory.mktemp("monitoring"))
    webhook: List[Alert] = []
    receiver = AlertReceiver(webhook.extend).start()
    dead = free_port()
    am = start_alertmanager(os.path.join(base, "am"), receiver.url)
    am_port = int(am.url.rsplit(":", 1)[1])
    flip_rule = {"alert": "TelemetryTestFlip", "expr": "telemetry_test_flip > 0", "for": "0s",
                 "labels": {"severity": "ticket"}, "annotations": {"summary": "the test raised the flip gauge"}}
    prom = start_prometheus(os.path.join(base, "prom"), {"worker": target.port, "ghost": dead}, am_port, [flip_rule])
    try:
        am.wait_ready()
        prom.wait_ready()
        yield Monitoring(prom, am, receiver, webhook, target, dead)
    finally:
        prom.stop()
        am.stop()
        receiver.stop()
    assert not prom.running and not am.running
