"""Containment with approval on a service written here: the verdict the assistant proved, the change log
a deploy tool wrote, and a `Remediation` that changes the running service (tinyshop's discount table,
what its config change broke). Nothing runs without approval; every step is audited (the chain verifies)
and on the timeline; after the action the proof's probe says the cause is gone."""

import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import tinyshop  # noqa: E402

from probebook.agent import Agent  # noqa: E402
from probebook.agent.control.audit import verify  # noqa: E402
from probebook.assistant import Assistant  # noqa: E402
from probebook.assistant.containment import changes_elsewhere, propose, why_no_proposal  # noqa: E402
from probebook.assistant.model import Verdict  # noqa: E402
from probebook.errors import ProbebookError  # noqa: E402
from probebook.session import Investigation  # noqa: E402
from tinyshop_driver import TinyshopConfig, investigate_pay_500s, with_traffic, write_changes  # noqa: E402


@pytest.fixture()
def proven(tmp_path, monkeypatch):
    agent, inv = Agent(), Investigation(str(tmp_path / "incident.duckdb"))
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "agent-audit.jsonl"))
    monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 15)
    changes = tmp_path / "changes.jsonl"
    write_changes(changes,
                   ("deploy", "inventory", "inventory 4.1.4", {"from_version": "4.1.3", "to_version": "4.1.4"}),
                   ("config", "tinyshop", "discount BROKEN as a percent", {"set": {"BROKEN": 15},
                                                                           "before": {"BROKEN": 0.15}}),
                   ("deploy", "tinyshop", "tinyshop 1.3.0", {"from_version": "1.2.9", "to_version": "1.3.0"}),
                   ("deploy", "tinyshop", "tinyshop 1.3.0 rolled back", {"from_version": "1.3.0",
                                                                         "to_version": "1.2.9"}),
                   ("config", "tinyshop", "unrelated", {"set": {"x": 1}, "before": {"x": 0}}))
    # the last config change was already undone by hand: x is back where it was, nothing to propose
    with open(changes, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"ts": time.time() - 5, "kind": "config", "service": "tinyshop", "summary": "x back",
                             "by": "alice", "details": {"set": {"x": 0}, "before": {"x": 1}}}) + "\n")
    inv.telemetry.configure(change_logs=[str(changes)])
    verdict = investigate_pay_500s(inv)
    assert verdict.kind == "proven", verdict.reasons
    yield inv, verdict, tmp_path
    inv.close()



def test_the_proposals_undo_what_changed_on_the_guilty_service_only(proven):
    inv, verdict, _ = proven
    proposals = propose(inv, verdict)
    described = [p.action.describe() for p in proposals]
    # the inventory deploy (another service), the deploy already rolled back and the config put back by hand
    # are not proposed
    assert described == ["restore tinyshop config BROKEN=0.15"], described
    p = proposals[described.index("restore tinyshop config BROKEN=0.15")]
    assert p.basis == "proof" and verdict.id in p.rests_on and set(verdict.evidence) <= set(p.rests_on)
    change = p.rests_on[-1]  # the change it undoes, a row of this investigation
    assert inv.sql(f"SELECT summary FROM changes WHERE evidence_id = '{change}'").rows() == [("discount BROKEN as a percent",)]
    assert verdict.predicate.describe() in p.expected
    assert p.id == "config-tinyshop-BROKEN"  # named by what it does: the same id in a later listing


def test_an_inconclusive_verdict_proposes_nothing(proven):
    inv, _, _ = proven
    assert propose(inv, Verdict("inconclusive", cause="too little")) == []


def test_nothing_runs_without_approval_and_the_refusal_is_audited(proven):
    inv, verdict, tmp = proven
    fix = TinyshopConfig()
    proposal = next(p for p in propose(inv, verdict) if p.action.kind == "config")
    audit = str(tmp / "actions-audit.log")
    for approve in (None, False, lambda p: False):
        result = Assistant(inv).contain(proposal, fix, approve=approve, verdict=verdict, audit=audit)
        assert result.decision == "refused" and result.outcome == "not run" and result.check is None
    assert fix.done == [] and tinyshop.DISCOUNTS["BROKEN"] == 15
    lines = [json.loads(x) for x in open(audit, encoding="utf-8")]
    assert [x["action"] for x in lines] == ["containment.proposed", "containment.refused"] * 3
    assert verify(audit).ok
    rows = inv.sql("SELECT decision, outcome, verdict FROM assistant_actions").rows()
    assert rows == [("refused", "not run", verdict.id)] * 3


