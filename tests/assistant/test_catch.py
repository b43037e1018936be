"""A cause caught in the act after containment frees what the fault holds: tinyshop's orders leak a pooled
connection on every sold-out order, and once the pool is full every caller stops at the take, so the leak
cannot run again and the investigation answers `likely`. Approved, the restart it proposes frees the pool;
the probe placed on the leaking line at once sees the leak take the last connection, and the gate lets the
verdict stand as `proven`, citing only what was captured after the restart."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import tinyshop  # noqa: E402

from probebook.agent import Agent  # noqa: E402
from probebook.assistant import Alert, Assistant  # noqa: E402
from probebook.assistant.proof import load_events  # noqa: E402
from probebook.session import Investigation  # noqa: E402


class RestartTinyshop:
    """What a restart does to the orders pool: a new process holds none of the old one's connections."""

    name = "tinyshop-restart"

    def __init__(self, api, restock=False):
        self.api, self.at, self.restock = api, None, restock

    def apply(self, action, by):
        import time

        assert action.kind == "restart" and action.service == "tinyshop", action
        self.api.orders.pool = tinyshop.Pool(size=self.api.orders.pool.size)
        if self.restock:  # the sold-out sku is back: the leaking path no longer runs
            self.api.orders.stock["sku-2"] = 10 ** 9
        self.at = time.time()
        return "tinyshop restarted: the orders pool is new"


def test_a_leak_the_full_pool_stops_is_proven_after_an_approved_restart(tmp_path):
    agent, inv = Agent(), Investigation(str(tmp_path / "incident.duckdb"))
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "agent-audit.jsonl"))
    api, stop, t = tinyshop.start("orders")
    lines = []
    try:
        assistant = Assistant(inv)
        verdict = assistant.investigate("orders are refused: the pool is saturated", wait_s=3, progress=lines.append,
                                        alerts=[Alert("PoolSaturated", {"service": "tinyshop"})])
        assert verdict.kind == "likely" and verdict.after_restart, "\n".join(lines + verdict.reasons)
        assert verdict.after_restart["capture"] == ["self.pool.in_use >= self.pool.size"]
        proposals = assistant.propose(verdict)
        assert proposals[0].action.describe() == "restart tinyshop", [p.action.describe() for p in proposals]
        assert "catches the cause in the act" in proposals[0].why and proposals[0].basis == "ranking"

        # not approved: nothing restarted, nothing caught
        remediation = RestartTinyshop(api)
        refused = assistant.contain(proposals[0], remediation, approve=False, verdict=verdict,
                                    audit=str(tmp_path / "actions.log"))
        assert refused.decision == "refused" and refused.caught is None and remediation.at is None

        result = assistant.contain(proposals[0], remediation, approve=True, verdict=verdict,
                                   audit=str(tmp_path / "actions.log"), check_timeout=20.0, calls=5,
                                   progress=lines.append)
    finally:
        stop.set()
        t.join()
    try:
        caught = result.caught
        assert caught is not None and caught.kind == "proven", "\n".join(lines)
        assert caught.locus == verdict.locus and caught.predicate == verdict.predicate
        assert "after the restart it ran again" in caught.cause and "caught after the restart" in caught.cause
        events = load_events(inv.store, caught.evidence)
        assert events and all(e["ts"] >= remediation.at for e in events.values()), events
        assert all(e["line"] == int(verdict.after_restart["where"].rsplit(":", 1)[1]) for e in events.values())
        # journaled as the investigation's answer now, on the timeline, and the probe is gone
        assert inv.sql("SELECT kind FROM assistant_verdicts ORDER BY ts")["kind"].to_list() == ["likely", "proven"]
        assert inv.sql("SELECT count(*) AS n FROM timeline WHERE text LIKE 'verdict: PROVEN%'")["n"][0] == 1
        live = inv.probes().filter(inv.probes()["status"] != "removed")
        assert live.height == 0, live
        assert result.to_dict()["caught"]["kind"] == "proven"
    finally:
        inv.close()


def test_when_the_cause_does_not_run_after_the_restart_nothing_is_claimed(tmp_path):
    """The restart frees the pool, but the sold-out sku is back in stock meanwhile: the leaking line is
    never reached, the verdict stays `likely`, and the timeline says nothing was caught."""
    agent, inv = Agent(), Investigation(str(tmp_path / "incident.duckdb"))
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "agent-audit.jsonl"))
    api, stop, t = tinyshop.start("orders")
    try:
        assistant = Assistant(inv)
        verdict = assistant.investigate("orders are refused: the pool is saturated", wait_s=3,
                                        alerts=[Alert("PoolSaturated", {"service": "tinyshop"})])
        assert verdict.kind == "likely", verdict.reasons
        result = assistant.contain(assistant.propose(verdict)[0], RestartTinyshop(api, restock=True), approve=True,
                                   verdict=verdict, audit=str(tmp_path / "actions.log"), check_timeout=6.0, calls=5)
    finally:
        stop.set()
        t.join()
    try:
        assert result.decision == "approved" and result.caught is None
        assert inv.sql("SELECT kind FROM assistant_verdicts")["kind"].to_list() == ["likely"]
        said = inv.sql("SELECT text FROM timeline WHERE text LIKE 'catch after restart%'")["text"].to_list()
        assert said == ["catch after restart: nothing caught in 0 calls; the verdict stays likely"], said
    finally:
        inv.close()


class RestartThenLoseTheAudit(RestartTinyshop):
    """The restart is done, and then the audit log can no longer be written (its file became a folder)."""

    def __init__(self, api, audit):
        super().__init__(api)
        self.audit = audit

    def refresh(self, inv, action):
        os.remove(self.audit)
        os.mkdir(self.audit)


def test_the_catch_probe_is_removed_when_the_containment_fails_after_the_restart(tmp_path):
    """The audit line after the symptom check cannot be written: containment stops with a one-line error
    saying the action was done, and the probe placed to catch the leak does not stay on the service."""
    import pytest

    from probebook.errors import AssistantError

    agent, inv = Agent(), Investigation(str(tmp_path / "incident.duckdb"))
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "agent-audit.jsonl"))
    api, stop, t = tinyshop.start("orders")
    audit = str(tmp_path / "actions.log")
    try:
        assistant = Assistant(inv)
        verdict = assistant.investigate("orders are refused: the pool is saturated", wait_s=3,
                                        alerts=[Alert("PoolSaturated", {"service": "tinyshop"})])
        assert verdict.kind == "likely", verdict.reasons
        with pytest.raises(AssistantError, match="the action WAS done"):
            assistant.contain(assistant.propose(verdict)[0], RestartThenLoseTheAudit(api, audit), approve=True,
                              verdict=verdict, audit=audit, check_timeout=4.0, calls=3)
    finally:
        stop.set()
        t.join()
    try:
        live = inv.probes().filter(inv.probes()["status"] != "removed")
        assert live.height == 0, live
    finally:
        inv.close()
