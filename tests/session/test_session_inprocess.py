"""The investigation over an agent of this very process (`Investigation.attach`): probes placed on
code of this file, evidence read back from the DuckDB store, no subprocess anywhere."""

from __future__ import annotations

import inspect
import json
import threading
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List

import pytest

from probebook.agent import Agent
from probebook.errors import SpecError
from probebook.session import InProcessHandle, Investigation, ServiceHandle, SessionError, SourceReader

FILE = "session/test_session_inprocess.py"


def settle(invoice: Dict[str, List[float]]) -> float:
    subtotal = sum(invoice["lines"])
    fee = round(subtotal * 0.03, 2)
    return subtotal + fee  # marker: settled


def _line(marker: str) -> int:
    lines, start = inspect.getsourcelines(settle)
    return start + next(i for i, text in enumerate(lines) if marker in text)


@contextmanager
def _traffic(invoice: Dict[str, List[float]]) -> Iterator[List[float]]:
    """Call `settle` from another thread until the block ends, as a service's requests would."""
    stop, answers = threading.Event(), []

    def run() -> None:
        while not stop.is_set():
            answers.append(settle(invoice))
            stop.wait(0.01)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        yield answers
    finally:
        stop.set()
        worker.join(5)


@pytest.fixture
def inv(tmp_path):
    agent = Agent()
    investigation = Investigation(str(tmp_path / "evidence.duckdb"))
    row = investigation.attach("billing", agent, audit_path=str(tmp_path / "audit.jsonl"))
    assert (row["health"], row["instances"], row["target"]) == ("ok", 1, "in-process")
    yield investigation
    investigation.remove(everything=True)
    investigation.close()
    agent.close()


def test_a_snapshot_on_a_function_here_is_evidence_in_the_store(inv):
    where = f"{FILE}:{_line('marker: settled')}"
    with _traffic({"lines": [10.0, 20.0, 30.0]}) as answers:
        result = inv.snapshot("billing", where, ["subtotal", "fee"], wait=20, hits=2)
    assert not result.timed_out and len(result.evidence_ids) == 2
    ids = ", ".join(f"'{e}'" for e in result.evidence_ids)
    stored = inv.sql(f"SELECT evidence_id, service, expressions FROM snapshots WHERE evidence_id IN ({ids})")
    assert sorted(stored["evidence_id"].to_list()) == sorted(result.evidence_ids)
    assert set(stored["service"].to_list()) == {"billing"}
    for text in stored["expressions"].to_list():
        captured = json.loads(text)
        assert (captured["subtotal"]["value"], captured["fee"]["value"]) == (60.0, 1.8)
    # the probe is gone and the function answers as before
    assert inv.probes()["status"].to_list() == ["removed"]
    (listed,) = inv.handle("billing").probes().values()
    assert listed == []  # the agent holds no probe of ours
    assert answers and set(answers) == {61.8} and settle({"lines": [1.0]}) == 1.03


def test_log_probe_lines_reach_the_logs_table_and_the_audit_log(inv, tmp_path):
    record = inv.probe("log", "billing", f"{FILE}:{_line('marker: settled')}", template="fee={fee}", alias="fee")
    assert record.placed.ok and "installed on 1 of 1" in record.summary
    stored = threading.Event()  # listeners hear of events once they are in the store
    inv.collector.listen(lambda service, events: stored.set() if any(e.kind == "log" for e in events) else None)
    settle({"lines": [100.0]})
    assert stored.wait(10)
    assert inv.sql("SELECT message FROM logs")["message"].to_list() == ["fee=3.0"]
    assert inv.probes().row(0, named=True)["emitted"] >= 1
    assert inv.remove("fee") == ["fee"]
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    # the reads of captured events are audited too: the first at once, then a line a minute
    assert [(e["who"], e["action"]) for e in audit if e["action"] != "read_events"] == [
        ("in-process", "add_probe"), ("in-process", "remove_probe")]
    assert ("in-process", "read_events") in [(e["who"], e["action"]) for e in audit]


def test_the_handle_is_a_service_handle_with_source(inv):
    handle = inv.handle("billing")
    assert isinstance(handle, InProcessHandle) and isinstance(handle, ServiceHandle)
    assert isinstance(handle, SourceReader)
    line = _line("marker: settled")
    text = inv.source("billing", FILE, line, line)
    assert text.splitlines()[1].split(None, 1) == [str(line), "return subtotal + fee  # marker: settled"]
    assert inv.services().row(0, named=True)["health"] == "ok"


