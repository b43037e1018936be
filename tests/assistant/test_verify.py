"""Verification after a fix, on a service written here: the probes that proved the cause are placed again
and the proof's predicate is judged on what they capture now: still there before the fix, gone after it,
inconclusive without traffic; each step on the timeline, nothing left behind."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import tinyshop  # noqa: E402

from probebook.agent import Agent  # noqa: E402
from tinyshop_driver import investigate_pay_500s, with_traffic  # noqa: E402
from probebook.assistant.verify import as_seen, verify_fix  # noqa: E402
from probebook.errors import AssistantError  # noqa: E402
from probebook.session import Investigation  # noqa: E402


@pytest.fixture()
def proven(tmp_path, monkeypatch):
    agent, inv = Agent(), Investigation()
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "audit.jsonl"))
    monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 15)
    verdict = investigate_pay_500s(inv)
    assert verdict.kind == "proven", verdict.reasons
    yield inv, verdict
    inv.close()



def test_before_the_fix_the_cause_is_still_there_and_after_it_is_gone(proven, monkeypatch):
    inv, verdict = proven
    before = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=30))
    assert before.outcome == "still" and before.held > 0 and before.seen >= 10, before.to_dict()
    monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 0.15)  # the fix, deployed
    after = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=30))
    assert after.outcome == "gone" and after.held == 0 and after.seen == 10, after.to_dict()
    narrowed = as_seen(inv, verdict)  # `> 0.2` (the healthy calls' largest) judged as `>= 15` (the failing ones')
    assert (narrowed.op, narrowed.value, verdict.predicate.op) == (">=", 15, ">"), (narrowed, verdict.predicate)
    assert after.headline().startswith(f"verified: {narrowed.describe()} (the failing calls' values; the proof's "
                                       f"bound: {verdict.predicate.describe()}) held on 0 of 10 calls")
    marks = inv.sql("SELECT text FROM timeline WHERE text LIKE 'verification%' ORDER BY ts")["text"].to_list()
    assert len(marks) == 4 and marks[-1] == f"verification: {after.headline()}"
    assert inv.probes().filter(inv.probes()["status"] != "removed").height == 0  # nothing left behind


def test_without_traffic_it_is_inconclusive_not_verified(proven):
    inv, verdict = proven
    report = verify_fix(inv, verdict, calls=5, timeout=1.5)
    assert report.outcome == "inconclusive" and report.seen < 5
    assert report.headline().startswith("inconclusive:") and "asked for 5 calls within 1.5s" in report.headline()


def test_a_verdict_without_proof_cannot_be_verified(proven):
    inv, verdict = proven
    from dataclasses import replace

    with pytest.raises(AssistantError, match="verify a proven one"):
        verify_fix(inv, replace(verdict, predicate=None))


def test_a_probe_with_a_condition_is_verified_on_the_calls_that_reached_its_place(tmp_path, monkeypatch):
    """A proof taken with a condition (`when`): after the fix, no call passes it; the calls that reached the
    place (a plain log beside it) show that this is the fix and not a lack of traffic."""
    from probebook.assistant.model import Verdict
    from probebook.evidence.predicate import Predicate
    from support import wait_for

    agent, inv = Agent(), Investigation()
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "audit.jsonl"))
    try:
        monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 15)
        path = tinyshop.__file__
        with open(path, encoding="utf-8") as fh:
            line = next(i for i, t in enumerate(fh, 1) if "amount = round(subtotal * (1 - discount), 2)" in t)
        rec = inv.probe("snapshot", "tinyshop", f"{path}:{line}", when="discount > 1", capture=["discount"], rate=50)
        with_traffic(lambda: wait_for(lambda: inv.store.count("snapshots") >= 3, timeout=20, what="3 snapshots"))
        inv.remove(rec.alias)
        ids = inv.sql("SELECT evidence_id FROM snapshots")["evidence_id"].to_list()
        verdict = Verdict("proven", "tinyshop", f"{path}:final_amount", evidence=ids,
                          predicate=Predicate.from_dict({"capture": "discount", "op": ">", "value": 1}))
        before = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=30))
        assert before.outcome == "still" and before.held > 0, before.to_dict()
        monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 0.15)  # the fix
        after = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=30))
        assert after.outcome == "gone" and after.held == 0 and after.seen >= 10, after.to_dict()
        assert f"let 0 of {after.seen} calls through" in after.headline()
        idle = verify_fix(inv, verdict, calls=5, timeout=1.5)  # no traffic: neither probe sees a call
        assert idle.outcome == "inconclusive" and idle.seen == 0, idle.to_dict()
        assert inv.probes().filter(inv.probes()["status"] != "removed").height == 0  # nothing left behind
    finally:
        inv.close()


def test_when_the_fix_rewrote_the_line_the_proof_read_the_failure_itself_judges_it(proven, monkeypatch):
    """The proof's line as it was (its anchor) is not in the code that runs now: the predicate read values
    at a place the fixed code no longer has, so the failure the investigation caught (its exception, where
    it was caught) is watched again instead: still raised before the fix, gone after it."""
    from probebook.assistant.verify import anchor_lines, failure_seen

    inv, verdict = proven
    anchors = {w: t + "  # as it was before the fix" for w, t in anchor_lines(inv, verdict).items()}
    assert anchors, "the proof's probe was expected on a line"
    service, spec, exc_type, caught = failure_seen(inv)
    assert service == "tinyshop" and caught > 0, (service, spec, exc_type, caught)

    before = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=30, anchors=anchors))
    assert before.outcome == "still" and before.held > 0, before.to_dict()
    assert before.claim == f"{exc_type} raised through {spec['where']}"
    assert "no longer has the line the proof was read at" in before.headline()
    assert "judged by the failure itself" in before.headline()
    monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 0.15)  # the fix, deployed
    after = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=30, anchors=anchors))
    assert after.outcome == "gone" and after.held == 0 and after.seen >= 10, after.to_dict()
    assert after.headline().startswith(f"verified: {exc_type} raised through {spec['where']} held on 0 of")
    assert inv.probes().filter(inv.probes()["status"] != "removed").height == 0  # nothing left behind


def test_values_seen_on_neither_side_before_the_fix_are_judged_by_the_failure_itself(proven, monkeypatch):
    """A "fix" that makes BROKEN's discount 0.5: above every healthy call's (0.2), below every failing
    call's (15). Neither like the failing calls nor like the healthy ones, so the predicate cannot say; the
    failure the investigation caught (the PriceError through /pay) can, and it is gone."""
    inv, verdict = proven
    monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 0.5)
    report = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=30))
    assert report.outcome == "gone" and report.held == 0 and report.seen >= 10, report.to_dict()
    assert "values seen on neither before the fix" in report.headline() and "(15)" in report.headline()
    assert "judged by the failure itself" in report.headline() and "PriceError" in report.claim
    assert inv.probes().filter(inv.probes()["status"] != "removed").height == 0  # nothing left behind


def _snapshot_verdict(inv, line_text, when, capture, predicate, held_by):
    """A proof read by one snapshot probe on tinyshop's line holding `line_text` (no exception probe in this
    investigation): the events whose `capture` value passes `held_by` are its evidence."""
    from probebook.assistant.model import Verdict
    from probebook.evidence.predicate import Predicate
    from support import wait_for

    path = tinyshop.__file__
    with open(path, encoding="utf-8") as fh:
        line = next(i for i, t in enumerate(fh, 1) if line_text in t)
    rec = inv.probe("snapshot", "tinyshop", f"{path}:{line}", when=when, capture=[capture], rate=50)
    with_traffic(lambda: wait_for(lambda: inv.store.count("snapshots") >= 12, timeout=30, what="12 snapshots"))
    inv.remove(rec.alias)
    rows = inv.sql("SELECT evidence_id, expressions FROM snapshots").rows()
    ids = [eid for eid, caps in rows if held_by(json.loads(caps) if isinstance(caps, str) else caps)]
    assert ids, rows[:3]
    return Verdict("proven", "tinyshop", f"{path}:final_amount", evidence=ids,
                   predicate=Predicate.from_dict(predicate))


def test_a_path_taken_out_of_use_is_judged_by_the_failure_itself(proven, monkeypatch):
    """As a flag turned off does: the charge no longer goes through the discount code, so no call reaches the
    line the proof was read at; the failure the investigation caught is watched where it was caught, and
    the calls that reach it raise it no more."""
    inv, verdict = proven
    monkeypatch.setattr(tinyshop.Billing, "charge", lambda self, items, code: round(sum(items), 2))
    report = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=10))
    assert report.outcome == "gone" and report.held == 0 and report.seen >= 10, report.to_dict()
    assert "no call reached" in report.headline() and "judged by the failure itself" in report.headline()
    assert "PriceError" in report.claim
    assert inv.probes().filter(inv.probes()["status"] != "removed").height == 0  # nothing left behind


@pytest.fixture()
def bare(tmp_path, monkeypatch):
    """tinyshop attached to an investigation that has placed nothing yet, BROKEN at 15."""
    agent, inv = Agent(), Investigation()
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "audit.jsonl"))
    monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 15)
    yield inv
    inv.close()


def test_values_seen_on_neither_side_stay_inconclusive_when_no_failure_was_caught(bare, monkeypatch):
    inv = bare
    verdict = _snapshot_verdict(inv, "amount = round(subtotal * (1 - discount), 2)", None, "discount",
                                {"capture": "discount", "op": ">", "value": 0.2},
                                lambda caps: _number(caps, "discount") > 0.2)
    monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 0.5)
    report = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=30))
    assert report.outcome == "inconclusive" and report.held == 0 and report.seen >= 10, report.to_dict()
    assert "values seen on neither before the fix" in report.headline()
    assert "judged by the failure itself" not in report.headline()


def test_a_line_only_failing_calls_reach_is_judged_out_of_every_call_of_its_function(bare, monkeypatch):
    """The proof was read on the line that raises (only failing calls reach it). After the fix no call
    reaches that line; the calls of the function that holds it, counted beside it, show that this is the
    fix and not a lack of traffic. Before the fix, the same check finds the fault still there."""
    inv = bare
    verdict = _snapshot_verdict(inv, 'raise PriceError(f"negative amount {amount}")', None, "discount",
                                {"capture": "discount", "op": ">", "value": 1},
                                lambda caps: _number(caps, "discount") > 1)
    before = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=30))
    assert before.outcome == "still" and before.held > 0, before.to_dict()
    monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 0.15)  # the fix
    after = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=20))
    assert after.outcome == "gone" and after.held == 0 and after.seen >= 10, after.to_dict()
    assert f"the line ran on 0 of {after.seen} calls of final_amount" in after.headline()
    idle = verify_fix(inv, verdict, calls=5, timeout=1.5)  # no traffic: the function is not called either
    assert idle.outcome == "inconclusive" and idle.seen == 0, idle.to_dict()
    assert inv.probes().filter(inv.probes()["status"] != "removed").height == 0  # nothing left behind


def test_an_exception_probe_is_judged_out_of_every_call_of_its_function(bare, monkeypatch):
    """The proof is the exception itself (PriceError raised by final_amount, caught by an exception probe,
    which sees only the calls that raise). After the fix none raises; every call of final_amount, counted
    beside it, shows that this is the fix and not a lack of traffic."""
    from probebook.assistant.model import Verdict
    from probebook.evidence.predicate import Predicate
    from support import wait_for

    inv = bare
    rec = inv.probe("exception", "tinyshop", "tinyshop:final_amount", rate=50)
    with_traffic(lambda: wait_for(lambda: inv.store.count("exceptions") >= 5, timeout=30, what="5 exceptions"))
    inv.remove(rec.alias)
    ids = inv.sql("SELECT evidence_id FROM exceptions")["evidence_id"].to_list()
    verdict = Verdict("proven", "tinyshop", f"{tinyshop.__file__}:final_amount", evidence=ids,
                      predicate=Predicate(field="message", op="contains", value="negative amount"))
    before = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=30))
    assert before.outcome == "still" and before.held > 0, before.to_dict()
    monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 0.15)  # the fix
    after = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=20))
    assert after.outcome == "gone" and after.held == 0 and after.seen >= 10, after.to_dict()
    assert f"0 of {after.seen} calls of final_amount raised" in after.headline(), after.headline()
    assert inv.probes().filter(inv.probes()["status"] != "removed").height == 0  # nothing left behind



def test_a_function_no_longer_called_is_judged_by_its_callers_calls(bare, monkeypatch):
    """The proof was read by a probe on the function itself (a metric per call of final_amount, as a latency
    proof is). A flag turned off takes the path out of use: Billing.charge no longer calls it. No failure was
    caught to judge by; the calls of its caller, counted beside it, show the path no longer runs: gone. With
    no traffic at all, nothing is claimed."""
    from probebook.assistant.model import Verdict
    from probebook.evidence.predicate import Predicate
    from support import wait_for

    inv = bare
    rec = inv.probe("metric", "tinyshop", "tinyshop:final_amount", metric="amounts", rate=50)
    with_traffic(lambda: wait_for(lambda: inv.store.count("metrics") >= 5, timeout=30, what="5 metric events"))
    inv.remove(rec.alias)
    ids = inv.sql("SELECT evidence_id FROM metrics")["evidence_id"].to_list()
    verdict = Verdict("proven", "tinyshop", f"{tinyshop.__file__}:final_amount", evidence=ids,
                      predicate=Predicate(field="value", op=">=", value=0))

    monkeypatch.setitem(tinyshop.FLAGS, "discounts", False)  # the flag turned off
    report = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=10))
    assert report.outcome == "gone" and report.held == 0 and report.seen >= 10, report.to_dict()
    assert f"the path no longer runs: final_amount ran on none of {report.seen} calls of Billing.charge" \
        in report.headline(), report.headline()
    idle = verify_fix(inv, verdict, calls=5, timeout=1.5)  # no traffic: its callers are not called either
    assert idle.outcome == "inconclusive" and idle.seen == 0, idle.to_dict()
    assert inv.probes().filter(inv.probes()["status"] != "removed").height == 0  # nothing left behind


def test_a_line_no_call_reaches_any_more_is_judged_by_its_functions_callers(bare, monkeypatch):
    """The same with the proof read on a line of final_amount (a snapshot of the discount) and no failure
    caught: with the flag off no call reaches final_amount, and its caller's calls say the path is out of
    use."""
    inv = bare
    verdict = _snapshot_verdict(inv, "amount = round(subtotal * (1 - discount), 2)", None, "discount",
                                {"capture": "discount", "op": ">", "value": 1},
                                lambda caps: _number(caps, "discount") > 1)
    monkeypatch.setitem(tinyshop.FLAGS, "discounts", False)
    report = with_traffic(lambda: verify_fix(inv, verdict, calls=10, timeout=10))
    assert report.outcome == "gone" and report.held == 0 and report.seen >= 10, report.to_dict()
    assert "the path no longer runs: final_amount ran on none of" in report.headline(), report.headline()

def _number(captures, name):
    value = captures.get(name) if isinstance(captures, dict) else None
    value = value.get("value") if isinstance(value, dict) else value
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
