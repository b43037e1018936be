"""Prometheus scraping the shop with the lab's alert rules, and Alertmanager receiving the alerts.

Both are the Debian packages' binaries (``prometheus``, ``prometheus-alertmanager``), started with
configs and data directories under ``<state>/monitoring`` on free loopback ports. Configs are
written as JSON, which both read as YAML. Where a binary is missing, `missing_binaries` says so and
the lab falls back to its own evaluation of the same rules (`probebook.lab.health`).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from typing import Dict, List, Mapping, Optional

from .alerts import RULES, Firing

__all__ = ["PROMETHEUS", "ALERTMANAGER", "missing_binaries", "write_configs", "prometheus_argv",
           "alertmanager_argv", "alertmanager_firing", "ready"]

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"  # Debian's name; upstream's is "alertmanager"


def _which(name: str) -> Optional[str]:
    found = shutil.which(name)
    if found is None and name == ALERTMANAGER:
        found = shutil.which("alertmanager")
    return found


def missing_binaries() -> List[str]:
    return [name for name in (PROMETHEUS, ALERTMANAGER) if _which(name) is None]


def write_configs(directory: str, targets: Mapping[str, int], am_port: int, scrape: str, window: str) -> Dict[str, str]:
    """prometheus.yml, rules.yml and alertmanager.yml in `directory`; answers their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = {k: os.path.join(directory, f"{k}.yml") for k in ("prometheus", "rules", "alertmanager")}
    prometheus = {
        "global": {"scrape_interval": scrape, "evaluation_interval": scrape, "scrape_timeout": scrape},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "rule_files": [paths["rules"]],
        "scrape_configs": [{"job_name": "shop", "static_configs": [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}} for name, port in targets.items()]}],
    }
    rules = {"groups": [{"name": "shop", "rules": [
        {"alert": r.name, "expr": r.promql(window), "for": "0s", "labels": {"severity": "page"},
         "annotations": {"summary": r.summary}} for r in RULES.values()]}]}
    alertmanager = {"route": {"receiver": "lab", "group_by": ["alertname", "service"], "group_wait": "1s",
                              "group_interval": "5s", "repeat_interval": "1h"},
                    "receivers": [{"name": "lab"}]}
    for key, doc in (("prometheus", prometheus), ("rules", rules), ("alertmanager", alertmanager)):
        with open(paths[key], "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
    return paths


def prometheus_argv(paths: Mapping[str, str], data_dir: str, port: int) -> List[str]:
    return [_which(PROMETHEUS) or PROMETHEUS, f"--config.file={paths['prometheus']}",
            f"--storage.tsdb.path={data_dir}", f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d", "--rules.alert.resend-delay=1s", "--log.level=warn"]


def alertmanager_argv(paths: Mapping[str, str], data_dir: str, port: int) -> List[str]:
    return [_which(ALERTMANAGER) or ALERTMANAGER, f"--config.file={paths['alertmanager']}",
            f"--storage.path={data_dir}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=", "--log.level=warn"]


def ready(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def alertmanager_firing(url: str, timeout: float = 3.0) -> List[Firing]:
    """Active alerts Alertmanager holds now."""
    query = "/api/v2/alerts?active=true&silenced=false&inhibited=false&unprocessed=true"
    with urllib.request.urlopen(url + query, timeout=timeout) as resp:
        alerts = json.loads(resp.read())
    out = []
    for alert in alerts:
        labels = {k: v for k, v in alert.get("labels", {}).items() if k not in ("alertname", "severity", "job",
                                                                                   "instance")}
        out.append(Firing(alert["labels"].get("alertname", ""), labels, float("nan"),
                          alert.get("annotations", {}).get("summary", "")))
    return out
