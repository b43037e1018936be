"""Fix validation as a lifecycle stage: a service written here (never the lab's) runs in this process and is
probed; a candidate fix is given as an edit; the assistant finds the function the edit changes, replays
the calls production made (from the store, or captured now by a probe at the function's entry) from the
running and the fixed code in a child process, keeps the result with an id and shows it in the postmortem.
A replayed call never reaches another service: the child has no network."""

import contextlib
import os
import socket
import textwrap
import threading

import pytest
from support import package_on_disk, wait_for

from probebook.agent import Agent
from probebook.assistant import Assistant
from probebook.assistant.fixcheck import Fix, changed_functions
from probebook.assistant.model import Verdict
from probebook.assistant.postmortem import notebook_for
from probebook.assistant.postmortem_cells import fix_replays
from probebook.errors import AssistantError
from probebook.evidence.predicate import Predicate
from probebook.session import Investigation

SRC = textwrap.dedent('''
    import re
    import socket


    def payload(user, body):
        currency = body.get("display_currency") or user["currency"]
        return {"user": user["id"], "currency": currency}  # at:payload


    def discount(rate):
        if rate > 1:
            raise ValueError(f"rate {rate} above 1")
        return round(1 - rate, 4)


    def order(body):
        currency = body["meta"]["currency"]
        return {"currency": currency, "lines": len(body["items"])}  # at:order


    def notify(port, text):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:  # at:notify
            conn.sendall(text.encode())
        return len(text)


    PATTERN = re.compile(r"^(\\w+\\s?)*$")


    def search(q):
        return PATTERN.match(q) is not None  # at:search
''')
UPPER = ('currency = body.get("display_currency") or user["currency"]',
         'currency = str(body.get("display_currency") or user["currency"]).upper()')


@pytest.fixture()
def service(tmp_path):
    root = tmp_path / "srv"
    with package_on_disk(root, "fixshop", {"checkout": SRC}) as (checkout,):
        agent, inv = Agent(), Investigation()
        inv.attach("shop", agent, audit_path=str(tmp_path / "audit.jsonl"))
        yield inv, str(root), checkout
        inv.close()


@contextlib.contextmanager
def production(call):
    """`call(n)` for n = 0, 1, 2, ... every 10 ms in a thread while the block runs: production's traffic."""
    stop = threading.Event()

    def run():
        n = 0
        while not stop.is_set():
            call(n)
            n += 1
            stop.wait(0.01)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(5)


def _line(tag):
    return next(i for i, text in enumerate(SRC.splitlines(), 1) if f"at:{tag}" in text)


def _snapshots(inv, n):
    wait_for(lambda: inv.store.count("snapshots") >= n, timeout=10, what=f"{n} snapshots")
    return inv.sql("SELECT evidence_id, arguments FROM snapshots ORDER BY ts, evidence_id").to_dicts()


