"""Clients of running agents: one instance by URL (`AgentClient`); a service of N instances over
HTTP is `ServiceClient` (in `service`), a fleet through Redis `RedisFleet` (in `redis_fleet`).

>>> agent = AgentClient("http://127.0.0.1:7800", token="s3cret-token")           # doctest: +SKIP
>>> probe = agent.add_probe({"kind": "log", "where": "shop/cart.py:42", "template": "total={total}"})  # doctest: +SKIP
>>> [e.data["message"] for e in agent.events(timeout=5).events]                  # doctest: +SKIP
['total=12.5']

Reading events keeps a cursor per instance (the agent's sequence numbers), so a reconnect
neither loses nor repeats an event. Connection failures are retried with backoff; requests that
change something are retried only when they cannot have reached the agent.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote, urlencode, urlsplit

from probebook.errors import AgentAuthError, AgentRequestError, AgentUnreachable, ConnectorError
from probebook.protocol.records import AgentHealth, ModuleSource, ProbeInfo, SourceFile, from_mapping
from probebook.protocol.resp import Backoff
from probebook.protocol.spec import ProbeSpec

from .agent_records import AgentEvent, EventPage
from .redis_fleet import RedisFleet

__all__ = ["AgentClient", "RedisFleet"]

Spec = Union[ProbeSpec, Mapping[str, Any]]
_RETRYABLE = (OSError, http.client.HTTPException)


class AgentClient:
    """One agent, over HTTP(S). Thread-safe: each thread gets its own keep-alive connection."""

    def __init__(self, url: str, token: str, name: Optional[str] = None, timeout: float = 10.0,
                 retries: int = 3, cafile: Optional[str] = None, verify: bool = True, max_idle: float = 5.0) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectorError(f"agent URL: expected http://HOST:PORT or https://HOST:PORT, got {url!r}")
        self.url, self.token, self.timeout, self.retries = url.rstrip("/"), token, timeout, max(1, retries)
        self.max_idle = max_idle  # reuse a kept-alive connection only this long: agents close idle ones
        self.name = name or parts.netloc
        self.cursor = 0  # `next` of the last page read through `events()` without an explicit `after`
        self._parts = parts
        self._ssl = None
        if parts.scheme == "https":
            self._ssl = ssl.create_default_context(cafile=cafile)
            if not verify:
                self._ssl.check_hostname, self._ssl.verify_mode = False, ssl.CERT_NONE
        self._local = threading.local()
        self._open: List[http.client.HTTPConnection] = []  # every thread's, so that close() reaches all
        self._open_lock = threading.Lock()
        self._identity: Optional[Tuple[str, str]] = None

    # ------------------------------------------------------------------ operations
    def health(self) -> AgentHealth:
        body = self._call("GET", "/v1/health")
        self._identity = (str(body.get("instance_id", "")), str(body.get("service", "")))
        return from_mapping(AgentHealth, body)

    def probes(self) -> List[ProbeInfo]:
        return [from_mapping(ProbeInfo, p) for p in self._call("GET", "/v1/probes")["probes"]]

    def add_probe(self, spec: Spec) -> ProbeInfo:
        """Place a probe; `AgentRequestError` (status 400, `field`) when the spec is wrong."""
        body = spec.to_dict() if isinstance(spec, ProbeSpec) else dict(spec)
        return from_mapping(ProbeInfo, self._call("POST", "/v1/probes", body=body)["probe"])

    def remove_probe(self, probe_id: str) -> ProbeInfo:
        return from_mapping(ProbeInfo, self._call("DELETE", f"/v1/probes/{quote(probe_id, safe='')}")["probe"])

    def remove_all(self) -> int:
        return int(self._call("DELETE", "/v1/probes")["removed"])

    def events(self, after: Optional[int] = None, timeout: float = 0.0, limit: int = 1000) -> EventPage:
        """Events after `after` (default: where the last call ended), waiting up to `timeout` s."""
        start = self.cursor if after is None else after
        query = {"after": start, "limit": limit, "timeout": timeout}
        body = self._call("GET", "/v1/events", query=query, timeout=self.timeout + timeout)
        iid, service = str(body.get("instance_id") or self.instance_id), str(body.get("service") or self.service)
        page = EventPage([AgentEvent.from_dict(e, iid, service) for e in body["events"]], int(body["next"]),
                         int(body.get("missed", 0)), int(body.get("dropped_total", 0)))
        if after is None:
            self.cursor = max(self.cursor, page.next)
        return page

    def source_modules(self) -> List[ModuleSource]:
        return [from_mapping(ModuleSource, m) for m in self._call("GET", "/v1/source/modules")["modules"]]

    def source_file(self, path: str, start: Optional[int] = None, end: Optional[int] = None) -> SourceFile:
        query: Dict[str, Any] = {"path": path}
        query.update({k: v for k, v in (("start", start), ("end", end)) if v is not None})
        body = dict(self._call("GET", "/v1/source/file", query=query))
        body["lines"] = [(int(n), str(text)) for n, text in body.get("lines", [])]
        return from_mapping(SourceFile, body)

    def set_redaction(self, **changes: Any) -> Dict[str, Any]:
        """E.g. ``set_redaction(add_identifiers=["card"])``; answers the redaction now in force."""
        return dict(self._call("PUT", "/v1/config/redaction", body=changes)["redaction"])

    def set_limits(self, **changes: Any) -> Dict[str, Any]:
        """E.g. ``set_limits(cpu_budget=0.05)``; answers the limits now in force."""
        return dict(self._call("PUT", "/v1/config/limits", body=changes)["limits"])

    @property
    def instance_id(self) -> str:
        if self._identity is None:
            self.health()
        return self._identity[0] if self._identity else ""

    @property
    def service(self) -> str:
        if self._identity is None:
            self.health()
        return self._identity[1] if self._identity else ""

    def close(self) -> None:
        """Close every thread's connection; the next call opens a new one."""
        with self._open_lock:
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()
            with self._open_lock:
                self._open = [c for c in self._open if c is not conn]

    # ------------------------------------------------------------------ transport
    def _connection(self, timeout: float) -> Tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None and time.monotonic() - getattr(self._local, "used", 0.0) > self.max_idle:
            self._drop_connection()
            conn = None
        if conn is not None and conn in self._open:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        host, port = self._parts.hostname or "127.0.0.1", self._parts.port
        if self._ssl is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self._local.conn = conn
        with self._open_lock:
            self._open.append(conn)
        return conn, False

    def _call(self, method: str, path: str, query: Optional[Mapping[str, Any]] = None,
              body: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None) -> Dict[str, Any]:
        target = self._parts.path + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        backoff = Backoff(initial=0.05, maximum=1.0)
        for attempt in range(self.retries):
            conn, reused = self._connection(timeout or self.timeout)
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
                self._local.used = time.monotonic()
                if status == 408 and reused and attempt + 1 < self.retries:
                    # the agent timed out the idle connection before this request came: never seen
                    raise http.client.RemoteDisconnected("the agent closed the idle connection (408)")
            except _RETRYABLE as exc:
                self._drop_connection()
                # a POST is sent again only when it cannot have arrived: refused, or a kept-alive
                # connection the agent had already closed
                safe = method != "POST" or isinstance(exc, ConnectionRefusedError) or (reused and isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)))
                if not safe or attempt + 1 >= self.retries:
                    raise AgentUnreachable(f"agent {self.name}: {method} {path} failed: "
                                           f"{type(exc).__name__}: {exc or 'no answer'}") from None
                time.sleep(backoff.next())
                continue
            return self._answer(method, path, status, raw)
        raise AssertionError("unreachable")

    def _answer(self, method: str, path: str, status: int, raw: bytes) -> Dict[str, Any]:
        try:
            body = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            body = {"error": raw[:200].decode("utf-8", "replace")}
        if not isinstance(body, dict):
            body = {"error": f"unexpected answer {str(body)[:100]}"}
        if status >= 400:
            why = " ".join(str(body.get("error") or f"status {status}").split())
            cls = AgentAuthError if status in (401, 403, 429) else AgentRequestError
            raise cls(f"agent {self.name}: {method} {path}: {status} {why}", status, str(body.get("field", "")))
        return body


def __getattr__(name: str) -> Any:
    """`ServiceClient` and `read_port_dir` moved to `probebook.connectors.service`; old imports work."""
    if name in ("ServiceClient", "read_port_dir"):
        from . import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
