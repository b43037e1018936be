"""`ControlAPI.handle`: the one dispatcher both transports use; answers, errors and audit entries."""

from __future__ import annotations

import inspect
import json

import pytest

from probebook.agent import Agent
from probebook.agent.control.audit import AuditLog, verify
from probebook.agent.control.control import MUTATING_OPS, OPS, ControlAPI


def checkout(total, card_number="4111 1111 1111 1111"):
    fee = total * 0.03  # at:checkout
    return total + fee


ORIGINAL = checkout.__code__


def _where() -> str:
    lines, start = inspect.getsourcelines(checkout)
    return f"control/test_control_api.py:{start + next(i for i, l in enumerate(lines) if 'at:checkout' in l)}"


@pytest.fixture
def api(tmp_path):
    agent = Agent()
    control = ControlAPI(agent, AuditLog(str(tmp_path / "audit.jsonl")), "shop", "shop-1")
    yield control
    agent.close()


def _audit(api):
    with open(api.audit.path) as fh:
        return [json.loads(line) for line in fh]


def test_add_list_read_remove_and_audit(api):
    status, body = api.handle("add_probe", {"kind": "log", "where": _where(), "template": "t={total}"}, "alice")
    assert status == 201 and body["probe"]["status"] == "installed"
    pid = body["probe"]["id"]
    checkout(10)
    status, body = api.handle("read_events", {"after": "0", "limit": "100"}, "alice")
    assert status == 200 and [e["message"] for e in body["events"] if e["kind"] == "log"] == ["t=10"]
    assert body["instance_id"] == "shop-1" and body["missed"] == 0
    assert [p["id"] for p in api.handle("list_probes", {}, "alice")[1]["probes"]] == [pid]
    assert api.handle("remove_probe", {"id": pid}, "bob")[1]["probe"]["status"] == "removed"
    assert checkout.__code__ is ORIGINAL
    entries = _audit(api)
    assert [(e["who"], e["action"], e["result"]) for e in entries] == [("alice", "add_probe", "ok"),
                                                                        ("alice", "read_events", "ok"),
                                                                        ("bob", "remove_probe", "ok")]
    assert entries[0]["target"] == f"{pid} at {_where()}: kind='log'; template='t={{total}}'"  # what it reads
    assert entries[1]["target"].endswith("events in 1 reads over 0 s")  # a reader's first read at once, then a line a minute
    assert verify(api.audit.path).ok


@pytest.mark.parametrize("op, args, status, field", [
    ("add_probe", {"kind": "log", "where": "x.py:1", "template": "t", "colour": 1}, 400, "colour"),
    ("add_probe", {"kind": "log", "where": "x.py:1", "template": "{__import__('os')}"}, 400, "template"),
    ("add_probe", [1, 2], 400, None),
    ("remove_probe", {"id": "nope"}, 404, None),
    ("remove_probe", {}, 400, "id"),
    ("remove_probe", {"id": "p1", "force": True}, 400, "force"),
    ("remove_all", {"now": 1}, 400, "now"),
    ("read_events", {"limit": 10001}, 400, "limit"),
    ("read_events", {"timeout": 30.5}, 400, "timeout"),
    ("read_events", {"after": -1}, 400, "after"),
    ("read_events", {"after": True}, 400, "after"),
    ("set_limits", {"event_capacity": "many"}, 400, "event_capacity"),
    ("set_limits", {"max_ttl": 10 ** 12}, 400, "max_ttl"),  # every limit has a ceiling
    ("set_limits", {"cpu_budget": 0.9}, 400, "cpu_budget"),
    ("add_probe", {"kind": "log", "where": "x.py:1", "template": "t", "rate": 10 ** 9}, 400, "rate"),  # so has a
    ("add_probe", {"kind": "snapshot", "where": "x.py:1", "rate": float("inf")}, 400, "rate"),  # probe's rate
    ("add_probe", {"kind": "snapshot", "where": "x.py:3", "limits": {"max_bytes": 10 ** 9}}, 400, "limits.max_bytes"),
    ("add_probe", {"kind": "snapshot", "where": "x.py:3", "limits": {"max_items": 10 ** 6}}, 400, "limits.max_items"),
    ("read_source", {"path": "/etc/passwd\x00.py"}, 400, "path"),
    ("set_redaction", {"enabled": "yes"}, 400, "redaction.enabled"),
    ("read_source", {"path": "/etc/passwd"}, 400, "path"),
    ("read_source", {"path": "not/loaded/anywhere.py"}, 404, None),
    ("fly", {}, 400, "op"),
])
def test_bad_requests_are_one_line_4xx_with_the_field(api, op, args, status, field):
    got, body = api.handle(op, args, "alice")
    assert got == status, body
    assert "\n" not in body["error"] and body["error"]
    assert body.get("field") == field if field else True
    if op in MUTATING_OPS:
        assert _audit(api)[-1]["result"].startswith(str(status))


def test_every_op_answers_and_mutations_and_reads_of_captured_data_are_audited(api):
    args = {"add_probe": {"kind": "log", "where": _where(), "template": "t", "id": "a1"},
            "remove_probe": {"id": "a1"}, "get_probe": {"id": "a1"},
            "read_source": {"path": "control/test_control_api.py", "start": 1, "end": 2}}
    order = ["add_probe", "get_probe", "remove_probe"] + [op for op in OPS if op not in
                                                          ("add_probe", "get_probe", "remove_probe")]
    for op in order:
        status, body = api.handle(op, dict(args.get(op, {})), "alice")
        assert status < 300, (op, body)
    # events and source carry what the service holds: who read them is recorded too
    assert [e["action"] for e in _audit(api)] == [op for op in order if op in MUTATING_OPS
                                                  or op in ("read_events", "read_source")]


def test_health_reports_components_and_turns_unhealthy(api):
    health = api.handle("health", {}, "alice")[1]
    assert health["status"] == "ok" and health["service"] == "shop" and health["instance_id"] == "shop-1"
    api.add_health_check("http", lambda: {"ok": False, "error": "cannot listen on 127.0.0.1:80"})
    health = api.handle("health", {}, "alice")[1]
    assert health["status"] == "unhealthy" and health["problems"] == ["http: cannot listen on 127.0.0.1:80"]

    def broken():
        raise RuntimeError("boom")

    api.add_health_check("http", broken)
    assert "boom" in api.handle("health", {}, "alice")[1]["problems"][0]


def test_without_an_audit_log_probes_are_refused_but_removal_still_works(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    agent = Agent()
    try:
        api = ControlAPI(agent, AuditLog(str(blocker / "audit.jsonl")), "shop", "shop-1")
        api.audit_event("anonymous@127.0.0.1", "auth_failed", "GET /v1/health", "401 missing token")
        status, body = api.handle("add_probe", {"kind": "log", "where": _where(), "template": "t"}, "alice")
        assert status == 503 and "not writable" in body["error"]
        assert api.handle("remove_all", {}, "alice") == (200, {"removed": 0})
        assert api.handle("health", {}, "alice")[1]["status"] == "unhealthy"
    finally:
        agent.close()


def test_an_internal_failure_is_a_500_never_an_exception(api, monkeypatch):
    def explode():
        raise TypeError("surprise")

    monkeypatch.setattr(api.agent, "probes", explode)
    status, body = api.handle("list_probes", {}, "alice")
    assert status == 500 and "TypeError: surprise" in body["error"] and "unaffected" in body["error"]