def test_the_fix_is_replayed_on_the_calls_that_showed_the_defect_kept_and_shown_in_the_postmortem(service):
    inv, root, checkout = service
    inv.probe("snapshot", "shop", f"fixshop/checkout.py:{_line('payload')}", rate=100)
    for body in ({"display_currency": "eur"}, {}, {"display_currency": "gbp"}):
        checkout.payload({"id": 7, "currency": "USD"}, {"items": [1], **body})
    rows = _snapshots(inv, 3)
    cited = [r["evidence_id"] for r in rows if "display_currency" in str(r["arguments"])]
    assert len(cited) == 2
    verdict = Verdict("proven", "shop", "fixshop/checkout.py:payload", cause="lower-case currency", evidence=cited,
                      id="verdict:t:1")

    result = Assistant(inv).validate_fix(verdict, Fix.from_edits(root, [("fixshop/checkout.py", *UPPER)]),
                                         capture_s=0)
    assert result.validated, result.to_dict()
    assert result.targets == ["fixshop/checkout.py:payload"]
    assert result.summary.startswith("fixshop/checkout.py:payload: fix validated: 2 of 2 failing calls now pass, "
                                     "1 of 1 other calls answer as before")
    # kept with an id, on the timeline, and shown call by call in the postmortem
    kept = inv.sql("SELECT evidence_id, verdict, validated FROM assistant_fix_validations").rows()
    assert kept == [(result.id, "verdict:t:1", True)]
    assert inv.sql(f"SELECT count(*) FROM timeline WHERE ref = '{result.id}'").rows()[0][0] == 1
    shown = fix_replays(inv)
    assert shown.height == 3 and set(shown["validation"]) == {result.id}
    by_call = {r["call"]: r for r in shown.to_dicts()}
    assert sorted(by_call[eid]["after"] for eid in cited) == ["{'user': 7, 'currency': 'EUR'}",
                                                              "{'user': 7, 'currency': 'GBP'}"]
    assert all(by_call[eid]["showed_defect"] for eid in cited)
    (other,) = [r for r in shown.to_dicts() if not r["showed_defect"]]
    assert other["before"] == other["after"] == "{'user': 7, 'currency': 'USD'}"
    cells = [c.source for c in notebook_for(inv.store.save_copy(os.path.join(os.path.dirname(root), "inv.duckdb"))).cells]
    assert any(s.startswith("## Fix validation") for s in cells) and "fix_replays(inv)" in cells


def test_a_fix_to_a_function_no_snapshot_holds_captures_its_calls_first_then_removes_the_probe(service):
    inv, root, checkout = service
    rates = [0.1, 15, 0.25, 20]

    def call(n):
        try:
            checkout.discount(rates[n % 4])
        except ValueError:
            pass

    with production(call):
        verdict = Verdict("proven", "shop", "fixshop/checkout.py:discount", cause="percent read as a fraction")
        fix = Fix.from_edits(root, [("fixshop/checkout.py", "    if rate > 1:\n        raise",
                                     "    rate = rate / 100 if rate > 1 else rate\n    if rate > 1:\n        raise")])
        result = Assistant(inv).validate_fix(verdict, fix, calls=8, capture_s=20)
    assert len(result.captured) == 1 and inv.records[result.captured[0]].removed
    report = result.reports["fixshop/checkout.py:discount"]
    raised = [r for r in report.rows if not r["before"]["ok"]]
    assert raised and all(r["failed_in_production"] and r["after"]["ok"] for r in raised), report.to_dict()
    assert len(report.rows) >= 8 and result.validated, result.to_dict()


def test_calls_cut_at_the_capture_limits_are_captured_again_deeper_where_the_proof_was_taken(service):
    inv, root, checkout = service
    def call(n):
        checkout.order({"items": [{"sku": "a", "qty": 1}], "meta": {"currency": ("eur", "USD")[n % 2]}})

    with production(call):
        inv.probe("snapshot", "shop", f"fixshop/checkout.py:{_line('order')}", capture=["currency"], rate=100)
        rows = _snapshots(inv, 4)
        assert "depth" in str(rows[0]["arguments"])  # the default depth cut the items: not rebuildable
        cited = [r["evidence_id"] for r in rows][:4]
        verdict = Verdict("proven", "shop", "fixshop/checkout.py:order", evidence=cited,
                          predicate=Predicate.from_dict({"capture": "currency", "op": "matches", "value": "^[a-z]{3}$"}))
        fix = Fix.from_edits(root, [("fixshop/checkout.py", 'currency = body["meta"]["currency"]',
                                     'currency = body["meta"]["currency"].upper()')])
        result = Assistant(inv).validate_fix(verdict, fix, calls=10, capture_s=20)
    report = result.reports["fixshop/checkout.py:order"]
    assert len(result.captured) == 1 and not report.not_rebuilt and len(report.rows) == 10, result.to_dict()
    failing = [r for r in report.rows if r["failed_in_production"]]  # the proof's predicate held on them
    assert failing and failing == [r for r in report.rows if "'currency': 'eur'" in r["arguments"]["body"]]
    assert all(r["after"]["value"].startswith("{'currency': 'EUR'") for r in failing) and len(failing) < 10
    assert result.validated, result.to_dict()


