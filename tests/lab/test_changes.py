"""Deploys, config changes and flag flips are real: the service restarts on the new release, the
services read the new files, and each change is a line of the change log connectors read."""

from __future__ import annotations

import json
import urllib.request

from probebook.lab.actions import perform, recover
from probebook.lab.changes import read_changes
from probebook.lab.scenarios import Action


def _health(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=5) as resp:
        return json.loads(resp.read())


def test_deploy_flag_and_config_are_real_and_logged(lab):
    before = _health(lab.url("orders"))
    assert before["version"] == "2.7.1"
    perform(lab, Action("deploy", {"service": "orders", "version": "2.7.2", "summary": "orders 2.7.2", "by": "ci"}, ""))
    perform(lab, Action("flag", {"name": "new_checkout_flow", "value": {"enabled": True, "percent": 5}}, ""))
    perform(lab, Action("config", {"service": "payments", "set": {"provider_timeout_s": 1.5}}, ""))
    after = _health(lab.url("orders"))
    assert after["version"] == "2.7.2" and after["pid"] != before["pid"]
    assert lab.agent("orders").health().pid == after["pid"]  # the new process has its own agent
    try:
        changes = read_changes(lab.changes.path)
        deploy = [c for c in changes if c.kind == "deploy" and c.service == "orders"][-1]
        assert (deploy.details["from_version"], deploy.details["to_version"], deploy.by) == ("2.7.1", "2.7.2", "ci")
        flag = [c for c in changes if c.kind == "flag"][-1]
        assert flag.details["flag"] == "new_checkout_flow" and flag.details["value"]["percent"] == 5
        config = [c for c in changes if c.kind == "config" and c.service == "payments"][-1]
        assert config.details["set"] == {"provider_timeout_s": 1.5}
    finally:
        done = recover(lab)
    assert "rolled back orders 2.7.2 -> 2.7.1" in done
    assert _health(lab.url("orders"))["version"] == "2.7.1"
    kinds = [c.kind for c in read_changes(lab.changes.path)[-4:]]
    assert "rollback" in kinds and "flag" in kinds and "config" in kinds
