"""The MCP server's core without the protocol, on a service in this process: each client session has its
own incident and probes, a session's end removes only its own probes, a conclusion passes the gate, and
every call (refused ones too) is an audit line under the caller's name."""

import json
import os
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import tinyshop  # noqa: E402

from probebook.agent import Agent  # noqa: E402
from probebook.agent.control.audit import verify  # noqa: E402
from probebook.errors import ProbebookError  # noqa: E402
from probebook.mcp import Bridge, Caller  # noqa: E402
from probebook.session import Investigation  # noqa: E402

WHERE = f"{tinyshop.__file__}:{tinyshop.final_amount.__code__.co_firstlineno + 1}"
ANN, BOB = Caller("s-ann", "editor/1.0"), Caller("s-bob", "chat/2.0", token="bob")


@pytest.fixture()
def bridge(tmp_path):
    agent = Agent()
    inv = Investigation()
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "agent-audit.jsonl"))
    b = Bridge(inv, str(tmp_path / "mcp-audit.log"))
    yield b
    b.close()
    inv.close()


def call(bridge, caller, name, **args):
    text, failed = bridge.call(caller, name, args)
    return json.loads(text), failed


def test_sessions_are_apart_and_a_session_end_removes_only_its_own_probes(bridge, tmp_path):
    ann, _ = call(bridge, ANN, "place_probe", service="tinyshop", kind="snapshot", where=WHERE, capture=["discount"])
    bob, _ = call(bridge, BOB, "place_probe", service="tinyshop", kind="snapshot", where=WHERE, capture=["subtotal"])
    s_ann, _ = call(bridge, ANN, "session")
    s_bob, _ = call(bridge, BOB, "session")
    assert s_ann["data"]["incident"] != s_bob["data"]["incident"]
    assert s_ann["data"]["live_probes"] == [ann["data"]["probe"]] and s_bob["data"]["live_probes"] == [bob["data"]["probe"]]
    # Bob's client cannot remove what Ann's placed: it is not his investigation's probe
    refused, failed = call(bridge, BOB, "remove_probe", probe=ann["data"]["probe"])
    assert failed and refused["error"] == (f"remove_probe: {ann['data']['probe']!r} was not placed here; yours: "
                                           f"{bob['data']['probe']}")
    assert bridge.end_session("s-ann") == 1
    s_bob, _ = call(bridge, BOB, "session")
    assert s_bob["data"]["live_probes"] == [bob["data"]["probe"]]
    entries = [json.loads(line) for line in open(tmp_path / "mcp-audit.log")][1:]  # after mcp.start
    assert verify(str(tmp_path / "mcp-audit.log")).ok
    assert [(e["who"], e["action"]) for e in entries][:2] == [("mcp:editor/1.0", "mcp.place_probe"),
                                                           ("mcp:chat/2.0 token:bob", "mcp.place_probe")]
    assert ("mcp:editor/1.0", "mcp.session_end") in [(e["who"], e["action"]) for e in entries]


def test_a_conclusion_passes_the_gate_and_refused_calls_are_audited_too(bridge, tmp_path):
    placed, _ = call(bridge, ANN, "place_probe", service="tinyshop", kind="snapshot", where=WHERE,
                     capture=["discount"])
    api, stop, t = tinyshop.start()
    try:
        events, _ = call(bridge, ANN, "wait_events", probe=placed["data"]["probe"], count=3, timeout=30)
    finally:
        stop.set()
        t.join()
    assert len(events["evidence"]) >= 3
    locus = "tinyshop.py:final_amount"
    forged, _ = call(bridge, ANN, "conclude", kind="proven", service="tinyshop", locus=locus, cause="x",
                     predicate={"capture": "discount", "op": ">", "value": 10 ** 6}, evidence=events["evidence"])
    assert forged["data"]["kind"] != "proven" and forged["summary"].startswith("refused")
    bad, failed = call(bridge, ANN, "place_probe", service="tinyshop")
    assert failed and bad["error"].startswith("bad arguments for place_probe: 'kind' is a required property")
    unknown, failed = call(bridge, ANN, "drop_tables")
    assert failed and "unknown tool 'drop_tables'" in unknown["error"]
    hyp, _ = call(bridge, ANN, "record_hypothesis", statement="a coupon is a whole percent", service="tinyshop",
                  locus=locus, status="supported")
    again, _ = call(bridge, ANN, "record_hypothesis", statement="a coupon is a whole percent", service="tinyshop",
                    status="refuted")
    assert hyp["data"]["id"] == again["data"]["id"]  # the same statement updates its hypothesis
    proven_by_client, failed = call(bridge, ANN, "record_hypothesis", statement="s", service="tinyshop",
                                    status="proven")
    assert failed
    actions = [json.loads(line)["action"] for line in open(tmp_path / "mcp-audit.log")][1:]
    assert actions.count("mcp.place_probe") == 2 and "mcp.drop_tables" in actions
    results = [json.loads(line)["result"] for line in open(tmp_path / "mcp-audit.log")][1:]
    assert sum(r.startswith("error:") for r in results) == 3


def test_resources_are_the_tables_and_the_verdicts(bridge):
    call(bridge, ANN, "conclude", kind="inconclusive", service="tinyshop", cause="not enough seen")
    uris = [r["uri"] for r in bridge.resources()]
    assert "probebook://tables/snapshots" in uris
    verdict = next(u for u in uris if u.startswith("probebook://verdicts/"))
    assert json.loads(bridge.read(verdict))["kind"] == "inconclusive"
    assert json.loads(bridge.read("probebook://tables/snapshots"))["rows"] == []
    with pytest.raises(LookupError, match="no resource 'probebook://tables/secrets'"):
        bridge.read("probebook://tables/secrets")


def test_calls_from_two_threads_are_served_one_at_a_time(bridge):
    errors = []

    def run(caller):
        for _ in range(20):
            answer, failed = call(bridge, caller, "sql", query="SELECT count(*) AS n FROM snapshots")
            if failed:
                errors.append(answer)
    threads = [threading.Thread(target=run, args=(c,)) for c in (ANN, BOB)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_nothing_is_served_unaudited(tmp_path):
    inv = Investigation()
    try:
        (tmp_path / "a-file").write_text("")
        with pytest.raises(ProbebookError, match="not writable.*does not serve calls it cannot audit"):
            Bridge(inv, str(tmp_path / "a-file" / "audit.log"))
        folder = tmp_path / "audit"
        folder.mkdir()
        bridge = Bridge(inv, str(folder / "mcp-audit.log"))
        os.rename(folder / "mcp-audit.log", folder / "moved.log")  # the log stops being writable
        os.mkdir(folder / "mcp-audit.log")
        answer, failed = call(bridge, ANN, "services")
        if not failed:  # the call ran before the failure was known; the next is refused
            answer, failed = call(bridge, ANN, "services")
        assert failed and "calls are refused until it can be written" in answer["error"]
    finally:
        inv.close()


def test_under_the_sessionless_protocol_a_client_is_its_token_not_a_header_it_sends():
    from probebook.mcp.server import _caller

    class Ctx:
        protocol_version = "2026-07-28"

        class session:
            client_params = None

        class request:
            headers = {"mcp-session-id": "alice:claude/1"}
            scope = {"user": type("U", (), {"access_token": type("T", (), {"client_id": "bob"})()})()}

    caller = _caller(Ctx())
    assert caller.token == "bob" and caller.session.startswith("bob:") and "alice" not in caller.session