def test_a_replayed_call_never_reaches_another_service(service):
    inv, root, checkout = service
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port, accepted = listener.getsockname()[1], []

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn.recv(64))
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        inv.probe("snapshot", "shop", f"fixshop/checkout.py:{_line('notify')}", rate=100)
        checkout.notify(port, "paid")  # production reaches the listener: the positive control
        rows = _snapshots(inv, 1)
        wait_for(lambda: accepted == [b"paid"], timeout=5, what="production's message")
        verdict = Verdict("proven", "shop", "fixshop/checkout.py:notify", evidence=[rows[0]["evidence_id"]])
        fix = Fix.from_edits(root, [("fixshop/checkout.py", "conn.sendall(text.encode())",
                                     "conn.sendall(text.upper().encode())")])
        result = Assistant(inv).validate_fix(verdict, fix, capture_s=0)
        (row,) = result.reports["fixshop/checkout.py:notify"].rows
        assert row["before"]["raised"] == "OSError" and "no network" in row["before"]["message"]
        assert not result.validated
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # a second control: accepted after
        wait_for(lambda: len(accepted) == 2, timeout=5, what="the second control connection")
        assert accepted == [b"paid", b""]  # nothing from the replay came in between
    finally:
        listener.close()


def test_what_cannot_be_validated_says_why(service):
    inv, root, _ = service
    verdict = Verdict("proven", "shop", "fixshop/checkout.py:payload")
    result = Assistant(inv).validate_fix(verdict, Fix.from_edits(root, [("fixshop/checkout.py", *UPPER)]),
                                         capture_s=0)
    assert not result.validated
    assert result.summary == "no call of fixshop/checkout.py:payload was captured in this investigation"
    with pytest.raises(AssistantError, match="is in fixshop/checkout.py 0 times; give text found exactly once"):
        Fix.from_edits(root, [("fixshop/checkout.py", "no such text", "x")])
    with pytest.raises(AssistantError, match="cannot read fixshop/nothing.py"):
        Fix.from_edits(root, [("fixshop/nothing.py", "a", "b")])
    assert changed_functions(SRC, SRC.replace("import socket", "import socket, os")) == [""]


def test_a_latency_proven_by_time_is_validated_by_the_time_each_replayed_call_takes(service):
    """The proof is a time (a duration metric of `search`, at least 20 ms a call: pasted words make its regex
    backtrack), so no snapshot showed the defect: production's calls are captured at the function's entry,
    and those that take at least the proof's bound on the running code show it there. The linear pattern
    answers them the same, many times faster; the quick ones answer as before: validated, by time."""
    inv, root, checkout = service
    slow = "a" * 21 + "?"
    rec = inv.probe("metric", "shop", "fixshop.checkout:search", metric={"name": "search_ms", "type": "duration"},
                    rate=50)
    with production(lambda n: checkout.search(slow if n % 2 else f"sku {n}")):
        wait_for(lambda: inv.store.count("metrics") >= 6, timeout=20, what="6 timings")
        inv.remove(rec.alias)
        ids = [e for e, v in inv.sql("SELECT evidence_id, value FROM metrics").rows() if v >= 20]
        assert len(ids) >= 2, inv.sql("SELECT value FROM metrics").rows()
        verdict = Verdict("proven", "shop", "fixshop/checkout.py:search", evidence=ids,
                          predicate=Predicate(field="value", op=">=", value=20.0))
        fix = Fix.from_edits(root, [("fixshop/checkout.py", r'PATTERN = re.compile(r"^(\w+\s?)*$")',
                                     r'PATTERN = re.compile(r"^[\w ]*$")')])
        result = Assistant(inv).validate_fix(verdict, fix, calls=6, capture_s=10)
    assert result.validated, result.summary
    assert "by time alone, same answer" in result.summary and "other calls answer as before" in result.summary