def test_approved_it_is_done_audited_and_the_probe_shows_the_cause_gone(proven):
    inv, verdict, tmp = proven
    fix = TinyshopConfig()
    proposal = next(p for p in propose(inv, verdict) if p.action.kind == "config")
    audit = str(tmp / "actions-audit.log")
    seen = []
    result = with_traffic(lambda: Assistant(inv).contain(
        proposal, fix, approve=lambda p: seen.append(p.id) or True, verdict=verdict, audit=audit, who="alice",
        check_timeout=30, calls=10))
    assert seen == [proposal.id] and fix.done == [("restore tinyshop config BROKEN=0.15", "alice")]
    assert result.decision == "approved" and result.outcome == "contained", result.to_dict()
    assert result.check.probe["outcome"] == "gone" and result.check.probe["seen"] == 10
    assert result.headline().startswith("CONTAINED: tinyshop discounts set")
    lines = [json.loads(x) for x in open(audit, encoding="utf-8")]
    assert [x["action"] for x in lines] == ["containment.proposed", "containment.approved", "containment.done",
                                            "containment.checked"]
    assert {x["who"] for x in lines} == {"alice"} and verify(audit).ok
    timeline = inv.sql("SELECT text FROM timeline WHERE text LIKE 'containment%' ORDER BY ts")["text"].to_list()
    assert [t.split(":")[0] for t in timeline] == ["containment proposed", "containment approved", "containment done",
                                                 "containment checked"]
    body = json.loads(inv.sql("SELECT body FROM assistant_actions").rows()[0][0])
    assert body["outcome"] == "contained" and body["check"]["probe"]["held"] == 0
    # no Prometheus here: the alert part is said to be unchecked, not claimed
    assert inv.probes().filter(inv.probes()["status"] != "removed").height == 0


def test_a_failed_action_is_audited_and_said_whatever_it_raised(proven):
    inv, verdict, tmp = proven
    audit = str(tmp / "actions-audit.log")

    class Broken(TinyshopConfig):  # a remediation of someone else's, raising its own kind of error
        def apply(self, action, by):
            raise RuntimeError("deploy API answered 503")

    result = Assistant(inv).contain(propose(inv, verdict)[0], Broken(), approve=True, verdict=verdict, audit=audit)
    assert result.outcome == "failed" and result.done == "RuntimeError: deploy API answered 503"
    assert result.headline().startswith("FAILED: restore tinyshop config BROKEN=0.15")
    assert json.loads(open(audit, encoding="utf-8").readlines()[-1])["action"] == "containment.failed"
    assert inv.sql("SELECT decision, outcome FROM assistant_actions").rows() == [("approved", "failed")]


def test_an_action_already_done_is_stale_not_done_twice(proven):
    inv, verdict, tmp = proven
    changes = inv.telemetry.sources.change_logs[0]
    fix = TinyshopConfig(change_log=changes)
    proposal = propose(inv, verdict)[0]
    first = with_traffic(lambda: Assistant(inv).contain(proposal, fix, approve=True, verdict=verdict,
                                                         audit=str(tmp / "a.log"), check_timeout=20, calls=5))
    assert first.outcome == "contained" and len(fix.done) == 1
    # the panel still shows it, a second click approves it: what it undoes changed since, so nothing is done
    again = Assistant(inv).contain(proposal, fix, approve=True, verdict=verdict, audit=str(tmp / "a.log"))
    assert again.outcome == "stale" and len(fix.done) == 1, again.to_dict()
    assert propose(inv, verdict) == []  # and it is no longer proposed


