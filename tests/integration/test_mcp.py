"""`probebook mcp` from a real MCP client (the official SDK's `Client`), over stdio and over streamable HTTP,
against a real service under `probebook agent run`: list the tools, place a snapshot, wait for it, query
it, conclude through the proof gate, remove it; a wrong token refused; a hostile expression refused with
the agent's own error; every call in the audit log under the client's name; probes gone when it leaves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from support import end_process, wait_for

from probebook.agent.control.audit import verify
from probebook.agent.expr.expressions import compile_expression
from probebook.protocol.kinds import Status
from probebook.errors import ExpressionError
from test_agent_run_support import ALICE, Service, service  # noqa: F401

import anyio  # noqa: E402
import mcp_types  # noqa: E402
from mcp.client import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402

from probebook.assistant.model import VERDICT_KINDS  # noqa: E402
from probebook.assistant.tool_specs import SPECS  # noqa: E402

CLIENT = mcp_types.Implementation(name="test-client", version="1.0")
HOSTILE = "().__class__.__bases__[0].__subclasses__()"


def _sources(svc: Service, tmp_path) -> list:
    tokens = tmp_path / "agent-tokens"
    tokens.write_text(f"alice:{ALICE}\n")
    return ["--connect", f"shop={svc.url}", "--token-file", str(tokens), "--audit", str(tmp_path / "mcp-audit.log")]


def _live(svc: Service) -> list:
    """The agent's probes that still run (an expired one stays listed, with its status, for a while)."""
    return [p["id"] for p in svc.ok("GET", "/v1/probes")["probes"] if not Status(p["status"]).ended]


def _answer(result) -> dict:
    return json.loads(result.content[0].text)


