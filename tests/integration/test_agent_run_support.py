"""Shared by the agent-run and control tests: a small HTTP service started under `probebook agent run`.

No tests here. `Service.start(tmp_path)` runs ``python -m probebook.cli agent run ... -- python target.py``
as a real subprocess, waits for the agent's port file and the service's own port, and `stop()` ends it.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import textwrap
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

import pytest
from support import end_process, wait_for

TOKENS = {"alice": "alice-secret-token-0001", "bob": "bob-secret-token-0002"}
ALICE = TOKENS["alice"]

TARGET = textwrap.dedent('''
    import json, os, socket, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit


    def work(i, order_id="A-1"):
        total = i * 2  # at:work
        return total + 1


    ORIGINAL = work.__code__
    SQUAT = []


    def instrumented():
        """Probed code, as each backend does it: a swapped code object, or sys.monitoring events."""
        if sys.version_info >= (3, 12):
            mon = sys.monitoring
            return any(mon.get_tool(t) == "probebook" and mon.get_local_events(t, ORIGINAL) for t in range(6))
        return work.__code__ is not ORIGINAL


    def agent_socket():
        from probebook.agent.bootstrap import current
        return current().server._httpd.socket  # reaching in: this is fault injection


    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, body, status=200):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/work":
                self.reply({"sum": sum(work(i) for i in range(int(q.get("n", 1))))})
            elif url.path == "/original":
                self.reply({"original": not instrumented(), "result": work(3), "pid": os.getpid()})
            elif url.path == "/agent-health":
                from probebook.agent.bootstrap import current
                self.reply(current().control.health())
            elif url.path == "/break":
                sock = agent_socket()
                port = sock.getsockname()[1]
                if q.get("mode") == "squat":  # close it and take its port before the agent can rebind
                    from probebook.agent.bootstrap import current
                    with current().server._lock:  # holds off the supervisor's restart meanwhile
                        sock.close()
                        deadline = time.monotonic() + 5
                        while True:  # the port frees when the server's poll() lets go of the socket
                            squat = socket.socket()
                            squat.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                            try:
                                squat.bind(("127.0.0.1", port))
                                squat.listen()
                                break
                            except OSError:
                                squat.close()
                                if time.monotonic() > deadline:
                                    raise
                                time.sleep(0.01)
                    SQUAT.append(squat)
                else:  # a library closing descriptors it does not own
                    os.close(sock.fileno())
                self.reply({"broken": port})
            elif url.path == "/unsquat":
                while SQUAT:
                    SQUAT.pop().close()
                self.reply({"ok": True})
            elif url.path == "/fork":
                pid = os.fork()
                if pid == 0:
                    with open(q["out"] + ".tmp", "w") as fh:
                        json.dump({"original": not instrumented(), "pid": os.getpid()}, fh)
                    os.replace(q["out"] + ".tmp", q["out"])
                    time.sleep(30)  # the test kills it sooner
                    os._exit(0)
                self.reply({"child": pid})
            else:
                self.reply({"error": "no such path"}, 404)


    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as fh:
        fh.write(str(server.server_address[1]))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()
''')


def work_line(target: str) -> int:
    with open(target) as fh:
        return next(i for i, line in enumerate(fh, 1) if "# at:work" in line)


def agent_command(*options: str) -> List[str]:
    return [sys.executable, "-m", "probebook.cli", "agent", "run", *options]


class Service:
    """A target service under the agent: `call` speaks to the agent, `app` to the service."""

    def __init__(self, proc: subprocess.Popen, tmp: str, info: Dict[str, Any], app_port: int, target: str,
                 audit: str, ssl_context: Optional[ssl.SSLContext]) -> None:
        self.proc, self.tmp, self.info, self.app_port = proc, tmp, info, app_port
        self.target, self.audit, self.ssl_context = target, audit, ssl_context
        self.url: str = info["url"]

    @classmethod
    def start(cls, tmp_path, *options: str, env: Optional[Dict[str, str]] = None,
              ssl_context: Optional[ssl.SSLContext] = None, name: str = "shop",
              python: Optional[str] = None) -> "Service":
        tmp = str(tmp_path)
        target = os.path.join(tmp, "target.py")
        with open(target, "w") as fh:
            fh.write(TARGET)
        token_file = os.path.join(tmp, "tokens")
        with open(token_file, "w") as fh:
            fh.write("".join(f"{k}:{v}\n" for k, v in TOKENS.items()))
        port_file, app_file, audit = (os.path.join(tmp, n) for n in ("agent.json", "app.port", "audit.jsonl"))
        if "--port-file" not in options:
            options = ("--port-file", port_file) + options
        cmd = agent_command("--name", name, "--token-file", token_file, "--audit", audit, *options,
                            "--", python or sys.executable, target, app_file)
        full_env = dict(os.environ, **(env or {}))
        proc = subprocess.Popen(cmd, cwd=tmp, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: os.path.exists(app_file) or proc.poll() is not None, what="the service to start")
            if proc.poll() is not None:
                raise AssertionError(f"service exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            pf = options[options.index("--port-file") + 1]
            pf = os.path.join(pf, f"{proc.pid}.json") if pf.endswith("/") else pf
            wait_for(lambda: os.path.exists(pf), what="the agent's port file")
            with open(pf) as fh:
                info = json.load(fh)
            with open(app_file) as fh:
                app_port = int(fh.read())
        except BaseException:
            end_process(proc)
            raise
        return cls(proc, tmp, info, app_port, target, audit, ssl_context)

    def stop(self) -> None:
        end_process(self.proc)

    # ------------------------------------------------------------ talking to it
    def call(self, method: str, path: str, body: Any = None, token: Optional[str] = ALICE,
             raw: Optional[bytes] = None, timeout: float = 40.0) -> Tuple[int, Dict[str, Any]]:
        return request(self.url, method, path, body, token, raw, timeout, self.ssl_context)

    def ok(self, method: str, path: str, body: Any = None) -> Dict[str, Any]:
        status, answer = self.call(method, path, body)
        assert status < 300, (status, answer)
        return answer

    def app(self, path: str) -> Dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.app_port, timeout=20)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            return json.loads(resp.read())
        finally:
            conn.close()

    def where(self) -> str:
        return f"target.py:{work_line(self.target)}"

    def audit_entries(self) -> List[Dict[str, Any]]:
        with open(self.audit) as fh:
            return [json.loads(line) for line in fh if line.strip()]


def request(url: str, method: str, path: str, body: Any = None, token: Optional[str] = ALICE,
            raw: Optional[bytes] = None, timeout: float = 40.0,
            ssl_context: Optional[ssl.SSLContext] = None) -> Tuple[int, Dict[str, Any]]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                                                       context=ssl_context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


@pytest.fixture
def service(tmp_path):
    svc = Service.start(tmp_path)
    yield svc
    svc.stop()
