"""The agent's HTTP server: docs/protocol.md's routes onto `ControlAPI`, served in daemon threads.

Stdlib ``ThreadingHTTPServer`` (requests are handled in httpd.py), bound to 127.0.0.1 unless told
otherwise, TLS when a certificate and key are given. A supervisor thread reaps slow clients and
restarts the server if its thread dies or its listening socket goes away (on the same port); health
says "unhealthy" while it cannot.

>>> # server = AgentServer(control, Tokens.single("s3cret-token"), port=0); url = server.start()
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import threading
import time
from typing import Any, Callable, Dict, Optional

from probebook.errors import ServerError
from probebook.protocol.tokens import Tokens

from .auth import FailedAuthLimiter
from .control import ControlAPI
from .httpd import MAX_BODY, ROUTES, AgentHTTPServer

__all__ = ["AgentServer", "MAX_BODY", "ROUTES", "DEFAULT_READ_TIMEOUT"]

DEFAULT_READ_TIMEOUT = 10.0
_CHECK_EVERY = 0.5
_PROBE_EVERY = 5.0  # connect to ourselves this often to catch a wedged or stolen socket
_MOVE_AFTER = 5  # failed rebinds of an ephemeral port before taking a new one


class AgentServer:
    """Serves `control` over HTTP(S) and keeps serving: see the module docstring."""

    def __init__(self, control: ControlAPI, tokens: Tokens, host: str = "127.0.0.1", port: int = 0,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
                 read_timeout: float = DEFAULT_READ_TIMEOUT, max_connections: int = 64,
                 limiter: Optional[FailedAuthLimiter] = None,
                 on_moved: Optional[Callable[[str], None]] = None) -> None:
        if bool(tls_cert) != bool(tls_key):
            raise ServerError("tls: give both a certificate and a key file, or neither")
        self.control = control
        self.tokens = tokens
        self.host = host
        self.requested_port = int(port)
        self.port = int(port)
        self.read_timeout = float(read_timeout)
        self.max_connections = max_connections
        self.limiter = limiter or FailedAuthLimiter()
        self.on_moved = on_moved
        self._ssl = _tls_context(tls_cert, tls_key) if tls_cert else None
        self._httpd: Optional[AgentHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._sockname: Any = None
        self._stop = threading.Event()
        self._supervisor: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.restarts = 0
        self.failed_binds = 0
        self.last_error = ""
        self._serving = False
        self._last_probe = 0.0

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self._ssl else 'http'}://{host}:{self.port}"

    def start(self) -> str:
        """Bind, serve and supervise; return the URL. Raises `ServerError` when it cannot bind."""
        with self._lock:
            self._bind(self.requested_port)
        self.control.add_health_check("http", self.health)
        self._supervisor = threading.Thread(target=self._supervise, name="probebook-http-supervisor", daemon=True)
        self._supervisor.start()
        return self.url

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            httpd, self._httpd = self._httpd, None
            if httpd is not None:
                if self._thread is not None and self._thread.is_alive():
                    httpd.shutdown()
                _release(httpd.socket, self._sockname)
            self._serving = False

    def abandon(self) -> None:
        """In a forked child: drop the inherited socket without touching the parent's server."""
        self._stop.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            try:
                httpd.socket.close()
            except OSError:
                pass

    def health(self) -> Dict[str, Any]:
        ok = self._serving and not self._stop.is_set()
        return {"ok": ok, "url": self.url, "tls": self._ssl is not None, "restarts": self.restarts,
                "error": "" if ok else (self.last_error or "not serving"), "last_error": self.last_error}

    # ------------------------------------------------------------ binding and serving
    def _bind(self, port: int) -> None:
        try:
            httpd = AgentHTTPServer((self.host, port), self.control, self.tokens, self.limiter, self.read_timeout,
                                    self.max_connections)
        except OSError as exc:
            raise ServerError(f"cannot listen on {self.host}:{port}: {exc.strerror or exc}") from None
        if self._ssl is not None:
            httpd.socket = self._ssl.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._httpd = httpd
        self._sockname = httpd.socket.getsockname()
        self.port = int(self._sockname[1])
        self._serving = True
        self._thread = threading.Thread(target=self._serve, args=(httpd,), name="probebook-http", daemon=True)
        self._thread.start()

    def _serve(self, httpd: AgentHTTPServer) -> None:
        try:
            httpd.serve_forever(poll_interval=0.5)
        except BaseException as exc:  # the thread ends; the supervisor sees it and restarts
            self.last_error = f"server thread died: {type(exc).__name__}: {exc}"

    def _supervise(self) -> None:
        while not self._stop.wait(_CHECK_EVERY):
            try:
                httpd = self._httpd
                if httpd is not None:
                    httpd.reap()
                problem = self._problem()
                if problem:
                    self._restart(problem)
            except Exception as exc:  # keep supervising whatever happens
                self.last_error = f"supervisor: {type(exc).__name__}: {exc}"

    def _problem(self) -> str:
        httpd = self._httpd
        if httpd is None:
            return self.last_error or "not serving"
        if self._thread is None or not self._thread.is_alive():
            return self.last_error or "server thread ended"
        if not _socket_intact(httpd.socket, self._sockname):
            return "listening socket was closed"
        now = time.monotonic()
        if now - self._last_probe >= _PROBE_EVERY:
            self._last_probe = now
            try:
                family = socket.AF_INET6 if ":" in self._sockname[0] else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.settimeout(2.0)
                    probe.connect(self._sockname[:2])
            except OSError as exc:
                return f"cannot connect to our own port {self.port}: {exc.strerror or exc}"
        return ""

    def _restart(self, problem: str) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._serving = False
            self.last_error = problem
            old, self._httpd = self._httpd, None
            if old is not None:
                if self._thread is not None and self._thread.is_alive():
                    old.shutdown()  # the loop may spin on a dead socket; shutdown ends it
                _release(old.socket, self._sockname)
            port = self.port
            moved = self.requested_port == 0 and self.failed_binds >= _MOVE_AFTER
            try:
                self._bind(0 if moved else port)
            except ServerError as exc:
                self.failed_binds += 1
                self.last_error = f"{problem}; restart failed: {exc}"
                self._stop.wait(min(2.0, 0.25 * self.failed_binds))
                return
            self.failed_binds = 0
            self.restarts += 1
            self.last_error = f"restarted after: {problem}"
        if self.port != port and self.on_moved is not None:
            self.on_moved(self.url)


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ServerError(f"tls: cannot load certificate {cert} and key {key}: {exc}") from None
    return ctx


def _socket_intact(sock: socket.socket, name: Any) -> bool:
    fd = sock.fileno()
    if fd < 0:
        return False
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        return sock.getsockname() == name
    except OSError:
        return False


def _release(sock: socket.socket, name: Any) -> None:
    """Close our listening socket; if its descriptor now belongs to someone else, only forget it."""
    try:
        if _socket_intact(sock, name) or sock.fileno() < 0:
            sock.close()
        else:
            sock.detach()
    except OSError:
        pass
