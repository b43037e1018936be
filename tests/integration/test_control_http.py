"""The agent's HTTP control API against a real service started with `probebook agent run`."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

from support import wait_for

from probebook.lab.procs import free_port
from test_agent_run_support import ALICE, TOKENS, Service, request, service  # noqa: F401


def _log_probe(svc, **extra):
    spec = {"kind": "log", "where": svc.where(), "template": "i={i}", **extra}
    status, body = svc.call("POST", "/v1/probes", spec)
    assert status == 201, body
    return body["probe"]


def _events(svc, kind, after=0):
    body = svc.ok("GET", f"/v1/events?after={after}&limit=10000")
    return [e for e in body["events"] if e["kind"] == kind], body


def test_health_names_the_service_and_instance(service):
    health = service.ok("GET", "/v1/health")
    assert health["status"] == "ok"
    assert health["service"] == "shop" and health["instance_id"] == service.info["instance_id"]
    assert health["pid"] == service.app("/original")["pid"] == service.proc.pid  # exec kept the pid
    for key in ("python", "uptime_s", "probes", "active_probes", "dropped_events", "cpu_budget_used", "backend",
                "version"):
        assert key in health


def test_probe_lifecycle_over_http_restores_the_code(service):
    probe = _log_probe(service)
    assert probe["status"] == "installed" and probe["location"].endswith("(work)")
    assert [p["id"] for p in service.ok("GET", "/v1/probes")["probes"]] == [probe["id"]]
    service.app("/work?n=3")
    logs, _ = _events(service, "log")
    assert [e["message"] for e in logs] == ["i=0", "i=1", "i=2"]
    assert service.ok("GET", f"/v1/probes/{probe['id']}")["probe"]["hits"] == 3
    removed = service.ok("DELETE", f"/v1/probes/{probe['id']}")["probe"]
    assert removed["status"] == "removed"
    assert service.app("/original") == {"original": True, "result": 7, "pid": service.proc.pid}
    status, body = service.call("DELETE", f"/v1/probes/{probe['id']}")
    assert status == 404 and "no probe" in body["error"]
    _log_probe(service)
    _log_probe(service, template="again {i}")
    assert service.ok("DELETE", "/v1/probes") == {"removed": 2}
    assert service.app("/original")["original"] is True


def test_long_poll_returns_when_an_event_arrives_and_reading_resumes_without_loss(service):
    _log_probe(service, rate=1000)
    start = service.ok("GET", "/v1/events")["next"]
    # with nothing to read it holds the request for its whole timeout (a lower bound: no race), then answers empty
    t0 = time.monotonic()
    assert service.ok("GET", f"/v1/events?after={start}&timeout=1")["events"] == []
    assert time.monotonic() - t0 >= 0.9
    got = {}

    def poll():
        got["answer"] = service.ok("GET", f"/v1/events?after={start}&timeout=20")

    waiter = threading.Thread(target=poll)
    assert service.ok("GET", "/v1/health")["polls_waiting"] == 0
    waiter.start()
    # the request is seen parked in the agent before the event is made: the event, not a late send, ends it
    wait_for(lambda: service.ok("GET", "/v1/health")["polls_waiting"] == 1, timeout=10, what="the poll to park")
    service.app("/work?n=1")
    waiter.join(15)  # well before its own 20 s: the event ended the wait
    assert not waiter.is_alive()
    assert service.ok("GET", "/v1/health")["polls_waiting"] == 0
    assert any(e["kind"] == "log" for e in got["answer"]["events"])
    service.app("/work?n=20")
    seqs, after = [], start
    while True:  # small pages, as a client reconnecting after each one would read
        page = service.ok("GET", f"/v1/events?after={after}&limit=3")
        if not page["events"]:
            break
        seqs += [e["seq"] for e in page["events"]]
        after = page["next"]
    assert seqs == list(range(start + 1, after + 1)) and len(seqs) >= 10  # contiguous: none lost, none twice
    status, body = service.call("GET", "/v1/events?timeout=31")
    assert status == 400 and body["field"] == "timeout"


def test_buffer_overflow_is_reported_as_missed_and_dropped(service):
    assert service.ok("PUT", "/v1/config/limits", {"event_capacity": 50})["limits"]["event_capacity"] == 50
    _log_probe(service, rate=10000)
    service.app("/work?n=300")
    body = service.ok("GET", "/v1/events?after=0")
    assert len(body["events"]) == 50
    assert body["missed"] >= 250 and body["dropped_total"] >= 250
    assert service.ok("GET", "/v1/health")["dropped_events"] >= 250


def test_probes_expire_by_ttl_after_the_client_disappears(service):
    client = subprocess.Popen([sys.executable, "-c", (
        "import sys, json, urllib.request\n"
        "req = urllib.request.Request(sys.argv[1] + '/v1/probes', method='POST', data=json.dumps("
        "{'kind': 'log', 'where': sys.argv[2], 'template': 'i={i}', 'ttl': '1s', 'id': 'orphan'}).encode(),"
        " headers={'Authorization': 'Bearer ' + sys.argv[3]})\n"
        "print(urllib.request.urlopen(req).status, flush=True)\n"
        "import time; time.sleep(60)\n"), service.url, service.where(), ALICE], stdout=subprocess.PIPE)
    try:
        assert client.stdout.readline().strip() == b"201"
    finally:
        client.kill()  # the notebook crashed: nobody will remove the probe
        client.wait(5)
        client.stdout.close()
    service.app("/work?n=2")
    assert service.app("/original")["original"] is False  # a third hit: work(3)
    info = wait_for(lambda: (lambda p: p if p["status"] == "expired" else None)(
        service.ok("GET", "/v1/probes/orphan")["probe"]), timeout=10, what="the probe to expire")
    assert "ttl" in info["reason"]
    assert service.app("/original")["original"] is True
    before = len(_events(service, "log")[0])
    service.app("/work?n=5")
    assert len(_events(service, "log")[0]) == before == 3


def test_bad_input_gets_a_one_line_4xx_and_the_agent_stays_healthy(service):
    cases = [
        ("POST", "/v1/probes", b"{not json", 400, None),
        ("POST", "/v1/probes", b"[1, 2]", 400, None),
        ("POST", "/v1/probes", json.dumps({"kind": "log", "where": "target.py:8", "template": "x",
                                           "colour": "red"}).encode(), 400, "colour"),
        ("POST", "/v1/probes", json.dumps({"kind": "log", "where": "target.py:8"}).encode(), 400, "template"),
        ("POST", "/v1/probes", json.dumps({"kind": "log", "where": "nowhere.py:3", "template": "x",
                                           "when": "__import__('os')"}).encode(), 400, "when"),
        ("PUT", "/v1/config/limits", json.dumps({"cpu_budget": -1}).encode(), 400, "cpu_budget"),
        ("PUT", "/v1/config/limits", json.dumps({"speed": 3}).encode(), 400, "speed"),
        ("PUT", "/v1/config/redaction", json.dumps({"add_identifiers": "order_id"}).encode(), 400, None),
        ("PUT", "/v1/config/redaction", json.dumps({"colour": 1}).encode(), 400, "colour"),
        ("GET", "/v1/events?limit=0", None, 400, "limit"),
        ("GET", "/v1/events?after=banana", None, 400, "after"),
        ("GET", "/v1/events?since=3", None, 400, "since"),
        ("GET", "/v1/nothing", None, 404, None),
        ("PATCH", "/v1/probes", None, 405, None),
        ("DELETE", "/v1/health", None, 405, None),
    ]
    for method, path, raw, want, field in cases:
        status, body = service.call(method, path, raw=raw)
        assert status == want, (method, path, body)
        assert isinstance(body["error"], str) and "\n" not in body["error"] and body["error"]
        if field:
            assert body.get("field") == field, (path, body)
    # a body over 1 MiB is refused unread
    conn = http.client.HTTPConnection("127.0.0.1", int(service.url.rsplit(":", 1)[1]), timeout=10)
    conn.putrequest("POST", "/v1/probes")
    conn.putheader("Authorization", f"Bearer {ALICE}")
    conn.putheader("Content-Length", str(2 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"x" * 65536)
    resp = conn.getresponse()
    assert resp.status == 413 and "1 MiB" in json.loads(resp.read())["error"]
    conn.close()
    status, body = service.call("POST", "/v1/probes", raw=b" " * (1024 * 1024 + 1))
    assert status == 413
    status, body = service.call("POST", "/v1/probes", raw=b"[" * 100_000 + b"]" * 100_000)  # answered, not dropped
    assert status == 400 and "nests too deep" in body["error"]
    health = service.ok("GET", "/v1/health")
    assert health["status"] == "ok" and health["probes"] == 0


def test_slow_clients_get_408_and_do_not_block_others(tmp_path):
    svc = Service.start(tmp_path, env={"PROBEBOOK_READ_TIMEOUT": "1"})
    try:
        host, port = "127.0.0.1", int(svc.url.rsplit(":", 1)[1])
        slow = [socket.create_connection((host, port), timeout=10) for _ in range(3)]
        slow[0].sendall(b"GET /v1/hea")  # a request line that never ends
        slow[1].sendall(f"PUT /v1/config/limits HTTP/1.1\r\nAuthorization: Bearer {ALICE}\r\n"
                        f"Content-Length: 40\r\n\r\n{{\"cpu_".encode())  # a body that never ends
        # slow[2] sends nothing at all; idle has one answered request, then keeps the connection idle
        idle = socket.create_connection((host, port), timeout=10)
        idle.sendall(f"GET /v1/health HTTP/1.1\r\nAuthorization: Bearer {ALICE}\r\n\r\n".encode())
        assert svc.ok("GET", "/v1/health")["status"] == "ok"  # others are served meanwhile
        for sock in slow:
            data = _read_to_end(sock)
            assert data.startswith(b"HTTP/1.1 408"), data[:80]
            assert b"send the whole request" in data
        answered = _read_to_end(idle)
        assert answered.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" not in answered  # closed quietly when idle
        assert svc.ok("GET", "/v1/health")["status"] == "ok"
    finally:
        svc.stop()


def _read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            sock.close()
            return data
        data += chunk


def test_missing_or_wrong_tokens_get_401_then_429_and_are_audited_and_the_right_token_is_always_served(service):
    status, body = service.call("GET", "/v1/health", token=None)
    assert status == 401 and "missing token" in body["error"]
    status, body = service.call("GET", "/v1/probes", token="alice-secret-token-0000")
    assert status == 401 and "wrong token" in body["error"]
    status, body = service.call("POST", "/v1/probes", {"kind": "log", "where": service.where(), "template": "x"},
                                token=TOKENS["bob"])
    assert status == 201
    entries = service.audit_entries()
    failed = [e for e in entries if e["action"] == "auth_failed"]
    assert len(failed) == 2 and failed[0]["who"] == "anonymous@127.0.0.1" and "401" in failed[0]["result"]
    added = [e for e in entries if e["action"] == "add_probe"]
    assert added[-1]["who"] == "bob" and added[-1]["result"] == "ok"
    assert "template='x'" in added[-1]["target"]  # what the probe evaluates leaves a trace
    for _ in range(8):  # with the two above, ten failures from this address lock its wrong tokens out
        assert service.call("GET", "/v1/health", token="guess-guess-guess")[0] == 401
    status, body = service.call("GET", "/v1/health", token="guess-guess-guess")
    assert status == 429 and "retry in" in body["error"]
    # every local process shares 127.0.0.1: the right token is served all the same, nobody locks alice out
    assert service.call("GET", "/v1/health", token=ALICE)[0] == 200
    assert any(e["action"] == "auth_failed" and e["result"].startswith("429") for e in service.audit_entries())
    proc = subprocess.run([sys.executable, "-m", "probebook.cli", "audit", "verify", service.audit],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tls_with_a_self_signed_certificate(tmp_path):
    import ssl

    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(cafile=cert)
    svc = Service.start(tmp_path, "--tls-cert", cert, "--tls-key", key, ssl_context=ctx)
    try:
        assert svc.url.startswith("https://127.0.0.1:")
        health = svc.ok("GET", "/v1/health")
        assert health["status"] == "ok" and health["components"]["http"]["tls"] is True
        assert svc.call("GET", "/v1/health", token="wrong-token-123")[0] == 401
        plain = svc.url.replace("https://", "http://")
        try:
            request(plain, "GET", "/v1/health", timeout=5)
            raise AssertionError("plain HTTP was answered on the TLS port")
        except (OSError, http.client.HTTPException):
            pass
        untrusted = ssl.create_default_context()  # does not know our certificate
        try:
            request(svc.url, "GET", "/v1/health", timeout=5, ssl_context=untrusted)
            raise AssertionError("an unverified certificate was accepted")
        except ssl.SSLError:
            pass
        assert svc.ok("GET", "/v1/health")["status"] == "ok"
    finally:
        svc.stop()


def test_source_of_loaded_modules_with_hashes_and_nothing_else(service):
    modules = service.ok("GET", "/v1/source/modules")["modules"]
    main = next(m for m in modules if m["name"] == "__main__")
    with open(service.target, "rb") as fh:
        content = fh.read()
    assert main["file"] == service.target and main["sha256"] == hashlib.sha256(content).hexdigest()
    assert any(m["name"] == "json" for m in modules)
    src = service.ok("GET", "/v1/source/file?path=target.py&start=7&end=9")
    assert src["sha256"] == main["sha256"] and src["file"] == service.target
    assert src["lines"] == [[n, content.decode().splitlines()[n - 1]] for n in (7, 8, 9)]
    assert "# at:work" in src["lines"][1][1]
    with open(os.path.join(service.tmp, "secret_settings.py"), "w") as fh:
        fh.write("PASSWORD = 'hunter2'\n")  # on disk but never imported
    for path, want in (("secret_settings.py", 404), ("/etc/passwd", 400), ("../../etc/passwd", 400),
                       ("tokens", 400), ("nothing/here.py", 404), ("/etc/passwd%00.py", 400)):
        status, body = service.call("GET", f"/v1/source/file?path={path}")
        assert status == want, (path, body)
        assert "hunter2" not in json.dumps(body)
    reads = [e for e in service.audit_entries() if e["action"] == "read_source"]  # who read what, refused too
    assert reads[0]["target"].endswith("target.py lines 7-9") and reads[0]["result"] == "ok"
    assert len(reads) == 7 and reads[-1]["result"].startswith("400")
    service.ok("GET", "/v1/events")
    assert any(e["action"] == "read_events" and "reads" in e["target"] for e in service.audit_entries())


def test_redaction_changes_apply_to_the_next_capture(service):
    body = service.ok("PUT", "/v1/config/redaction", {"add_identifiers": ["order_id"]})
    assert "orderid" in body["redaction"]["identifiers"]
    snap = {"kind": "snapshot", "where": service.where(), "rate": 1000}
    assert service.call("POST", "/v1/probes", snap)[0] == 201
    service.app("/work?n=1")
    shot = wait_for(lambda: _events(service, "snapshot")[0], what="a snapshot")[0]
    assert shot["arguments"]["i"] == {"type": "int", "value": 0}
    assert "A-1" not in json.dumps(shot)  # order_id is redacted now
    service.ok("PUT", "/v1/config/redaction", {"remove_identifiers": ["order_id"]})
    service.app("/work?n=1")
    shots = wait_for(lambda: (lambda s: s if len(s) >= 2 else None)(_events(service, "snapshot")[0]),
                     what="a second snapshot")
    assert "A-1" in json.dumps(shots[1])
    actions = [(e["action"], e["who"], e["result"]) for e in service.audit_entries()]
    assert ("set_redaction", "alice", "ok") in actions


def test_server_thread_dies_the_service_keeps_serving_and_the_agent_restarts(service):
    service.app("/break")  # closes the agent's listening descriptor under it
    assert service.app("/work?n=2") == {"sum": 4}
    health = wait_for(lambda: _health_if_up(service), timeout=15, what="the agent to serve again")
    assert health["status"] == "ok"
    assert health["components"]["http"]["restarts"] >= 1
    assert "closed" in health["components"]["http"]["last_error"]
    assert service.call("POST", "/v1/probes", {"kind": "log", "where": service.where(), "template": "x"})[0] == 201


def test_server_that_cannot_restart_reports_unhealthy_then_recovers(tmp_path):
    port = free_port()
    svc = Service.start(tmp_path, "--port", str(port))
    try:
        assert svc.url.endswith(f":{port}")
        svc.app("/break?mode=squat")  # someone else takes the port before the agent can rebind
        assert svc.app("/work?n=1") == {"sum": 1}
        health = wait_for(lambda: (lambda h: h if "restart failed" in h["components"]["http"]["error"] else None)(
            svc.app("/agent-health")), timeout=10, what="the agent to fail to restart")
        assert health["status"] == "unhealthy"
        assert any(p.startswith("http:") and "in use" in p for p in health["problems"])
        svc.app("/unsquat")
        health = wait_for(lambda: _health_if_up(svc), timeout=15, what="the agent to serve again")
        assert health["status"] == "ok" and health["components"]["http"]["restarts"] >= 1
    finally:
        svc.stop()


def _health_if_up(svc):
    try:
        status, body = svc.call("GET", "/v1/health", timeout=2)
    except OSError:
        return None
    return body if status == 200 else None


def test_a_thousand_add_remove_cycles_under_load_fail_no_request_and_restore_the_code(service):
    failures, served = [], [0]
    stop = threading.Event()

    def load():
        conn = http.client.HTTPConnection("127.0.0.1", service.app_port, timeout=10)
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/work?n=3")
                resp = conn.getresponse()
                body = json.loads(resp.read())
                if resp.status != 200 or body != {"sum": 9}:
                    failures.append((resp.status, body))
                served[0] += 1
            except Exception as exc:  # noqa: BLE001 - any failure counts
                failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", service.app_port, timeout=10)
        conn.close()

    workers = [threading.Thread(target=load) for _ in range(3)]
    for w in workers:
        w.start()
    agent = http.client.HTTPConnection("127.0.0.1", int(service.url.rsplit(":", 1)[1]), timeout=10)
    headers = {"Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"}
    spec = json.dumps({"kind": "log", "where": service.where(), "template": "i={i}", "rate": 10}).encode()
    agent_failures = 0
    try:
        for _ in range(1000):
            agent.request("POST", "/v1/probes", body=spec, headers=headers)
            resp = agent.getresponse()
            body = json.loads(resp.read())
            agent_failures += resp.status != 201
            agent.request("DELETE", f"/v1/probes/{body['probe']['id']}", headers=headers)
            resp = agent.getresponse()
            agent_failures += resp.status != 200 or json.loads(resp.read())["probe"]["status"] != "removed"
    finally:
        stop.set()
        for w in workers:
            w.join(20)
        agent.close()
    assert agent_failures == 0
    assert failures == [] and served[0] > 0
    assert service.app("/original")["original"] is True
    assert service.ok("GET", "/v1/health")["active_probes"] == 0
