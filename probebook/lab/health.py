"""The lab's own health signal: scrape every service's /metrics twice and evaluate the alert rules.

It is what `lab status` shows when Prometheus is not installed, and the same rules Prometheus
evaluates when it is (`probebook.lab.alerts`).
"""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Mapping

from .alerts import Firing, Sample, evaluate_all, parse_metrics

__all__ = ["scrape_all", "health_check"]


def _scrape(url: str) -> List[Sample]:
    with urllib.request.urlopen(url + "/metrics", timeout=2.0) as resp:
        return parse_metrics(resp.read().decode("utf-8", "replace"))


def scrape_all(targets: Mapping[str, str]) -> Dict[str, List[Sample]]:
    """service -> samples; a service that cannot be scraped is left out."""
    out: Dict[str, List[Sample]] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        futures = {name: pool.submit(_scrape, url) for name, url in targets.items()}
        for name, fut in futures.items():
            try:
                out[name] = fut.result()
            except (OSError, ValueError):
                continue
    return out


def health_check(targets: Mapping[str, str], window: float = 3.0) -> List[Firing]:
    """Alerts firing over the next `window` seconds, judged from two scrapes."""
    before = scrape_all(targets)
    for name in targets:  # a service down at the first scrape is down: keep it in `before` to say so
        before.setdefault(name, [])
    started = time.monotonic()
    time.sleep(window)
    after = scrape_all(targets)
    return evaluate_all(before, after, max(0.001, time.monotonic() - started))
