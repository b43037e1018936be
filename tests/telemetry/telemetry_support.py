"""Starting real Prometheus and Alertmanager (Debian's binaries) on free loopback ports with temp
configs and data dirs; a fake Loki."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

import pytest

from probebook.lab.alerts import RULES
from probebook.lab.monitoring import ready
from probebook.lab.procs import ProcessTable, free_port, tail

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or \
    "/usr/bin/prometheus-alertmanager"
WINDOW = "5s"


class Server:
    """One monitoring binary, run by the lab's `ProcessTable` (its own process group); `stop` ends it."""

    def __init__(self, name: str, argv: List[str], url: str, directory: str) -> None:
        self.name, self.url, self.log = name, url, os.path.join(directory, f"{name}.log")
        self.table = ProcessTable(directory)
        self.table.spawn(name, argv, log_path=self.log)

    @property
    def running(self) -> bool:
        return self.table.alive(self.name)

    def wait_ready(self, timeout: float = 30.0) -> "Server":
        deadline = time.monotonic() + timeout
        while not ready(self.url, timeout=0.5):
            if not self.running or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name} did not start: {tail(self.log, 5)}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.table.stop(self.name)


def start_prometheus(directory: str, scrape_targets: Dict[str, int], am_port: Optional[int],
                     extra_rules: Optional[List[dict]] = None) -> Server:
    """Prometheus scraping `scrape_targets` (service -> port) every second, with the lab's rules."""
    os.makedirs(directory, exist_ok=True)
    rules_path = os.path.join(directory, "rules.yml")
    groups = [{"name": "lab", "rules": [{"alert": r.name, "expr": r.promql(WINDOW), "for": "0s",
                                         "labels": {"severity": "page"}, "annotations": {"summary": r.summary}}
                                        for r in RULES.values()]}]
    if extra_rules:
        groups.append({"name": "tests", "rules": extra_rules})
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
              "rule_files": [rules_path],
              "scrape_configs": [{"job_name": "shop", "static_configs": [
                  {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}
                  for name, port in scrape_targets.items()]}]}
    if am_port:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]}
    for path, doc in ((rules_path, {"groups": groups}), (os.path.join(directory, "prometheus.yml"), config)):
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)  # JSON is YAML
    port = free_port()
    argv = [PROMETHEUS, f"--config.file={directory}/prometheus.yml", f"--storage.tsdb.path={directory}/data",
            f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s", "--log.level=warn"]
    return Server("prometheus", argv, f"http://127.0.0.1:{port}", directory)


def start_alertmanager(directory: str, webhook_url: str) -> Server:
    os.makedirs(directory, exist_ok=True)
    config = {"route": {"receiver": "probebook", "group_by": ["alertname", "service"], "group_wait": "1s",
                        "group_interval": "1s", "repeat_interval": "1h"},
              "receivers": [{"name": "probebook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}]}
    with open(os.path.join(directory, "alertmanager.yml"), "w", encoding="utf-8") as fh:
        json.dump(config, fh)
    port = free_port()
    argv = [ALERTMANAGER, f"--config.file={directory}/alertmanager.yml", f"--storage.path={directory}/data",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"]
    return Server("alertmanager", argv, f"http://127.0.0.1:{port}", directory)


# ---------------------------------------------------------------------- Loki
class _Loki(ThreadingHTTPServer):
    """Answers /loki/api/v1/query_range in Loki's documented JSON format (no Loki server runs here:
    this is the protocol-level fake DESIGN allows); records what it was asked in `asked`."""

    daemon_threads = True

    def __init__(self, streams, status=200, error=""):
        super().__init__(("127.0.0.1", 0), _LokiHandler)
        self.streams, self.status, self.error, self.asked = streams, status, error, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _LokiHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlsplit(self.path)
        self.server.asked.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
        if self.server.status != 200:  # Loki answers errors as plain text
            body = self.server.error.encode()
            ctype = "text/plain; charset=utf-8"
        else:
            data = {"resultType": "streams", "result": self.server.streams,
                    "stats": {"summary": {"totalLinesProcessed": 3}}}
            body = json.dumps({"status": "success", "data": data}).encode()
            ctype = "application/json"
        self.send_response(self.server.status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def loki_server(streams, status: int = 200, error: str = "") -> _Loki:
    """A started fake Loki answering `streams` (or `status` with the text `error`); shut it down after."""
    server = _Loki(streams, status, error)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server
