"""A throwaway `redis-server` on a free loopback port, for fleet demos, tests and benchmarks.

The port is below the kernel's ephemeral range (`procs.free_port`), so nothing takes it while
the server restarts.

>>> with RedisServer() as redis:                      # doctest: +SKIP
...     print(redis.url)
redis://127.0.0.1:40123/0

Nothing is persisted (``--save '' --appendonly no``); `restart` keeps the port, so agents and
clients holding the URL reconnect to the new server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import List, Optional

from .procs import free_port, tail

__all__ = ["RedisServer"]


class RedisServer:
    """Start with `start()` or a ``with`` block; `stop()` ends the process and removes its directory."""

    def __init__(self, port: Optional[int] = None, binary: str = "redis-server",
                 extra: Optional[List[str]] = None) -> None:
        self.port = port or free_port()
        self.binary = shutil.which(binary) or ""
        if not self.binary:
            raise RuntimeError(f"{binary} not found on PATH; install it with: apt-get install -y redis-server")
        self.extra = list(extra or [])
        self.directory = tempfile.mkdtemp(prefix="probebook-redis-")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.directory, "--daemonize", "no", "--maxclients", "10000", *self.extra]
        log = open(os.path.join(self.directory, "redis.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout:g}s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """End the server process (its data is gone: nothing is persisted)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> "RedisServer":
        self.kill()
        return self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 5) -> str:
        return tail(os.path.join(self.directory, "redis.log"), lines)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
