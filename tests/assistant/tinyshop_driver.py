"""Drives tinyshop for tests outside its own: the assistant investigating /pay's 500s with customers on
it (kept out of tinyshop.py, whose source the assistant reads as the service's)."""

import json
import time

import tinyshop

from probebook.assistant import Alert, Assistant
from probebook.assistant.containment import RemediationError


def investigate_pay_500s(inv):
    """The assistant's verdict on 'POST /pay answers 500 for some customers', traffic running meanwhile."""
    api, stop, t = tinyshop.start("pay")
    try:
        return Assistant(inv).investigate("POST /pay answers 500 for some customers", wait_s=5,
                                          alerts=[Alert("HighErrorRate", {"service": "tinyshop", "route": "/pay"})])
    finally:
        stop.set()
        t.join()


def with_traffic(call, kind="pay"):
    """`call()` while tinyshop serves `kind` requests in a thread; its answer."""
    api, stop, t = tinyshop.start(kind)
    try:
        return call()
    finally:
        stop.set()
        t.join()


class TinyshopConfig:
    """The plug point as a deployment writes it: config restores on tinyshop's discount table."""

    name = "tinyshop-config"

    def __init__(self, change_log=None):
        self.done = []
        self.change_log = change_log  # where it records what it changed, as a deploy tool does

    def apply(self, action, by):
        if action.kind != "config" or action.service != "tinyshop":
            raise RemediationError(f"tinyshop-config cannot {action.describe()}")
        before = {k: tinyshop.DISCOUNTS.get(k) for k in action.values}
        tinyshop.DISCOUNTS.update(action.values)
        self.done.append((action.describe(), by))
        if self.change_log:
            with open(self.change_log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"ts": time.time(), "kind": "config", "service": "tinyshop", "by": by,
                                     "summary": action.describe(),
                                     "details": {"set": dict(action.values), "before": before}}) + "\n")
        return f"tinyshop discounts set: {json.dumps(action.values, sort_keys=True)}"


def write_changes(path, *changes):
    """A change log (JSON lines) with `changes` (kind, service, summary, details), a minute apart, the last
    ones 10 minutes ago."""
    now = time.time()
    with open(path, "w", encoding="utf-8") as fh:
        for i, (kind, service, summary, details) in enumerate(changes):
            fh.write(json.dumps({"ts": now - 600 + i * 60, "kind": kind, "service": service, "summary": summary,
                                 "by": "deploy-bot", "details": details}) + "\n")