def test_an_audit_log_that_cannot_be_written_stops_the_action(proven):
    inv, verdict, tmp = proven
    fix = TinyshopConfig()
    blocked = tmp / "not-a-folder"
    blocked.write_text("x")
    from probebook.errors import AssistantError

    with pytest.raises(AssistantError, match=r"cannot be written \(proposed\): nothing was done"):
        Assistant(inv).contain(propose(inv, verdict)[0], fix, approve=True, verdict=verdict,
                               audit=str(blocked / "audit.log"))
    assert fix.done == []
    # the log becomes unwritable between the proposal and the approval: the approval is not written, so the
    # action does not run
    audit = tmp / "actions-audit.log"

    def approve_then_break(_proposal):
        audit.unlink()
        audit.mkdir()
        return True

    with pytest.raises(AssistantError, match=r"cannot be written \(approved\): nothing was done"):
        Assistant(inv).contain(propose(inv, verdict)[0], fix, approve=approve_then_break, verdict=verdict,
                               audit=str(audit))
    assert fix.done == [] and tinyshop.DISCOUNTS["BROKEN"] == 15


def test_each_kind_of_change_is_undone_newest_first_and_a_gone_process_restarted_first(tmp_path):
    changes = tmp_path / "changes.jsonl"
    write_changes(changes,
                   ("deploy", "orders", "orders 2.8.0", {"from_version": "2.7.1", "to_version": "2.8.0"}),
                   ("flag", "gateway", "new_flow on", {"flag": "new_flow", "value": True, "before": None}),
                   ("config", "orders", "smaller pool", {"set": {"pool_size": 2, "timeout": 1}, "before": {"pool_size": 8}}),
                   ("deploy", "orders", "orders 2.8.1", {"from_version": "2.8.0", "to_version": "2.8.1"}),
                   ("migration", "orders", "add a column", {}))
    inv = Investigation()
    try:
        inv.telemetry.configure(change_logs=[str(changes)])
        v = Verdict("likely", "orders", "orders process", boundary_service="gateway", evidence=["snap:1"], id="v1")
        proposals = propose(inv, v)
        assert [p.action.describe() for p in proposals] == [
            "restart orders", "roll orders back to 2.8.0", "restore orders config pool_size=8, timeout=(default)",
            "set flag new_flow to (default)"]
        assert [p.id for p in proposals] == ["restart-orders", "rollback-orders-2.8.0", "config-orders-pool_size-timeout",
                                             "flag-new_flow"]
        assert "(the release before; 2.7.1 ran before the window)" in proposals[1].why
        assert {p.basis for p in proposals} == {"ranking"} and all(p.rests_on[:2] == ["v1", "snap:1"] for p in proposals)
        assert "undoes deploy at" in proposals[1].why and "orders 2.8.1" in proposals[1].why
        # a change older than the window is not undone
        assert [p.action.kind for p in propose(inv, v, since="1s")] == ["restart"]
        # a bad window is said, never taken for "nothing changed"
        with pytest.raises(ProbebookError, match="6hours"):
            propose(inv, v, since="6hours")
        # a rollback is someone's undo: with the bad deploy before the window, it is never proposed for undoing
        with open(changes, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"ts": time.time(), "kind": "rollback", "service": "orders", "summary": "back",
                                 "by": "alice", "details": {"from_version": "2.8.1", "to_version": "2.7.1"}}) + "\n")
        assert [p.action.kind for p in propose(inv, v, since="30s")] == ["restart"]
    finally:
        inv.close()



