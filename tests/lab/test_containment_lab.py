"""Containment on the lab, from a terminal, as an on-call engineer does it: `probebook investigate --out`
on a bad deploy (with an unrelated deploy beside it), then `probebook contain` proposes the rollback of
the guilty service only and changes nothing; with `--yes` the lab's `Remediation` rolls it back, the
alert's own PromQL (read from Prometheus's rules) and the proof's probe say the symptom is gone, and every
step is in the hash-chained audit log, the change log and the investigation's timeline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from probebook.agent.control.audit import verify
from probebook.lab.actions import inject, recover
from probebook.lab.changes import read_changes
from probebook.lab.runner import Lab
from probebook.lab.scenarios import find_scenario
from probebook.lab.verify import wait_for_alert, wait_quiet
from probebook.session import Investigation


def _cli(*args: str, timeout: float = 300) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "probebook.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _investigated(lab, scenario, store: str, *words: str) -> dict:
    """Inject `scenario` on a quiet lab, wait for its alert, and `probebook investigate --out store` it with
    `words`: the verdict (the caller recovers the lab)."""
    assert not wait_quiet(lab, 90), "the lab did not quieten before the test"
    inject(lab, scenario)
    assert wait_for_alert(lab, scenario, True, scenario.within_s) is not None, "the symptom never fired"
    done = _cli("investigate", "--lab", "--state-dir", lab.state, "--out", store, "--budget", "100", *words)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_contain_proposes_the_rollback_and_with_yes_does_it_and_sees_the_symptom_go(lab, tmp_path):
    store = str(tmp_path / "incident.duckdb")
    try:
        verdict = _investigated(lab, find_scenario("bad-deploy"), store, "checkouts with a coupon fail")
        if verdict["kind"] != "proven" or verdict["service"] != "orders":
            pytest.fail(f"the investigation did not prove the orders deploy, nothing to contain: {verdict}")

        shown = _cli("contain", store, "--lab", "--state-dir", lab.state)
        assert shown.returncode == 0, shown.stderr[-2000:]
        answer = json.loads(shown.stdout)
        actions = [p["action"] for p in answer["proposals"]]
        assert actions[0]["kind"] == "rollback" and actions[0]["service"] == "orders", actions
        assert actions[0]["to_version"] == "2.7.1"
        assert all(a["service"] == "orders" for a in actions), actions  # not the inventory deploy
        assert "result" not in answer and "--yes --proposal rollback-orders-2.7.1" in shown.stderr
        assert Lab.attach(lab.state).service("orders")["version"] == "2.8.0"  # nothing changed

        did = _cli("contain", store, "--lab", "--state-dir", lab.state, "--yes", "--timeout", "150")
        assert did.returncode == 0, (did.stdout[-2000:], did.stderr[-2000:])
        result = json.loads(did.stdout)["result"]
        assert result["outcome"] == "contained", result
        assert Lab.attach(lab.state).service("orders")["version"] == "2.7.1"
        alerts = result["check"]["alerts"]
        assert alerts and all(a["holds"] is False and a["query"] and a["evidence"] for a in alerts), alerts
        # the proof's probe, placed again on the release now running (another file on disk), saw calls; its
        # predicate is reported beside the alert, which is the symptom (a predicate may describe the failing
        # calls rather than the fault: then it still holds, and the check says so; or the calls may carry
        # values seen on neither side before, a coupon's rate of 0.15: then it is inconclusive, and says why)
        probe = result["check"]["probe"]
        assert probe and probe["seen"] > 0, result["check"]
        assert probe["outcome"] == "gone" or "values seen on neither before the fix" in probe["headline"] or \
            any("predicate still holds" in n for n in result["check"]["notes"]), probe

        rollback = [c for c in read_changes(lab.changes.path) if c.kind == "rollback"][-1]
        assert rollback.service == "orders" and rollback.by.startswith("cli:") and \
            rollback.details["to_version"] == "2.7.1"
        audit = str(tmp_path / "actions-audit.log")
        steps = [json.loads(line)["action"] for line in open(audit, encoding="utf-8")]
        # the listing: each proposal audited as proposed, nothing decided; then the one done
        assert steps == ["containment.proposed"] * len(actions) + [
            "containment.proposed", "containment.approved", "containment.done", "containment.checked"]
        assert verify(audit).ok
        saved = Investigation.open(store)
        try:
            rows = saved.sql("SELECT decision, outcome FROM assistant_actions ORDER BY ts").rows()
            assert rows == [("approved", "contained")]  # only what was decided
            marks = saved.sql("SELECT text FROM timeline WHERE text LIKE 'containment done%'")["text"].to_list()
            assert marks == ["containment done: rolled back orders 2.8.0 -> 2.7.1"]
            # the proof's probe placed again after the rollback is on the release now running (beside it the
            # verification may place probes on functions by module and name: they name no file)
            specs = saved.sql("SELECT spec FROM probes ORDER BY placed_at")["spec"].to_list()
            placed = [spec for spec in specs if "shop/orders.py" in spec][-1]
            assert "/releases/orders/2.8.0/" not in placed, placed
        finally:
            saved.close()
    finally:
        recover(lab)


def test_a_full_volume_proven_is_freed_with_yes_and_the_writes_and_backlog_recover(lab, tmp_path):
    """disk-full: the proof is the ENOSPC the worker swallows; `probebook contain` proposes freeing space on the
    worker's volume first (no change filled it), and with `--yes` the lab's `Remediation` frees it, the
    change log says who, the backlog alert goes and the writes succeed again."""
    import os

    scenario, store = find_scenario("disk-full"), str(tmp_path / "incident.duckdb")
    try:
        verdict = _investigated(lab, scenario, store, "--alert", scenario.alert,
                                f"{scenario.title}. {scenario.summary}")  # the page's words
        if verdict["kind"] != "proven" or verdict["service"] != "worker":
            pytest.fail(f"the investigation did not prove the full volume, nothing to contain: {verdict}")
        shown = json.loads(_cli("contain", store, "--lab", "--state-dir", lab.state).stdout)
        first = shown["proposals"][0]
        assert first["action"]["kind"] == "free_space" and first["action"]["service"] == "worker", shown
        assert "failing for the lack of space" in first["why"]
        archive = lab.path("volumes", "archive")
        assert any(os.path.islink(os.path.join(archive, f)) for f in os.listdir(archive))  # still full

        did = _cli("contain", store, "--lab", "--state-dir", lab.state, "--yes", "--proposal", first["id"],
                   "--timeout", "150")
        result = json.loads(did.stdout)["result"]
        assert result["outcome"] == "contained", result
        assert not any(os.path.islink(os.path.join(archive, f)) for f in os.listdir(archive))
        freed = [c for c in read_changes(lab.changes.path) if c.summary == "archive volume: space freed"]
        assert len(freed) == 1 and freed[0].service == "worker" and freed[0].by.startswith("cli:"), freed
        assert all(a["holds"] is False for a in result["check"]["alerts"]), result["check"]
    finally:
        recover(lab)
