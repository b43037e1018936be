"""HTTP GET of JSON APIs (Prometheus, Alertmanager, Loki) with a hard deadline and a size cap.

A socket timeout alone bounds each read, not the whole answer: a server that trickles one byte a
second would hold the caller forever. Here a watchdog shuts the socket at the deadline, so every
call returns (or raises `SourceTimeout`) within `timeout` seconds.

>>> try:
...     get_json("http://127.0.0.1:1", "/api/v1/query", {"query": "up"}, timeout=1.0, what="Prometheus")
... except SourceUnreachable as exc:
...     print(exc)
Prometheus at http://127.0.0.1:1 is not reachable (Connection refused); is it running, and is the URL right?
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional
from urllib.parse import urlencode, urlsplit

from probebook.errors import SourceTimeout, SourceUnreachable, TelemetryInputError

__all__ = ["HttpAnswer", "get", "get_json", "check_base_url", "MAX_ANSWER_BYTES"]

MAX_ANSWER_BYTES = 64 * 1024 * 1024  # more than this is a query to narrow, not an answer to hold


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes
    content_type: str

    def text(self, limit: int = 300) -> str:
        flat = " ".join(self.body.decode("utf-8", "replace").split())
        return flat if len(flat) <= limit else flat[: limit - 1] + "…"

    def json(self, what: str, url: str) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            raise SourceUnreachable(f"{what} at {url} answered {self.status} with something that is not JSON: "
                                    f"{self.text(120)!r}; is the URL that of {what}?") from None


def check_base_url(url: str, what: str) -> str:
    """`url` without a trailing slash; a one-line error unless it is http(s)://HOST[:PORT][/path]."""
    parts = urlsplit(url.strip() if isinstance(url, str) else "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TelemetryInputError(f"{what} URL: expected http://HOST:PORT, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise TelemetryInputError(f"{what} URL: bad port in {url!r}") from None
    return url.strip().rstrip("/")


def get(base: str, path: str, params: Optional[Mapping[str, Any]] = None, *, timeout: float, what: str,
        headers: Optional[Mapping[str, str]] = None, max_bytes: int = MAX_ANSWER_BYTES) -> HttpAnswer:
    """GET `base + path?params`; the answer whatever its status. Raises `SourceUnreachable` or
    `SourceTimeout` when there is no complete answer within `timeout` seconds."""
    parts = urlsplit(base)
    target = (parts.path.rstrip("/") + path) + ("?" + urlencode(params, doseq=True) if params else "")
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    expired = threading.Event()

    def _expire() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    deadline = time.monotonic() + timeout
    watchdog = threading.Timer(timeout, _expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("GET", target, headers={"Accept": "application/json", **(headers or {})})
        resp = conn.getresponse()
        chunks, size = [], 0
        while True:
            if conn.sock is not None:
                conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = resp.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise SourceUnreachable(f"{what} at {base} answered more than {max_bytes // 2**20} MiB; "
                                        f"narrow the query (a shorter range, a larger step, fewer series)")
            chunks.append(chunk)
        if expired.is_set():
            raise socket.timeout()
        return HttpAnswer(resp.status, b"".join(chunks), resp.getheader("Content-Type", ""))
    except SourceUnreachable:
        raise
    except (socket.timeout, TimeoutError):
        raise SourceTimeout(f"{what} at {base} did not answer within {timeout:.3g}s; it is down or slow "
                            f"(try a shorter range or a larger timeout)") from None
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise SourceTimeout(f"{what} at {base} did not answer within {timeout:.3g}s; it is down or slow "
                                f"(try a shorter range or a larger timeout)") from None
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise SourceUnreachable(f"{what} at {base} is not reachable ({why}); is it running, and is the URL "
                                f"right?") from None
    finally:
        watchdog.cancel()
        conn.close()


def get_json(base: str, path: str, params: Optional[Mapping[str, Any]] = None, *, timeout: float, what: str,
             headers: Optional[Mapping[str, str]] = None) -> Any:
    """`get` for APIs that answer JSON on success; an error status raises with the server's words."""
    answer = get(base, path, params, timeout=timeout, what=what, headers=headers)
    if answer.status >= 400:
        raise SourceUnreachable(f"{what} at {base} answered {answer.status} to {path}: {answer.text()}")
    return answer.json(what, base)