def test_with_nothing_changed_where_the_fault_is_the_changes_before_it_elsewhere_are_said_as_leads(tmp_path):
    """A deploy upstream may feed a fault downstream new inputs, but nothing links it to the fault: where the
    verdict's service had no change, nothing is proposed, and the answer names the two newest changes
    elsewhere that came before the first evidence (a change after the fault was first seen cannot have
    started it)."""
    now = time.time()
    changes = tmp_path / "changes.jsonl"
    write_changes(changes,  # 10, 9 and 8 minutes ago
                  ("deploy", "gateway", "gateway 3.3.0", {"from_version": "3.2.0", "to_version": "3.3.0"}),
                  ("config", "payments", "shorter timeout", {"set": {"timeout": 1}, "before": {"timeout": 5}}),
                  ("deploy", "search", "search 1.1", {"from_version": "1.0", "to_version": "1.1"}))
    with open(changes, "a", encoding="utf-8") as fh:  # after the fault was first seen (5 minutes ago)
        fh.write(json.dumps({"ts": now - 100, "kind": "flag", "service": "cart", "summary": "new cart",
                             "by": "alice", "details": {"flag": "new_cart", "value": True, "before": False}}) + "\n")
    inv = Investigation()
    try:
        inv.telemetry.configure(change_logs=[str(changes)])
        inv.store.ingest([{"kind": "snapshot", "seq": 1, "ts": now - 300, "probe_id": "p1", "file": "inv.py",
                           "line": 3, "function": "key", "thread": "MainThread", "trace_id": "", "arguments": {},
                           "locals": {}, "expressions": {}, "stack": []}], "inventory", "i1")
        v = Verdict("proven", "inventory", "shop/inventory.py:Cache.key", evidence=["snap:inventory:i1:1"], id="v1")
        assert propose(inv, v) == []
        leads = changes_elsewhere(inv, v)
        assert [lead.split(" at ")[0] for lead in leads] == ["deploy of search", "config of payments"], leads
        assert "search 1.1 (change:search:" in leads[0], leads
        why = why_no_proposal(v.kind, leads)
        assert why.startswith("no change to undo was found on the services the verdict names")
        assert "changed elsewhere before the fault was first seen, not linked to it: deploy of search" in why
        assert changes_elsewhere(inv, Verdict("proven", "inventory", "x.py:f")) == []  # no evidence: no time to be before
        # an inconclusive verdict proposes nothing and reads no change log: a bad window is no error there
        assert changes_elsewhere(inv, Verdict("inconclusive", evidence=["snap:inventory:i1:1"]), since="6hours") == []
        with open(changes, "a", encoding="utf-8") as fh:  # search rolled back before the fault: nothing to lead to
            fh.write(json.dumps({"ts": now - 400, "kind": "rollback", "service": "search", "summary": "back to 1.0",
                                 "by": "bob", "details": {"from_version": "1.1", "to_version": "1.0"}}) + "\n")
        assert [lead.split(" at ")[0] for lead in changes_elsewhere(inv, v)] == ["config of payments", "deploy of gateway"]
        # a change on the verdict's own service: that is what is proposed
        with open(changes, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"ts": now - 450, "kind": "config", "service": "inventory", "summary": "ttl",
                                 "by": "bob", "details": {"set": {"ttl": 0}, "before": {"ttl": 60}}}) + "\n")
        assert [(p.action.describe(), p.basis) for p in propose(inv, v)] == [("restore inventory config ttl=60",
                                                                               "proof")]
    finally:
        inv.close()


def test_a_change_elsewhere_that_names_what_the_proof_found_is_proposed(tmp_path):
    """Every key the proof captured holds `session=`; the gateway deploy just before says it passes the
    shopper session on: that links it to the fault, so its rollback is proposed (said as a change on
    another service, resting on the likely link, not the proof). A change whose text only holds the word
    inside another ("sessions"), or one after the fault was first seen, is not linked."""
    from probebook.evidence.predicate import Predicate

    now = time.time()
    changes = tmp_path / "changes.jsonl"
    write_changes(changes,  # 10, 9 and 8 minutes ago
                  ("deploy", "gateway", "gateway 3.3.0: pass the shopper session to inventory",
                   {"from_version": "3.2.0", "to_version": "3.3.0"}),
                  ("config", "payments", "keep sessions longer", {"set": {"ttl": 60}, "before": {"ttl": 30}}),
                  ("deploy", "search", "search 1.1", {"from_version": "1.0", "to_version": "1.1"}))
    with open(changes, "a", encoding="utf-8") as fh:  # after the fault was first seen (5 minutes ago)
        fh.write(json.dumps({"ts": now - 100, "kind": "deploy", "service": "cart", "summary": "cart 2: session",
                             "by": "alice", "details": {"from_version": "1", "to_version": "2"}}) + "\n")
    inv = Investigation()
    try:
        inv.telemetry.configure(change_logs=[str(changes)])
        inv.store.ingest([{"kind": "snapshot", "seq": 1, "ts": now - 300, "probe_id": "p1", "file": "inv.py",
                           "line": 3, "function": "key", "thread": "MainThread", "trace_id": "", "arguments": {},
                           "locals": {}, "expressions": {"key": "sku=1&session=ab12"}, "stack": []}],
                         "inventory", "i1")
        v = Verdict("proven", "inventory", "shop/inventory.py:Cache.key", evidence=["snap:inventory:i1:1"], id="v1",
                    predicate=Predicate(capture="key", op="contains", value="session="))
        proposals = propose(inv, v)
        assert [p.action.describe() for p in proposals] == ["roll gateway back to 3.2.0"], proposals
        assert "(on gateway, not inventory: it names 'session', which every value the proof captured holds" \
            in proposals[0].why, proposals[0].why
        assert proposals[0].basis == "ranking" and "change:gateway:" in proposals[0].rests_on[-1]
        numeric = Verdict("proven", "inventory", "shop/inventory.py:Cache.key", evidence=["snap:inventory:i1:1"],
                          predicate=Predicate(capture="len(self._entries)", op=">", value=800))
        assert propose(inv, numeric) == []  # a number names nothing a change could say
        unheld = Verdict("likely", "inventory", "shop/inventory.py:Cache.key", evidence=["snap:inventory:i1:1"],
                         predicate=Predicate(capture="key", op="contains", value="visit="))
        assert propose(inv, unheld) == []  # the cited values do not hold the literal: no link by its words
        with open(changes, "a", encoding="utf-8") as fh:  # a change on inventory itself: only it is undone
            fh.write(json.dumps({"ts": now - 500, "kind": "config", "service": "inventory", "summary": "ttl",
                                 "by": "bob", "details": {"set": {"ttl": 0}, "before": {"ttl": 30}}}) + "\n")
        assert [p.action.describe() for p in propose(inv, v)] == ["restore inventory config ttl=30"]
    finally:
        inv.close()


