"""The proof gate refuses every kind of bad citation, with its reason, and lets a real proof through."""

import time

import pytest

from probebook.assistant.model import Verdict
from probebook.assistant.proof import ProofGate
from probebook.evidence import EvidenceStore
from probebook.evidence.predicate import Predicate

RATE_ABOVE_1 = Predicate(capture="rate", op=">", value=1)
LOCUS = "shop/pricing.py:order_total"


def snap(seq, probe_id, rate, function="order_total", file="/srv/releases/2.8.0/shop/pricing.py"):
    return {"kind": "snapshot", "seq": seq, "ts": time.time(), "probe_id": probe_id, "file": file, "line": 42,
            "function": function, "thread": "MainThread", "trace_id": "",
            "arguments": {}, "locals": {"rate": {"type": "int", "value": rate}},
            "expressions": {"rate": {"type": "int", "value": rate}}, "stack": []}


@pytest.fixture()
def world():
    store = EvidenceStore()
    store.record_probe("early", "orders", "snapshot", "shop/pricing.py:42", {})
    store.ingest([snap(1, "early", 15)], "orders", "i1")
    time.sleep(0.05)
    opened = time.time()
    time.sleep(0.05)
    store.record_probe("ours", "orders", "snapshot", "shop/pricing.py:42", {})
    store.record_probe("ours", "payments", "snapshot", "shop/pricing.py:42", {})
    store.ingest([snap(2, "ours", 15), snap(3, "ours", 0.15), snap(4, "theirs", 15),
                  snap(5, "ours", 15, function="coupon_rate", file="/srv/shop/orders.py")], "orders", "i1")
    store.ingest([snap(1, "ours", 15)], "payments", "i2")
    yield store, ProofGate(store, opened_at=opened)
    store.close()


def proven(*ids, locus=LOCUS, service="orders", pred=RATE_ABOVE_1):
    return Verdict("proven", service, locus, "coupon rate is a whole percent", pred, evidence=list(ids))


def test_a_real_proof_passes(world):
    _, gate = world
    v = gate.check(proven("snap:orders:i1:2"))
    assert v.kind == "proven"
    assert v.reasons == ["proof: rate=15 > 1"]


@pytest.mark.parametrize("eid, reason", [
    ("snap:orders:i1:999", "no such evidence in this investigation"),
    ("snap:orders:i1:1", "placed before the incident opened"),
    ("snap:orders:i1:4", "which this investigation did not place"),
    ("snap:payments:i2:1", "captured on payments, not on orders"),
    ("snap:orders:i1:5", "not inside shop/pricing.py:order_total"),
    ("log:orders:i1:2'; DROP TABLE probes; --", "no such evidence"),
])
def test_each_bad_citation_is_refused_with_its_reason(world, eid, reason):
    _, gate = world
    result = gate.examine(proven(eid))
    assert result.verdict.kind == "likely"
    assert reason in result.refused[eid]
    assert any(reason in r for r in result.verdict.reasons)


def test_a_false_predicate_is_refused(world):
    _, gate = world
    v = gate.check(proven("snap:orders:i1:3"))
    assert v.kind == "likely"
    assert v.reasons == ["the cited evidence does not show rate > 1"]


def test_no_predicate_or_no_locus_cannot_be_proven(world):
    _, gate = world
    assert gate.check(proven("snap:orders:i1:2", pred=None)).kind == "likely"
    v = gate.check(Verdict("proven", "", "", "something", RATE_ABOVE_1, evidence=["snap:orders:i1:2"]))
    assert v.kind == "inconclusive"


def test_outside_needs_the_boundary(world):
    _, gate = world
    v = Verdict("outside", "bank", "outside our services", "the provider fails", RATE_ABOVE_1,
                evidence=["snap:orders:i1:2"])
    assert gate.check(v).kind == "likely"
    v.boundary_service, v.boundary_locus = "orders", LOCUS
    assert gate.check(v).kind == "outside"


def test_a_process_claim_is_proven_at_the_boundary_of_its_callers(world):
    """A process that is gone cannot be probed: what its callers captured is the proof, as for outside."""
    _, gate = world
    v = Verdict("proven", "payments", "payments process", "payments is gone", RATE_ABOVE_1,
                evidence=["snap:orders:i1:2"])
    assert "names the boundary" in gate.check(v).reasons[-1]
    v.boundary_service, v.boundary_locus = "orders", LOCUS
    assert gate.check(v).kind == "proven"
    v.service = "orders"  # the process of one service claimed under another's name
    assert "names another service" in gate.check(v).reasons[-1]


