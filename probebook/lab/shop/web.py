"""HTTP for the threaded shop services: a router on a bounded worker pool, and a client for peers.

Like a gunicorn worker with N threads: at most `workers` requests run at once, the rest wait in
the accept queue, so a slow dependency shows as queueing, not as unbounded threads.

>>> router = Router()
>>> @router.route("GET", "/items/<sku>")
... def item(req, sku): return Response(200, {"sku": sku})
>>> router.match("GET", "/items/sku-1")[1]
{'sku': 'sku-1'}
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .context import ServiceContext
from .observe import METRICS, incoming_trace, outgoing_traceparent

__all__ = ["Request", "Response", "Router", "serve", "start_admin", "Upstream", "UpstreamError", "RetryPolicy",
           "health_body"]


def health_body(ctx: ServiceContext) -> Dict[str, Any]:
    return {"service": ctx.name, "version": ctx.version, "pid": os.getpid()}


@dataclass
class Request:
    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    body: Any
    route: str = ""
    query_string: str = ""


@dataclass
class Response:
    status: int
    body: Any = field(default_factory=dict)


Handler = Callable[..., Response]


class Router:
    def __init__(self) -> None:
        self._routes: List[Tuple[str, "re.Pattern[str]", str, Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = re.compile("^" + re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", pattern) + "$")

        def register(fn: Handler) -> Handler:
            self._routes.append((method, regex, pattern, fn))
            return fn
        return register

    def match(self, method: str, path: str) -> Optional[Tuple[Handler, Dict[str, str], str]]:
        for m, regex, pattern, fn in self._routes:
            hit = regex.match(path)
            if hit and m == method:
                return fn, hit.groupdict(), pattern
        return None


def _handler_class(ctx: ServiceContext, router: Router) -> type:
    class _Handler(BaseHTTPRequestHandler):
        def _dispatch(self, method: str) -> None:
            started = time.perf_counter()
            parts = urlsplit(self.path)
            if parts.path == "/health":
                return self._send(200, json.dumps(health_body(ctx)).encode())
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            found = router.match(method, parts.path)
            route = found[2] if found else "unmatched"
            METRICS.inflight.inc()
            with incoming_trace(self.headers.get("traceparent")):
                try:
                    if found is None:
                        resp = Response(404, {"error": f"no route {method} {parts.path}"})
                    else:
                        body = json.loads(raw) if raw else None
                        req = Request(method, parts.path, dict(parse_qsl(parts.query)), dict(self.headers), body,
                                      route, parts.query)
                        resp = found[0](req, **found[1])
                except Exception as exc:  # a real service answers 500 and logs it
                    ctx.log.error("request failed", route=route, error=type(exc).__name__)
                    resp = Response(500, {"error": "internal error"})
                finally:
                    METRICS.inflight.dec()
                elapsed = time.perf_counter() - started
                METRICS.requests.labels(route, method, str(resp.status)).inc()
                METRICS.latency.labels(route).observe(elapsed)
                ctx.log.info("request", route=route, status=resp.status, ms=round(elapsed * 1000, 2))
                self._send(resp.status, json.dumps(resp.body).encode())

        def _send(self, status: int, data: bytes, ctype: str = "application/json") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (its timeout); nothing left to tell it
                pass

        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def log_message(self, *args: Any) -> None:
            return

    return _Handler


class _SharedPortServer(HTTPServer):
    def server_bind(self) -> None:
        # the next release binds the same port before this one stops (a zero-downtime handoff)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class _AdminHandler(BaseHTTPRequestHandler):
    ctx: ServiceContext

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        if self.path.startswith("/metrics"):
            data, ctype = generate_latest(), CONTENT_TYPE_LATEST
        else:
            data, ctype = json.dumps(health_body(self.ctx)).encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return


class _AdminServer(ThreadingMixIn, _SharedPortServer):
    daemon_threads = True


def start_admin(ctx: ServiceContext) -> Callable[[], None]:
    """/metrics and /health on their own port and thread: a saturated worker pool or a blocked event
    loop must not make the service look down to Prometheus. Answers a function that closes it."""
    if not ctx.metrics_port:
        return lambda: None
    handler = type("AdminHandler", (_AdminHandler,), {"ctx": ctx})
    server = _AdminServer(("127.0.0.1", ctx.metrics_port), handler)
    threading.Thread(target=server.serve_forever, name="admin", daemon=True).start()

    def close() -> None:  # a stopping release leaves the port to its successor at once
        server.shutdown()
        server.server_close()
    return close


class _PooledServer(_SharedPortServer):
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], handler: type, workers: int) -> None:
        super().__init__(address, handler)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http-worker")

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


def serve(ctx: ServiceContext, router: Router, workers: int = 8) -> None:
    """Answer requests on 127.0.0.1:ctx.port until the process is stopped."""
    close_admin = start_admin(ctx)
    server = _PooledServer(("127.0.0.1", ctx.port), _handler_class(ctx, router), workers)
    ctx.log.info("listening", port=ctx.port, workers=workers)

    def stop() -> None:
        close_admin()
        server.shutdown()

    def drain(signum: int, frame: Any) -> None:  # SIGTERM: stop accepting, finish what is in flight
        threading.Thread(target=stop, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, drain)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    server._pool.shutdown(wait=True)
    ctx.log.info("stopped")


class UpstreamError(Exception):
    """A peer answered an error status, or could not be reached (status 0)."""

    def __init__(self, target: str, status: int, body: Any, reason: str = "") -> None:
        super().__init__(f"{target}: {status or reason}")
        self.target, self.status, self.body, self.reason = target, status, body, reason


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 1
    backoff_s: float = 0.0
    timeout_s: float = 2.0

    def retries(self, status: int, attempt: int) -> bool:
        """Try again after this failure? Only unreachable or failing (>= 502) peers, while attempts last."""
        return (status == 0 or status >= 502) and attempt < self.max_attempts

    @classmethod
    def from_settings(cls, raw: Any) -> "RetryPolicy":
        raw = raw or {}
        return cls(int(raw.get("max_attempts", 1)), float(raw.get("backoff_s", 0.0)), float(raw.get("timeout_s", 2.0)))


class Upstream:
    """Calls one peer service with JSON, the trace header, metrics and a retry policy."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name, self.base_url = name, base_url.rstrip("/")

    def call(self, method: str, path: str, body: Any = None, policy: RetryPolicy = RetryPolicy()) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(method, path, body, policy.timeout_s)
            except UpstreamError as err:
                if not policy.retries(err.status, attempt):
                    raise
                time.sleep(policy.backoff_s * attempt)

    def _once(self, method: str, path: str, body: Any, timeout: float) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers={
            "Content-Type": "application/json", "traceparent": outgoing_traceparent()})
        started = time.perf_counter()
        code = "error"
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                code = str(resp.status)
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            code = str(err.code)
            try:
                payload = json.loads(err.read() or b"null")
            except ValueError:
                payload = None
            raise UpstreamError(self.name, err.code, payload) from None
        except (OSError, ValueError) as exc:  # refused, reset, timed out
            reason = "timeout" if isinstance(exc, socket.timeout) or "timed out" in str(exc) else str(exc)
            raise UpstreamError(self.name, 0, None, reason) from None
        finally:
            METRICS.client_requests.labels(self.name, code).inc()
            METRICS.client_latency.labels(self.name).observe(time.perf_counter() - started)
