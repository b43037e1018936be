"""The HTTP side of the agent's server: routes, request reading and answering, per connection.

One request is read under a deadline (request line, headers and body within `read_timeout`; a reaper
cuts the read side of late connections and the handler answers 408), authenticated (401, 429 after
repeated failures from one address, each failure audited), routed (404/405), size-checked (413 before
reading), parsed (400 one-liners) and handed to `ControlAPI.handle`. Nothing is printed into the
host's stderr. `AgentServer` (server.py) binds, supervises and restarts it.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from probebook.protocol.tokens import Tokens

from .auth import FailedAuthLimiter
from .control import ControlAPI

__all__ = ["AgentHTTPServer", "MAX_BODY", "ROUTES"]

MAX_BODY = 1 << 20
_DISCARD_MAX = 16 << 20  # a larger refused body is cut off rather than read

# (method, path pattern, op, query parameters accepted); "{id}" is one path segment
ROUTES: Tuple[Tuple[str, str, str, Tuple[str, ...]], ...] = (
    ("GET", "/v1/health", "health", ()),
    ("GET", "/v1/probes", "list_probes", ()),
    ("POST", "/v1/probes", "add_probe", ()),
    ("DELETE", "/v1/probes", "remove_all", ()),
    ("GET", "/v1/probes/{id}", "get_probe", ()),
    ("DELETE", "/v1/probes/{id}", "remove_probe", ()),
    ("GET", "/v1/events", "read_events", ("after", "limit", "timeout")),
    ("PUT", "/v1/config/redaction", "set_redaction", ()),
    ("PUT", "/v1/config/limits", "set_limits", ()),
    ("GET", "/v1/source/modules", "list_modules", ()),
    ("GET", "/v1/source/file", "read_source", ("path", "start", "end")),
)
_WITH_BODY = frozenset({"POST", "PUT"})


def _route(method: str, path: str) -> Tuple[int, str, Dict[str, Any], Tuple[str, ...], List[str]]:
    """(status, op, path args, query names, allowed methods) for a request path."""
    parts = [unquote(p) for p in path.rstrip("/").split("/")]
    allowed: List[str] = []
    for m, pattern, op, query in ROUTES:
        pat = pattern.split("/")
        if len(pat) != len(parts):
            continue
        args = {}
        for want, got in zip(pat, parts):
            if want == "{id}" and got:
                args["id"] = got
            elif want != got:
                break
        else:
            if m == method:
                return 200, op, args, query, []
            allowed.append(m)
    return (405 if allowed else 404), "", {}, (), allowed


def _json_default(obj: Any) -> str:
    # never str()/repr() an object we did not make: that would run user code
    return f"<unserializable {type(obj).__name__}>"


class _Conn:
    __slots__ = ("sock", "deadline", "timed_out", "served")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: Optional[float] = None  # set while a request is being read
        self.timed_out = False
        self.served = 0


class _Handler(BaseHTTPRequestHandler):
    server: "AgentHTTPServer"
    protocol_version = "HTTP/1.1"
    server_version = "probebook-agent"
    sys_version = ""
    error_content_type = "application/json"
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.command = None  # set by parse_request; errors before it need the attribute
        self._conn = self.server.watch(self.request)
        self._conn.deadline = time.monotonic() + self.server.read_timeout
        try:
            self.request.settimeout(self.server.read_timeout + 1.0)
            if isinstance(self.request, ssl.SSLSocket):
                self.request.do_handshake()  # here, not in the accepting thread: a slow client stalls only itself
            super().setup()
        except BaseException:
            self.server.unwatch(self._conn)
            raise

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.unwatch(self._conn)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the host's stderr is not ours
        pass

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass

    # ------------------------------------------------------------ reading
    def handle_one_request(self) -> None:
        conn = self._conn
        conn.deadline = time.monotonic() + self.server.read_timeout
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if conn.timed_out and not self.raw_requestline and conn.served:
                self.close_connection = True  # an idle keep-alive connection: close it quietly
                return
            if conn.timed_out:
                return self._timed_out()
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > 65536:
                return self._fail(414, "request line too long")
            if not self.parse_request():  # answered by send_error
                return
            if conn.timed_out:
                return self._timed_out()
            status, op, args, query_names, allowed = _route(self.command, urlsplit(self.path).path)
            who = self._authenticate()
            if who is None:
                return
            if status != 200:
                extra = {"Allow": ", ".join(allowed)} if allowed else {}
                msg = (f"{self.command} is not allowed on this path; use {' or '.join(allowed)}" if allowed else
                       f"no such path {urlsplit(self.path).path!r}; see docs/protocol.md for the routes")
                return self._fail(status, msg, headers=extra)
            parsed = self._arguments(op, args, query_names)
            if parsed is None:
                return
            if conn.timed_out:
                return self._timed_out()
        except (socket.timeout, TimeoutError):
            return self._timed_out()
        except (OSError, ValueError):  # reset, TLS error, closed by the reaper
            if conn.timed_out:
                return self._timed_out()
            self.close_connection = True
            return
        finally:
            conn.deadline = None
        conn.served += 1
        self._dispatch(op, parsed, who)

    def _authenticate(self) -> Optional[str]:
        """The token's holder, or None after answering 401 (429 while the address is locked out). A correct
        token is always served, whatever other clients of the same address got wrong: a local process
        that fails on purpose cannot lock the operator out; only wrong tokens are slowed down."""
        address = self.client_address[0]
        limiter = self.server.limiter
        header = self.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        who = self.server.tokens.match(presented.strip()) if scheme.lower() == "bearer" and presented else None
        if who is not None:
            return who
        reason = "wrong token" if header else "missing token"
        wait = limiter.retry_after(address)
        if wait > 0:
            self.server.control.audit_event(f"anonymous@{address}", "auth_failed", f"{self.command} {self.path}"[:200],
                                            f"429 {reason} while the address is locked out")
            self._fail(429, f"too many failed authentications from {address}; retry in {int(wait) + 1} s",
                       headers={"Retry-After": str(int(wait) + 1)})
            return None
        locked = limiter.failed(address)
        self.server.control.audit_event(f"anonymous@{address}", "auth_failed", f"{self.command} {self.path}"[:200],
                                        f"401 {reason}" + ("; address locked out" if locked else ""))
        self._fail(401, f"{reason}: send 'Authorization: Bearer <token>' with a token from the agent's token file",
                   headers={"WWW-Authenticate": 'Bearer realm="probebook"'})
        return None

    def _arguments(self, op: str, path_args: Dict[str, Any], query_names: Tuple[str, ...]) -> Optional[Dict[str, Any]]:
        args: Dict[str, Any] = dict(path_args)
        for key, value in parse_qsl(urlsplit(self.path).query, keep_blank_values=True):
            if key not in query_names:
                hint = f"allowed: {', '.join(query_names)}" if query_names else "this path takes none"
                self._fail(400, f"{key}: unknown query parameter; {hint}", field=key)
                return None
            if key in args:
                self._fail(400, f"{key}: given more than once", field=key)
                return None
            args[key] = value
        if self.headers.get("Transfer-Encoding"):
            self._fail(411, "send the body with a Content-Length, not chunked")
            return None
        raw_length = self.headers.get("Content-Length", "0").strip() or "0"
        if not raw_length.isdigit():
            self._fail(400, f"Content-Length: expected a number of bytes, got {raw_length!r}")
            return None
        length = int(raw_length)
        if length > MAX_BODY:
            self._fail(413, f"body of {length} bytes is over the limit of {MAX_BODY} bytes (1 MiB)")
            self._discard(min(length, _DISCARD_MAX))
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            if self._conn.timed_out:
                self._timed_out()
            self.close_connection = True
            return None
        if self.command not in _WITH_BODY:
            return args
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, ValueError) as exc:
            self._fail(400, f"body is not valid JSON ({str(exc).split(':')[0]}); send a JSON object")
            return None
        except RecursionError:  # [[[[...]]]] 100,000 deep: answered, never a dropped connection
            self._fail(400, "body nests too deep to read; send a JSON object a few levels deep")
            return None
        if not isinstance(data, dict):
            self._fail(400, f"body must be a JSON object, got {type(data).__name__}")
            return None
        return data

    def _discard(self, length: int) -> None:
        """Read and drop what the client still sends (within the read deadline), so that it gets to
        read our answer instead of a reset connection."""
        try:
            while length > 0 and not self._conn.timed_out:
                chunk = self.rfile.read1(min(length, 65536)) if hasattr(self.rfile, "read1") else b""
                if not chunk:
                    break
                length -= len(chunk)
        except (OSError, ValueError):
            pass

    # ------------------------------------------------------------ answering
    def _dispatch(self, op: str, args: Dict[str, Any], who: str) -> None:
        status, body = self.server.control.handle(op, args, who)
        self._send(status, body)

    def _send(self, status: int, body: Dict[str, Any], headers: Optional[Dict[str, str]] = None) -> None:
        data = json.dumps(body, default=_json_default).encode("utf-8")
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.1"  # we answer everyone with a status line and headers
            self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            # headers and body in one write: two small writes meet Nagle and delayed ACK (40 ms)
            self._headers_buffer.append(b"\r\n" + (data if self.command != "HEAD" else b""))
            self.flush_headers()
        except OSError:
            self.close_connection = True

    def _fail(self, status: int, message: str, field: str = "", headers: Optional[Dict[str, str]] = None) -> None:
        body: Dict[str, Any] = {"error": message}
        if field:
            body["field"] = field
        self.close_connection = True  # the rest of the request may be unread
        self._send(status, body, headers)

    def _timed_out(self) -> None:
        self.close_connection = True
        self._send(408, {"error": f"request not received within {self.server.read_timeout:g} s; "
                                  f"send the whole request at once"})

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """Used by `parse_request` for malformed requests: answer JSON like everything else."""
        if self._conn.timed_out:
            return self._timed_out()
        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        self._send(code, {"error": f"{text}; send an HTTP/1.1 request such as GET /v1/health"})


class AgentHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: Tuple[str, int], control: ControlAPI, tokens: Tokens, limiter: FailedAuthLimiter,
                 read_timeout: float, max_connections: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.control = control
        self.tokens = tokens
        self.limiter = limiter
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self._conns: Dict[int, _Conn] = {}
        self._conns_lock = threading.Lock()
        self._active = 0
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves our own name (getfqdn), which can hang without DNS
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            full = self._active >= self.max_connections
            if not full:
                self._active += 1
        if full:  # refuse at once rather than queue threads without bound
            if not isinstance(request, ssl.SSLSocket):
                try:
                    request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                    b"Connection: close\r\nContent-Length: 61\r\n\r\n"
                                    b'{"error": "too many connections to the agent; retry later"}\n')
                except OSError:
                    pass
            self._close(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._conns_lock:
                self._active -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._active -= 1

    def _close(self, request: Any) -> None:
        try:
            request.close()
        except OSError:
            pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a broken connection is the client's business; never print into the host's stderr

    def watch(self, sock: socket.socket) -> _Conn:
        conn = _Conn(sock)
        with self._conns_lock:
            self._conns[id(conn)] = conn
        return conn

    def unwatch(self, conn: _Conn) -> None:
        with self._conns_lock:
            self._conns.pop(id(conn), None)

    def reap(self) -> None:
        """Cut the read side of connections past their read deadline; their handler answers 408."""
        now = time.monotonic()
        with self._conns_lock:
            late = [c for c in self._conns.values() if c.deadline is not None and now > c.deadline and not c.timed_out]
        for conn in late:
            conn.timed_out = True
            try:  # the plain socket's shutdown: SSLSocket.shutdown would drop the TLS state we answer with
                socket.socket.shutdown(conn.sock, socket.SHUT_RD)
            except OSError:
                pass
