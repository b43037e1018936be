"""Starting real Prometheus and Alertmanager (Debian's binaries) on free loopback ports with temp
configs and data dirs; waiting for things."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Dict, List, Optional

import pytest

from probebook.lab.alerts import RULES
from probebook.lab.monitoring import ready
from probebook.lab.procs import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or "/usr/bin/prometheus-alertmanager"
WINDOW = "5s"


class Server:
    """One monitoring binary in its own process group; `stop` ends it."""

    def __init__(self, name: str, argv: List[str], url: str, log: str) -> None:
        self.name, self.url, self.log = name, url, log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def wait_ready(self, timeout: float = 30.0) -> "Server":
        deadline = time.monotonic() + timeout
        while not ready(self.url, timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log, encoding="utf-8", errors="replace") as fh:
                    tail = fh.read()[-600:]
                self.stop()
                pytest.fail(f"{self.name} did not start: {tail}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


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
    return Server("prometheus", argv, f"http://127.0.0.1:{port}", os.path.join(directory, "prometheus.log"))


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
    return Server("alertmanager", argv, f"http://127.0.0.1:{port}", os.path.join(directory, "alertmanager.log"))


def wait_for(predicate, timeout: float = 20.0, every: float = 0.2):
    """`predicate()`'s first true answer within `timeout` seconds, else an AssertionError."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not within {timeout}s (last answer: {last!r})")