def test_for_an_outside_cause_only_settings_the_code_calling_it_reads_are_undone(tmp_path):
    """An outside system fails; of the config changes on the service at our boundary, only one its calling
    code (the boundary function's class) reads is proposed: a setting it never reads cannot change how it
    calls the outside system. A release of that service is still proposed."""
    changes = tmp_path / "changes.jsonl"
    write_changes(changes,
                  ("config", "tinyshop", "risk threshold", {"set": {"risk_threshold": 0.85}, "before": {}}),
                  ("config", "tinyshop", "discount rounding", {"set": {"discount": 2}, "before": {"discount": 1}}),
                  ("deploy", "tinyshop", "tinyshop 1.3.0", {"from_version": "1.2.9", "to_version": "1.3.0"}))
    agent, inv = Agent(), Investigation()
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "agent-audit.jsonl"))
    try:
        inv.telemetry.configure(change_logs=[str(changes)])
        v = Verdict("outside", "bank", "outside our services: bank", boundary_service="tinyshop",
                    boundary_locus=f"{tinyshop.__file__}:Billing.charge", evidence=["snap:1"], id="v1")
        assert [p.action.describe() for p in propose(inv, v)] == ["roll tinyshop back to 1.2.9",
                                                                   "restore tinyshop config discount=1"]
        elsewhere = Verdict("outside", "bank", "outside our services: bank", boundary_service="tinyshop",
                            boundary_locus="nowhere.py:Billing.charge", evidence=["snap:1"], id="v2")
        assert len(propose(inv, elsewhere)) == 3  # the calling code cannot be read: nothing is left out
    finally:
        inv.close()


