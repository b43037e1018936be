"""N agent processes of one service on this machine, for fleet demos, tests and benchmarks.

>>> with LocalFleet(3, "shop", broker="redis://127.0.0.1:6379/0") as fleet:   # doctest: +SKIP
...     print(fleet.urls())
['http://127.0.0.1:40123', 'http://127.0.0.1:40125', 'http://127.0.0.1:40127']

Each process is ``probebook agent run --name SERVICE --port 0 --token-file F --port-file DIR/
--audit A [--broker URL] -- python -m probebook.lab.ticker``: the agent gets into an unmodified
program the way a user would put it there (the CLI execs the program: one process each). One
token, ``ops``, is in `token_file`; its secret is `secret`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from .procs import tail

__all__ = ["LocalFleet"]


class LocalFleet:
    """Start with `start()` or a ``with`` block; `stop()` ends every process and removes the directory."""

    def __init__(self, count: int, service: str, broker: Optional[str] = None,
                 target: Optional[Sequence[str]] = None, interval: float = 0.05, token_name: str = "ops",
                 python: str = sys.executable, env: Optional[Dict[str, str]] = None) -> None:
        self.count, self.service, self.broker, self.python = count, service, broker, python
        self.env = dict(env or {})  # e.g. PROBEBOOK_READ_TIMEOUT
        self.target = list(target or [python, "-m", "probebook.lab.ticker", str(interval)])
        self.directory = tempfile.mkdtemp(prefix=f"probebook-fleet-{service}-")
        self.port_dir = os.path.join(self.directory, "ports") + os.sep
        self.audit_path = os.path.join(self.directory, "audit.jsonl")
        self.token_name, self.secret = token_name, secrets.token_urlsafe(24)
        self.token_file = os.path.join(self.directory, "tokens")
        with open(self.token_file, "w", encoding="utf-8") as fh:
            fh.write(f"{token_name}:{self.secret}\n")
        os.chmod(self.token_file, 0o600)
        os.makedirs(self.port_dir)
        self.procs: List[subprocess.Popen] = []

    def command(self) -> List[str]:
        cmd = [self.python, "-m", "probebook.cli", "agent", "run", "--name", self.service, "--port", "0",
               "--token-file", self.token_file, "--port-file", self.port_dir, "--audit", self.audit_path]
        if self.broker:
            cmd += ["--broker", self.broker]
        return cmd + ["--"] + self.target

    def start(self, count: Optional[int] = None) -> "LocalFleet":
        """Start `count` more processes (all of them the first time)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROBEBOOK_")}
        env.update(self.env, PYTHONUNBUFFERED="1")
        for _ in range(self.count if count is None else count):
            log = open(os.path.join(self.directory, f"agent-{len(self.procs)}.log"), "ab")
            self.procs.append(subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True))
            log.close()
        return self

    def port_files(self) -> Dict[int, Dict[str, str]]:
        """pid -> the port file that process wrote (url, instance_id, service)."""
        found: Dict[int, Dict[str, str]] = {}
        for name in os.listdir(self.port_dir):
            if name.endswith(".json"):
                try:
                    with open(os.path.join(self.port_dir, name), encoding="utf-8") as fh:
                        info = json.load(fh)
                    found[int(info["pid"])] = info
                except (OSError, ValueError, KeyError):
                    continue
        return found

    def urls(self) -> List[str]:
        return sorted(info["url"] for info in self.port_files().values())

    def wait_ready(self, timeout: float = 30.0) -> List[str]:
        """Wait until every running process has written its port file; its URLs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"agent process {dead[0].pid} exited with {dead[0].returncode}: {self.log_tail()}")
            if len(self.port_files()) >= len(self.procs):
                return self.urls()
            time.sleep(0.05)
        raise RuntimeError(f"{len(self.port_files())} of {len(self.procs)} agents wrote a port file within "
                           f"{timeout:g}s: {self.log_tail()}")

    def kill(self, index: int, sig: int = signal.SIGKILL) -> int:
        """Signal one process (and its children); its pid."""
        proc = self.procs[index]
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        proc.wait(10)
        return proc.pid

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the first few agents that said anything."""
        out = []
        for i in range(len(self.procs)):
            text = tail(os.path.join(self.directory, f"agent-{i}.log"), lines)
            if text:
                out.append(f"agent-{i}: {text}")
        return "; ".join(out[:3]) or "(no output)"

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "LocalFleet":
        """Start every process and wait until each has written its port file."""
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
