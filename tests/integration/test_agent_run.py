"""`probebook agent run` and `probebook.agent.start`: any program gets the agent, no code change."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from support import end_process, wait_for

from probebook.lab.procs import free_port
from test_agent_run_support import (  # noqa: F401
    ALICE,
    Service,
    agent_command,
    request,
    service,
    work_line,
)


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def _cli(*args, **kw):
    return _run([sys.executable, "-m", "probebook.cli", *args], **kw)


def _tokens(tmp_path) -> str:
    path = tmp_path / "tokens"
    path.write_text(f"alice:{ALICE}\n")
    return str(path)


def _read_json(path):
    with open(path) as fh:
        return json.load(fh)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_port_file_says_where_the_agent_of_the_exec_d_program_listens(service):
    info = service.info
    assert set(info) >= {"url", "pid", "instance_id", "service"}
    assert info["pid"] == service.proc.pid and info["service"] == "shop"
    assert info["url"].startswith("http://127.0.0.1:") and not info["url"].endswith(":0")
    assert request(info["url"], "GET", "/v1/health")[1]["instance_id"] == info["instance_id"]


def test_an_interpreter_without_bytecode_serves_and_refuses_each_probe_in_one_line(tmp_path):
    """`probebook agent run -- python app.py` where that python lacks `bytecode` (this venv's base
    interpreter): the agent says so at start and in health, and refuses a probe with the reason and
    the command that fixes it, instead of "500 internal error ... report this"."""
    base = getattr(sys, "_base_executable", "") or sys.executable
    probe_env = _run([base, "-c", "import importlib.util as u; print(u.find_spec('bytecode') is None)"])
    if sys.version_info >= (3, 12) or probe_env.stdout.strip() != "True":
        pytest.skip(f"{base} has bytecode (or needs none): nothing to refuse")
    svc = Service.start(tmp_path, python=base)
    try:
        health = svc.call("GET", "/v1/health")[1]
        assert health["status"] == "unhealthy" and "bytecode" in " ".join(health["problems"]), health
        status, body = svc.call("POST", "/v1/probes", {"kind": "log", "where": svc.where(), "template": "i={i}"})
        assert status == 503, body
        assert body["error"] == (f"probes need the 'bytecode' package on Python {health['python']}, and {base} "
                                 f"does not have it: {base} -m pip install 'bytecode>=0.16'"), body
        assert "internal error" not in body["error"]
    finally:
        svc.stop()


def test_python_dash_m_gets_the_agent_named_after_the_module(tmp_path):
    pkg = tmp_path / "billing"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "api.py").write_text("import os, time\nfor _ in range(600):\n    if os.path.exists('stop'):\n"
                                "        break\n    time.sleep(0.05)\n")
    port_file = tmp_path / "agent.json"
    proc = subprocess.Popen(agent_command("--token-file", _tokens(tmp_path), "--port-file", str(port_file),
                                          "--audit", str(tmp_path / "audit.jsonl"), "--",
                                          sys.executable, "-m", "billing.api"),
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(port_file.exists, what="the port file")
        info = _read_json(port_file)
        health = request(info["url"], "GET", "/v1/health")[1]
        assert health["service"] == "billing" and health["pid"] == proc.pid
        modules = request(info["url"], "GET", "/v1/source/modules")[1]["modules"]
        assert any(m["file"] == str(pkg / "api.py") for m in modules)
        (tmp_path / "stop").write_text("")
        assert proc.wait(10) == 0
        assert not port_file.exists()  # removed at a normal exit
    finally:
        end_process(proc)


@pytest.mark.parametrize("own_handler", [False, True])
def test_sigterm_removes_the_port_file_and_keeps_the_programs_exit(tmp_path, own_handler):
    """A program that leaves SIGTERM at its default dies of it, and still leaves no port file behind
    (a reader would count a dead instance); one with its own handler exits as that handler says."""
    handler = "import signal, sys\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n" if own_handler else ""
    (tmp_path / "app.py").write_text(handler + "import time\nfor _ in range(600):\n    time.sleep(0.05)\n")
    port_file = tmp_path / "agent.json"
    proc = subprocess.Popen(agent_command("--token-file", _tokens(tmp_path), "--port-file", str(port_file),
                                          "--audit", str(tmp_path / "audit.jsonl"), "--", sys.executable, "app.py"),
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(port_file.exists, what="the port file")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == (3 if own_handler else -signal.SIGTERM)
        assert not port_file.exists(), "port file left behind after SIGTERM"
    finally:
        end_process(proc)


def test_an_existing_sitecustomize_still_runs(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    marker = tmp_path / "marker"
    (theirs / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nVALUE = 42\n")
    script = tmp_path / "show.py"
    script.write_text(textwrap.dedent("""
        import json, sys, sitecustomize
        from probebook.agent.bootstrap import current
        print(json.dumps({"value": getattr(sitecustomize, "VALUE", None), "url": current().url}))
    """))
    env = dict(os.environ, PYTHONPATH=str(theirs))
    proc = _run(agent_command("--token-file", _tokens(tmp_path), "--audit", str(tmp_path / "a.jsonl"), "--",
                              sys.executable, str(script)), env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert marker.read_text() == "ran" and out["value"] == 42 and out["url"].startswith("http://127.0.0.1:")


def test_embedding_start_is_idempotent_and_reads_the_environment(tmp_path):
    script = tmp_path / "embed.py"
    script.write_text(textwrap.dedent("""
        import json
        import probebook.agent as pa
        first = pa.start(name="embedded")
        second = pa.start(name="other")
        print(json.dumps({"same": first is second, "url": first.url, "service": second.service,
                          "pf": first.port_file}))
        first.stop()
    """))
    port = free_port()
    env = dict(os.environ, PROBEBOOK_TOKEN=ALICE, PROBEBOOK_PORT=str(port),
               PROBEBOOK_PORT_FILE=str(tmp_path / "pf") + "/", PROBEBOOK_AUDIT=str(tmp_path / "audit.jsonl"))
    proc = _run([sys.executable, str(script)], env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["same"] is True and out["service"] == "embedded"
    assert out["url"] == f"http://127.0.0.1:{port}"
    assert os.path.dirname(out["pf"]) == str(tmp_path / "pf")


def test_a_forked_child_gets_its_own_fresh_agent_holding_the_parents_probes(tmp_path):
    """A pre-fork worker (or one that replaces a recycled worker) is probed like its parent from its
    first instruction: a fresh agent of its own, the parent's live probe re-placed in it (same id,
    audited as inherited), its code instrumented by that agent."""
    pf_dir = str(tmp_path / "ports") + "/"
    svc = Service.start(tmp_path, "--port-file", pf_dir)
    child = None
    try:
        status, body = svc.call("POST", "/v1/probes", {"kind": "log", "where": svc.where(), "template": "i={i}",
                                                       "ttl": 600})
        assert status == 201
        out = tmp_path / "child.json"
        child = svc.app(f"/fork?out={out}")["child"]
        wait_for(out.exists, what="the child's report")
        assert _read_json(out) == {"original": False, "pid": child}  # probed when its own code ran first
        child_file = os.path.join(pf_dir, f"{child}.json")
        wait_for(lambda: os.path.exists(child_file), what="the child's port file")
        info = _read_json(child_file)
        assert info["pid"] == child and info["ppid"] == svc.info["pid"]
        assert info["instance_id"] != svc.info["instance_id"]
        health = request(info["url"], "GET", "/v1/health")[1]
        assert health["pid"] == child and health["ppid"] == svc.info["pid"] and health["service"] == "shop"
        probes = request(info["url"], "GET", "/v1/probes")[1]["probes"]
        assert [(p["id"], p["status"], p["hits"]) for p in probes] == [(body["probe"]["id"], "installed", 0)]
        assert 0 < probes[0]["expires_in"] <= 600
        assert svc.ok("GET", "/v1/health")["active_probes"] == 1  # the parent keeps its probe
        assert [e["target"] for e in svc.audit_entries() if e["action"] == "inherit" and e["result"] == "ok"] == [body["probe"]["id"]]
    finally:
        if child is not None and _pid_alive(child):
            os.kill(child, signal.SIGKILL)  # the service's child, not ours: it goes when the service does
        svc.stop()


def test_usage_mistakes_are_one_line_and_exit_2(tmp_path):
    cases = [
        ("agent", "run"),
        ("agent", "run", "--"),
        ("agent", "run", "--tls-cert", "c.pem", "--", "python", "x.py"),
        ("agent", "run", "--token-file", str(tmp_path / "missing"), "--", "python", "x.py"),
        ("agent", "run", "--port", "70000", "--", "python", "x.py"),
        ("agent", "run", "--port", "eighty", "--", "python", "x.py"),
        ("agent", "fly"),
        ("bogus",),
        (),
        ("audit", "verify", str(tmp_path / "missing.jsonl")),
    ]
    bad_tokens = tmp_path / "bad-tokens"
    bad_tokens.write_text("alice:short\n")
    cases.append(("agent", "run", "--token-file", str(bad_tokens), "--", "python", "x.py"))
    for args in cases:
        proc = _cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert "error" in proc.stderr
    proc = _cli("agent", "run", "--token-file", _tokens(tmp_path), "--", "no-such-program-xyz")
    assert proc.returncode == 127 and "no-such-program-xyz" in proc.stderr


def test_the_console_script_verifies_an_audit_log_written_by_a_service(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "probebook")
    if not os.path.exists(script):
        pytest.fail("the probebook console script is not installed in this environment; pip install -e .")
    svc = Service.start(tmp_path)
    try:
        for _ in range(3):
            status, body = svc.call("POST", "/v1/probes", {"kind": "log", "where": svc.where(), "template": "x"})
            assert svc.call("DELETE", f"/v1/probes/{body['probe']['id']}")[0] == 200
    finally:
        svc.stop()
    ok = _run([script, "audit", "verify", svc.audit])
    assert ok.returncode == 0 and "7 entries" in ok.stdout, ok.stdout + ok.stderr
    lines = open(svc.audit).read().splitlines()
    edited = json.loads(lines[3])
    edited["who"] = "mallory"
    lines[3] = json.dumps(edited)
    with open(svc.audit, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    bad = _run([script, "audit", "verify", svc.audit])
    assert bad.returncode == 1 and "seq 4" in bad.stdout and "edited" in bad.stdout


def test_an_audit_key_file_makes_the_chain_an_hmac_that_verify_checks(tmp_path):
    key = tmp_path / "audit.key"
    key.write_text("k" * 40 + "\n")
    audit = tmp_path / "audit.jsonl"
    (tmp_path / "app.py").write_text("print('done')\n")
    run = _run(agent_command("--token-file", _tokens(tmp_path), "--audit", str(audit), "--audit-key-file", str(key),
                             "--", sys.executable, "app.py"), cwd=tmp_path)
    assert run.returncode == 0 and audit.exists(), run.stderr
    cli = [sys.executable, "-m", "probebook.cli", "audit", "verify", str(audit)]
    ok = _run(cli + ["--key-file", str(key)])
    assert ok.returncode == 0 and "chain intact" in ok.stdout, ok.stdout + ok.stderr
    unkeyed = _run(cli)
    assert unkeyed.returncode == 1 and "--key-file" in unkeyed.stdout
    short = tmp_path / "short.key"
    short.write_text("abc")
    refused = _run(cli + ["--key-file", str(short)])
    assert refused.returncode == 2 and "at least 16 bytes" in refused.stderr and len(refused.stderr.splitlines()) == 1
    bad = _run(agent_command("--audit-key-file", str(tmp_path / "nope.key"), "--", sys.executable, "app.py"))
    assert bad.returncode == 2 and "no such file" in bad.stderr


def test_gunicorn_with_two_workers_shows_two_instances(tmp_path):
    pytest.importorskip("gunicorn", reason="gunicorn is in the test extras: pip install -e '.[test]'")
    app = tmp_path / "webapp.py"
    app.write_text(textwrap.dedent("""
        def handle(path):
            size = len(path)  # at:work
            return size


        def app(environ, start_response):
            body = str(handle(environ["PATH_INFO"])).encode()
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
    """))
    from gunicorn import config

    # gunicorn >= 24 opens a control socket in the home directory unless told not to
    quiet = ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in config.KNOWN_SETTINGS) else []
    pf_dir = str(tmp_path / "ports") + "/"
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen(agent_command("--name", "web", "--token-file", _tokens(tmp_path), "--port-file", pf_dir,
                                          "--audit", str(tmp_path / "audit.jsonl"), "--",
                                          sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", *quiet,
                                          "--chdir", str(tmp_path), "webapp:app"),
                            cwd=tmp_path, stdout=log, stderr=log)
    try:
        def workers():
            found = []
            for path in glob.glob(os.path.join(pf_dir, "*.json")):
                try:
                    info = _read_json(path)
                except ValueError:
                    continue
                if info["pid"] != proc.pid:
                    found.append(info)
            return found if len(found) >= 2 else None

        found = wait_for(workers, timeout=30, what="two gunicorn workers with agents")
        healths = [request(i["url"], "GET", "/v1/health")[1] for i in found]
        assert len({h["instance_id"] for h in healths}) == 2 and len({h["pid"] for h in healths}) == 2
        assert all(h["service"] == "web" and h["status"] == "ok" for h in healths)
        line = work_line(str(app))
        for info in found:
            status, body = request(info["url"], "POST", "/v1/probes",
                                   {"kind": "log", "where": f"webapp.py:{line}", "template": "path={size}",
                                    "rate": 1000})
            assert status == 201 and body["probe"]["status"] in ("installed", "pending"), body
            pid = body["probe"]["id"]
            wait_for(lambda: request(info["url"], "GET", f"/v1/probes/{pid}")[1]["probe"]["status"] == "installed",
                     what="the probe to install once the worker imported the app")
        import urllib.request

        for i in range(10):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/p{i}", timeout=10) as resp:
                assert resp.status == 200
        logs = []
        for info in found:
            events = request(info["url"], "GET", "/v1/events?after=0")[1]["events"]
            logs += [e for e in events if e["kind"] == "log"]
        assert len(logs) == 10
        # three processes appended to one audit file: still one intact chain
        ok = _cli("audit", "verify", str(tmp_path / "audit.jsonl"))
        assert ok.returncode == 0, ok.stdout
        actions = [json.loads(line)["action"] for line in open(tmp_path / "audit.jsonl")]
        assert actions.count("start") >= 3 and actions.count("add_probe") == 2
    finally:
        end_process(proc, wait=15)
        log.close()


def test_without_a_token_file_a_private_token_is_generated_and_works(tmp_path):
    script = tmp_path / "app.py"
    script.write_text("import os, time\nwhile not os.path.exists('stop'):\n    time.sleep(0.05)\n")
    port_file = tmp_path / "agent.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBEBOOK_")}
    proc = subprocess.Popen(agent_command("--port-file", str(port_file), "--audit", str(tmp_path / "a.jsonl"), "--",
                                          sys.executable, str(script)),
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(port_file.exists, what="the port file")
        info = _read_json(port_file)
        token_file = info["token_file"]
        assert os.stat(token_file).st_mode & 0o077 == 0
        secret = open(token_file).read().strip().partition(":")[2]
        assert request(info["url"], "GET", "/v1/health", token=secret)[0] == 200
        assert request(info["url"], "GET", "/v1/health", token=ALICE)[0] == 401
        (tmp_path / "stop").write_text("")
        assert proc.wait(10) == 0
        assert token_file in proc.stderr.read()
        os.remove(token_file)
    finally:
        end_process(proc)