def test_refusals_are_one_line_and_place_nothing(inv):
    with pytest.raises(SessionError, match="probe refused: .*(no code|nearest)") as err:
        inv.probe("log", "billing", f"{FILE}:1", template="x")  # the docstring: no code to probe
    assert "\n" not in str(err.value)
    with pytest.raises(SpecError, match="^ttl"):
        inv.probe("log", "billing", f"{FILE}:{_line('marker: settled')}", template="x", ttl="banana")
    with pytest.raises(SessionError, match="billing: .*404"):
        inv.source("billing", "session/no_such_file.py")
    assert inv.records == {} and all(v == [] for v in inv.handle("billing").probes().values())



def test_captured_values_read_as_plain_text_in_sql():
    """`captured(column, name)` instead of `expressions ->> '$."order.total".value'`."""
    from probebook.evidence import EvidenceStore

    store = EvidenceStore()
    store.ingest([{"kind": "snapshot", "seq": 1, "ts": 1.0, "probe_id": "p1", "file": "a.py", "line": 3,
                   "function": "f", "thread": "t", "trace_id": "", "arguments": {}, "stack": [],
                   "locals": {"qty": {"type": "int", "value": 3}},
                   "expressions": {"order.total": {"type": "float", "value": 12.5},
                                   "d['args']": {"type": "dict", "items": []}}}], service="s", instance_id="i")
    row = store.sql("SELECT captured(expressions, 'order.total') AS total, captured(locals, 'qty') AS qty, "
                    "captured(expressions, 'd[''args'']') AS args FROM snapshots").row(0, named=True)
    assert row == {"total": "12.5", "qty": "3", "args": None}


def test_a_script_that_raises_with_an_investigation_open_exits_with_its_own_status(tmp_path):
    """Before, such a script aborted with 134 (`terminate called after throwing ...`) in 2 of 3 runs:
    the collector thread was writing to DuckDB while the interpreter tore down."""
    import subprocess
    import sys

    script = tmp_path / "oops.py"
    script.write_text(
        "import threading, time\n"
        "from probebook.agent import Agent\n"
        "from probebook.session import Investigation\n"
        "def work(i):\n"
        "    return i * 2\n"
        "agent = Agent()\n"
        "inv = Investigation(%r)\n"
        "inv.attach('me', agent)\n"
        "inv.probe('log', 'me', '__main__:work', template='i={i}', rate=10000)\n"
        "def busy():\n"
        "    i = 0\n"
        "    while True:\n"
        "        i += 1\n"
        "        work(i)\n"
        "threading.Thread(target=busy, daemon=True).start()\n"
        "time.sleep(0.5)\n"
        "raise ValueError('the script failed')\n"
        % str(tmp_path / "ev.duckdb"))
    for _ in range(3):
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, out.stderr[-2000:]
        assert "ValueError: the script failed" in out.stderr and "terminate called" not in out.stderr


def test_the_python_api_page_runs_as_written():
    import doctest
    import os

    page = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "python-api.md")
    result = doctest.testfile(page, module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 10, result


def test_a_probe_that_expired_and_left_the_agents_list_reads_expired(tmp_path):
    """An expired probe leaves the agent's list after its grace: the investigation still says
    `expired` with the agent's reason (from the status event it stored), and removing it then is no error."""
    from probebook.agent import AgentLimits

    agent = Agent(AgentLimits(expired_grace=0.5))
    inv = Investigation(str(tmp_path / "evidence.duckdb"))
    try:
        inv.attach("billing", agent, audit_path=str(tmp_path / "audit.jsonl"))
        record = inv.probe("log", "billing", f"{FILE}:{_line('marker: settled')}", template="fee={fee}",
                           alias="short", ttl=0.5)
        settle({"lines": [100.0]})
        deadline = time.monotonic() + 10
        while agent.probes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert agent.probes() == []  # gone from the agent's list
        inv.collector.poll_once()  # the status events into the store
        row = inv.probes().row(0, named=True)
        assert (row["alias"], row["status"], row["reason"]) == ("short", "expired", "ttl of 0.5s reached")
        assert inv.remove("short") == ["short"]  # the agent answers not found: no error
        assert inv.probes().row(0, named=True)["status"] == "removed"
        assert record.final == {}  # nothing the agent could give back
    finally:
        inv.close()
        agent.close()