def test_no_fault_needs_enough_quiet_hits(world):
    store, gate = world
    v = Verdict("no-fault", "orders", LOCUS, "nothing reproduces", Predicate(capture="rate", op=">", value=1),
                evidence=["snap:orders:i1:3"])
    assert gate.check(v).kind == "inconclusive"
    store.ingest([snap(10 + i, "ours", 0.1) for i in range(20)], "orders", "i1")
    v.evidence = [f"snap:orders:i1:{10 + i}" for i in range(20)]
    assert gate.check(v).kind == "no-fault"
    v.evidence.append("snap:orders:i1:2")  # one hit that shows the fault
    assert "that is the fault" in gate.check(v).reasons[-1]


def test_median_predicate_is_judged_over_the_cited_events(world):
    store, gate = world
    store.record_probe("dur", "orders", "metric", "shop.pricing:order_total", {})
    rows = [{"kind": "metric", "seq": 100 + i, "ts": time.time(), "probe_id": "dur", "file": "/x/shop/pricing.py",
             "line": 1, "function": "order_total", "thread": "", "trace_id": "", "name": "d", "metric_type": "duration",
             "value": v, "unit": "ms", "error": False} for i, v in enumerate([1, 9, 9, 9, 9])]
    store.ingest(rows, "orders", "i1")
    pred = Predicate(field="value", op=">", value=3, agg="median", min_events=5)
    ids = [f"metric:orders:i1:{100 + i}" for i in range(5)]
    assert gate.check(proven(*ids, pred=pred)).kind == "proven"
    assert gate.check(proven(*ids[:4], pred=pred)).kind == "likely"


def test_a_claim_true_of_every_capture_there_is_refused(world):
    _, gate = world
    v = gate.check(proven("snap:orders:i1:2", pred=Predicate(stack="order_total")))
    assert v.kind == "likely" and "always holds" in v.reasons[-1]


def test_a_locus_without_a_file_is_not_a_place(world):
    _, gate = world
    v = gate.check(proven("snap:orders:i1:2", locus="order_total"))
    assert v.kind == "likely" and "needs a file and a function" in v.reasons[-1]


def test_an_exception_is_judged_at_the_claimed_frame_not_another(world):
    store, gate = world
    store.record_probe("exc", "orders", "exception", "shop.api:handler", {})
    frames = [{"function": "handler", "file": "/srv/shop/api.py", "line": 5, "locals": {}},
              {"function": "order_total", "file": "/srv/shop/pricing.py", "line": 9,
               "locals": {"rate": {"type": "int", "value": 15}}}]
    store.ingest([{"kind": "exception", "seq": 50, "ts": time.time(), "probe_id": "exc", "file": "/srv/shop/api.py",
                   "line": 5, "function": "handler", "thread": "", "trace_id": "", "exc_type": "ValueError",
                   "message": {"type": "ValueError"}, "frames": frames}], "orders", "i1")
    # the rate lives in order_total's frame: proven there, not at the caller whose frame merely holds it
    assert gate.check(proven("exc:orders:i1:50")).kind == "proven"
    assert gate.check(proven("exc:orders:i1:50", locus="shop/api.py:handler")).kind == "likely"


def test_no_fault_on_something_the_events_do_not_hold_is_refused(world):
    store, gate = world
    store.ingest([snap(60 + i, "ours", 0.1) for i in range(20)], "orders", "i1")
    v = Verdict("no-fault", "orders", LOCUS, "quiet", Predicate(capture="no_such_name", op="==", value=1),
                evidence=[f"snap:orders:i1:{60 + i}" for i in range(20)])
    assert gate.check(v).kind == "inconclusive"
    v.predicate, v.locus = Predicate(capture="rate", op=">", value=1), ""
    assert "names the path it watched" in gate.check(v).reasons[-1]


def test_the_sql_tool_reads_evidence_and_nothing_else(world):
    from probebook.assistant.journal import Journal
    from probebook.assistant.model import Incident
    from probebook.assistant.tools import ToolBox
    from probebook.session import Investigation

    inv = Investigation()
    try:
        journal = Journal(inv.store)
        tools = ToolBox(inv, journal.open_incident(Incident("x")), journal)
        forged = tools.call("sql", {"query": "WITH x AS (SELECT 1) INSERT INTO probes SELECT 'p', 'orders', "
                                             "'snapshot', 'a.py:1', '{}', now(), NULL"})
        assert "one SELECT" in forged.error and inv.store.count("probes") == 0
        assert "not an evidence table" in tools.call("sql", {"query": "SELECT * FROM probes, '/etc/hostname'"}).error
        assert "one SELECT" in tools.call("sql", {"query": "SELECT * FROM read_text('/etc/hostname')"}).error
        many = tools.call("sql", {"query": "SELECT * FROM range(100000000)"})
        assert not many.error and len(many.data) <= 40
    finally:
        inv.close()