def test_the_same_setting_set_the_same_way_on_another_service_is_proposed_after_the_own_change(tmp_path):
    """The proof: orders' retry loop waits `policy.backoff_s * attempt` = 0 between attempts. orders' config set
    its backoff to 0, and so did the gateway's for its own calls to orders (each layer retrying at once
    multiplies the calls): the gateway's change is proposed too, after orders' own, resting on the setting the
    proof names. A change elsewhere that set it to a wait (0.5), or set other settings only, or came after
    the fault was first seen, is not."""
    from probebook.evidence.predicate import Predicate

    now = time.time()
    changes = tmp_path / "changes.jsonl"
    write_changes(changes,  # 10, 9, 8 and 7 minutes ago
                  ("config", "orders", "payments client: retry at once", {
                      "set": {"payments": {"max_attempts": 5, "backoff_s": 0.0}}, "before": {}}),
                  ("config", "gateway", "retry orders 3 times", {
                      "set": {"orders": {"max_attempts": 3, "backoff_s": 0.0, "timeout_s": 2.0}}, "before": {}}),
                  ("config", "search", "retry with a wait", {"set": {"backend": {"backoff_s": 0.5}}, "before": {}}),
                  ("config", "cart", "more attempts", {"set": {"max_attempts": 4}, "before": {}}))
    with open(changes, "a", encoding="utf-8") as fh:  # after the fault was first seen (5 minutes ago)
        fh.write(json.dumps({"ts": now - 100, "kind": "config", "service": "users", "summary": "no wait",
                             "by": "alice", "details": {"set": {"backoff_s": 0}, "before": {}}}) + "\n")
    inv = Investigation()
    try:
        inv.telemetry.configure(change_logs=[str(changes)])
        inv.store.ingest([{"kind": "snapshot", "seq": 1, "ts": now - 300, "probe_id": "p1", "file": "web.py",
                           "line": 9, "function": "call", "thread": "MainThread", "trace_id": "", "arguments": {},
                           "locals": {"attempt": 2}, "expressions": {"policy.backoff_s * attempt": 0.0},
                           "stack": []}], "orders", "o1")
        v = Verdict("proven", "orders", "shop/web.py:Upstream.call", evidence=["snap:orders:o1:1"], id="v1",
                    predicate=Predicate(capture="policy.backoff_s * attempt", op="==", value=0))
        proposals = propose(inv, v)
        assert [p.action.describe() for p in proposals] == ["restore orders config payments=(default)",
                                                             "restore gateway config orders=(default)"], proposals
        assert [p.basis for p in proposals] == ["proof", "ranking"]
        assert "(on gateway, not orders: it set backoff_s=0.0, the setting in the proof's policy.backoff_s * " \
               "attempt: with it policy.backoff_s * attempt == 0 holds there too)" in proposals[1].why, proposals[1].why
        assert "change:gateway:" in proposals[1].rests_on[-1]
        waits = Verdict("proven", "orders", "shop/web.py:Upstream.call", evidence=["snap:orders:o1:1"], id="v2",
                        predicate=Predicate(capture="policy.backoff_s * attempt", op=">", value=1))
        assert [p.action.describe() for p in propose(inv, waits)] == ["restore orders config payments=(default)"]
    finally:
        inv.close()


def test_writes_failing_for_the_lack_of_space_propose_freeing_it_first(tmp_path):
    """The proof: the archive writes raise ENOSPC. Freeing space on that service's volume is proposed before
    any change is undone (a change did not fill the disk); a proof about anything else proposes no such
    action."""
    from probebook.evidence.predicate import Predicate

    now = time.time()
    changes = tmp_path / "changes.jsonl"
    write_changes(changes, ("config", "worker", "batch size", {"set": {"batch": 50}, "before": {"batch": 10}}))
    inv = Investigation()
    try:
        inv.telemetry.configure(change_logs=[str(changes)])
        inv.store.ingest([{"kind": "snapshot", "seq": 1, "ts": now - 300, "probe_id": "p1", "file": "worker.py",
                           "line": 30, "function": "append", "thread": "MainThread", "trace_id": "",
                           "arguments": {}, "locals": {}, "expressions": {}, "stack": []}], "worker", "w1")
        full = Verdict("proven", "worker", "shop/worker.py:Archive.append", evidence=["snap:worker:w1:1"], id="v1",
                       cause="Archive.append raises OSError (OSError(28, 'No space left on device'))",
                       predicate=Predicate(field="message", op="contains", value="No space left on device"))
        proposals = propose(inv, full)
        assert [p.action.describe() for p in proposals] == ["free space on worker's full volume",
                                                             "restore worker config batch=10"], proposals
        assert proposals[0].id == "free_space-worker" and proposals[0].basis == "proof"
        assert "failing for the lack of space (message contains 'No space left on device')" in proposals[0].why
        other = Verdict("proven", "worker", "shop/worker.py:Archive.append", evidence=["snap:worker:w1:1"], id="v2",
                        predicate=Predicate(field="message", op="contains", value="Permission denied"))
        assert [p.action.kind for p in propose(inv, other)] == ["config"]
    finally:
        inv.close()