def _traffic(svc: Service, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            svc.app("/work?n=2")
            stop.wait(0.05)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


async def _session(client: Client, svc: Service, ttl: str = "5m") -> dict:
    """The walk every transport must serve; what it saw, for the test's assertions."""
    seen: dict = {}
    tools = {t.name: t for t in (await client.list_tools()).tools}
    seen["tools"] = tools
    seen["services"] = _answer(await client.call_tool("services", {}))
    hostile = await client.call_tool("place_probe", {"service": "shop", "kind": "snapshot", "where": svc.where(),
                                                     "when": HOSTILE})
    seen["hostile"] = (hostile.is_error, _answer(hostile))
    placed = _answer(await client.call_tool("place_probe", {"service": "shop", "kind": "snapshot",
                                                            "where": svc.where(), "capture": ["i"],
                                                            "ttl": ttl}))
    probe = placed["data"]["probe"]
    stop = threading.Event()
    t = _traffic(svc, stop)
    try:
        seen["events"] = _answer(await client.call_tool("wait_events", {"probe": probe, "count": 2, "timeout": 30}))
    finally:
        stop.set()
        t.join()
    seen["sql"] = _answer(await client.call_tool("sql", {"query": "SELECT evidence_id, function FROM snapshots"}))
    evidence = seen["events"]["evidence"][:2]
    seen["forged"] = _answer(await client.call_tool("conclude", {
        "kind": "proven", "service": "shop", "locus": "target.py:work", "cause": "forged",
        "predicate": {"capture": "i", "op": ">", "value": 10 ** 9}, "evidence": evidence}))
    seen["proven"] = _answer(await client.call_tool("conclude", {
        "kind": "proven", "service": "shop", "locus": "target.py:work", "cause": "i is never negative",
        "predicate": {"capture": "i", "op": ">=", "value": 0}, "evidence": evidence}))
    seen["investigate"] = _answer(await client.call_tool("investigate", {"text": "the work route is slow",
                                                                         "budget_s": 5}))
    seen["bad_args"] = await client.call_tool("place_probe", {"service": "shop"})
    resources = [str(r.uri) for r in (await client.list_resources()).resources]
    seen["resources"] = resources
    verdict_uri = f"probebook://verdicts/{seen['proven']['data']['id']}"
    seen["verdict"] = json.loads((await client.read_resource(verdict_uri)).contents[0].text)
    seen["table"] = json.loads((await client.read_resource("probebook://tables/snapshots")).contents[0].text)
    seen["live_before_leaving"] = _live(svc)
    return seen


def _check(seen: dict, svc: Service) -> None:
    tools = seen["tools"]
    for spec in SPECS:  # the assistant's tools, with the same schemas
        assert tools[spec["name"]].input_schema == spec["parameters"], spec["name"]
    assert {"conclude", "record_hypothesis", "investigate", "session"} <= set(tools)
    assert [r["service"] for r in seen["services"]["data"]] == ["shop"]
    is_error, hostile = seen["hostile"]
    with pytest.raises(ExpressionError) as refused:  # what the agent says to any client
        compile_expression(HOSTILE)
    assert is_error and str(refused.value)[:80] in hostile["error"], hostile
    assert len(seen["events"]["evidence"]) >= 2, seen["events"]
    assert seen["sql"]["data"] and {r["function"] for r in seen["sql"]["data"]} == {"work"}
    assert seen["forged"]["data"]["kind"] != "proven" and seen["forged"]["summary"].startswith("refused"), seen["forged"]
    assert seen["proven"]["data"]["kind"] == "proven", seen["proven"]
    assert seen["investigate"]["data"]["kind"] in VERDICT_KINDS and seen["investigate"]["data"]["id"], seen["investigate"]
    assert seen["bad_args"].is_error and "bad arguments for place_probe" in seen["bad_args"].content[0].text
    assert "probebook://tables/snapshots" in seen["resources"]
    assert seen["verdict"]["kind"] == "proven" and seen["verdict"]["evidence"]
    assert seen["table"]["rows"] and seen["table"]["table"] == "snapshots"
    assert len(seen["live_before_leaving"]) == 1


def _audit(tmp_path) -> list:
    path = str(tmp_path / "mcp-audit.log")
    assert verify(path).ok
    with open(path) as fh:
        entries = [json.loads(line) for line in fh if line.strip()]
    assert entries[0]["action"] == "mcp.start" and entries[0]["who"] == "mcp"  # written before any call
    return entries[1:]


def test_a_client_over_stdio_probes_queries_and_concludes_through_the_gate(service, tmp_path):  # noqa: F811
    params = StdioServerParameters(command=sys.executable, args=["-m", "probebook.cli", "mcp", "--stdio",
                                                                 *_sources(service, tmp_path)],
                                   env=dict(os.environ), cwd=str(tmp_path))

    async def run() -> dict:
        async with Client(params, mode="legacy", client_info=CLIENT) as client:
            return await _session(client, service)

    seen = anyio.run(run)
    _check(seen, service)
    # the client left (stdin closed): the probe it left live is removed
    wait_for(lambda: _live(service) == [], timeout=20, what="the probe to be removed")
    entries = _audit(tmp_path)
    assert {e["who"] for e in entries} == {"mcp:test-client/1.0"}
    actions = [e["action"] for e in entries]
    assert actions[:3] == ["mcp.services", "mcp.place_probe", "mcp.place_probe"], actions
    assert "mcp.conclude" in actions and actions[-1] == "mcp.session_end"
    assert entries[1]["result"].startswith("error:") and entries[-1]["result"] == "removed 1 live probes"
    assert entries[-2]["action"] == "mcp.place_probe" and "bad arguments" in entries[-2]["result"]


@pytest.fixture
def http_server(service, tmp_path):  # noqa: F811
    clients = tmp_path / "mcp-clients"
    clients.write_text("carol:carol-mcp-secret-0001\n")
    proc = subprocess.Popen([sys.executable, "-m", "probebook.cli", "mcp", "--http", "127.0.0.1:0", "--clients-file",
                             str(clients), *_sources(service, tmp_path)], cwd=str(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
    threading.Thread(target=read, daemon=True).start()
    try:
        url = wait_for(lambda: next((m.group(1) for m in map(re.compile(r"serving (http://\S+/mcp)").search, lines)
                                     if m), None) or (proc.poll() is not None and "exited"),
                       timeout=30, what="probebook mcp to listen")
        assert url != "exited", "".join(lines)
        yield url, proc
    finally:
        end_process(proc)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_a_client_over_http_with_its_token_gets_the_same_tools_and_a_wrong_token_gets_401(
        http_server, service, tmp_path, mode):  # noqa: F811
    """`legacy`: the handshake protocol, whose session end removes the probe; `auto` picks 2026-07-28, which
    has no sessions: the probe's TTL removes it."""
    url, _ = http_server

    async def run() -> dict:
        http = create_mcp_http_client(headers={"Authorization": "Bearer carol-mcp-secret-0001"})
        async with http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode,
                              client_info=CLIENT) as client:
                return await _session(client, service, ttl="5m" if mode == "legacy" else "3s")

    seen = anyio.run(run)
    _check(seen, service)
    wait_for(lambda: _live(service) == [], timeout=20, what="the probe to be removed")
    for token in ("wrong-token", None):
        req = urllib.request.Request(url, data=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json, text/event-stream",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 401
    if mode == "legacy":  # the session's end is written once its probes are gone
        entries = wait_for(lambda: [e for e in [_audit(tmp_path)] if e[-1]["action"] == "mcp.session_end"],
                           timeout=10, what="the session's end in the audit log")[0]
    else:
        entries = _audit(tmp_path)
        assert "mcp.session_end" not in [e["action"] for e in entries]
    assert {e["who"] for e in entries} == {"mcp:test-client/1.0 token:carol"}
    assert [e["action"] for e in entries].count("mcp.place_probe") == 3


@pytest.mark.parametrize("args, said", [
    (["--http", "127.0.0.1:x", "--lab"], "--http '127.0.0.1:x': write HOST:PORT"),
    (["--http", "127.0.0.1:0", "--lab"], "--http needs --clients-file FILE"),
    (["--stdio"], "nothing to investigate: give --lab, or --connect NAME=TARGET"),
    (["--stdio", "--connect", "shop"], "--connect 'shop': write NAME=TARGET"),
])
def test_bad_usage_is_one_line_that_says_what_to_write(args, said):
    done = subprocess.run([sys.executable, "-m", "probebook.cli", "mcp", *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert said in lines[-1] and lines[-1].startswith("probebook mcp: error:"), done.stderr


def test_a_clients_file_that_cannot_be_read_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "probebook.cli", "mcp", "--http", "127.0.0.1:0", "--clients-file",
                           str(tmp_path / "missing"), "--lab"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("probebook mcp: error: token file") and len(done.stderr.splitlines()) == 1
