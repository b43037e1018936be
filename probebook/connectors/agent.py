"""Clients of running agents: one instance by URL (`AgentClient`), a service of N instances over
HTTP (`ServiceClient`), or a fleet through Redis (`RedisFleet`, in `redis_fleet`).

>>> agent = AgentClient("http://127.0.0.1:7800", token="s3cret-token")           # doctest: +SKIP
>>> probe = agent.add_probe({"kind": "log", "where": "shop/cart.py:42", "template": "total={total}"})  # doctest: +SKIP
>>> [e.data["message"] for e in agent.events(timeout=5).events]                  # doctest: +SKIP
['total=12.5']

>>> shop = ServiceClient("/run/shop/ports", token="s3cret-token")              # doctest: +SKIP
>>> shop.add_probe({"kind": "log", "where": "shop/cart.py:42", "template": "hit"}).summary()  # doctest: +SKIP
'probe f-1a2b3c: installed on 4 of 4 instances'

Reading events keeps a cursor per instance (the agent's sequence numbers), so a reconnect
neither loses nor repeats an event. Connection failures are retried with backoff; requests that
change something are retried only when they cannot have reached the agent.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union
from urllib.parse import quote, urlencode, urlsplit

from probebook.errors import AgentAuthError, AgentRequestError, AgentUnreachable, ConnectorError
from probebook.protocol.records import AgentHealth, ModuleSource, ProbeInfo, SourceFile, from_mapping
from probebook.protocol.resp import Backoff
from probebook.protocol.spec import ProbeSpec

from .agent_records import AgentEvent, EventPage, FleetProbe, InstanceResult, merge_events
from .redis_fleet import RedisFleet, fleet_probe_spec

__all__ = ["AgentClient", "ServiceClient", "RedisFleet", "read_port_dir"]

T = TypeVar("T")
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


def read_port_dir(directory: str) -> List[str]:
    """Agent URLs from a directory of port files (`probebook agent run --port-file DIR/`): each
    ``<pid>.json`` holds ``{"url", "pid", "instance_id", "service"}``; a file may also hold just a
    URL, ``host:port`` or a port. Files of processes that no longer run here are skipped."""
    urls: List[str] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConnectorError(f"port-file directory {directory}: {exc.strerror or exc}") from None
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith(".") or ".tmp" in name or not os.path.isfile(path):
            continue  # a port file being written
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read().strip()
        except OSError:
            continue  # removed while we read: that instance has gone
        url = _url_from_port_file(text)
        if url:
            urls.append(url)
    return urls


def _url_from_port_file(text: str) -> str:
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return ""
        if not isinstance(data, dict) or not data.get("url") or _gone(data.get("pid"), str(data["url"])):
            return ""
        return str(data["url"])
    if text.startswith(("http://", "https://")):
        return text.split()[0]
    if text.isdigit():
        return f"http://127.0.0.1:{text}"
    host, _, port = text.rpartition(":")
    return f"http://{host}:{port}" if host and port.isdigit() else ""


def _gone(pid: Any, url: str) -> bool:
    """True when `url` is on this machine and process `pid` has ended (killed before it could
    remove its port file)."""
    if not isinstance(pid, int) or urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists, but belongs to someone else
    return False


class ServiceClient:
    """All instances of one service over HTTP: a list of agent URLs, or a port-file directory
    (looked at again by `refresh`, so new instances join and gone ones leave)."""

    def __init__(self, agents: Union[str, Sequence[str]], token: str, timeout: float = 10.0, retries: int = 3,
                 **client_options: Any) -> None:
        self.directory = agents if isinstance(agents, str) and os.path.isdir(agents) else None
        self._static = [agents] if isinstance(agents, str) and self.directory is None else list(agents or [])
        self._options = dict(token=token, timeout=timeout, retries=retries, **client_options)
        self.clients: Dict[str, AgentClient] = {}  # url -> client
        self.errors: Dict[str, str] = {}  # instance or url -> the last failure, cleared on success
        self.probe_ids: Dict[str, Dict[str, str]] = {}  # fleet probe id -> instance_id -> probe id
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="probebook-service")
        self.refresh()

    def refresh(self) -> List[AgentClient]:
        urls = read_port_dir(self.directory) if self.directory else self._static
        for url in urls:
            if url not in self.clients:
                self.clients[url] = AgentClient(url, **self._options)
        for url in [u for u in self.clients if u not in urls]:
            self.clients.pop(url).close()
        if not self.clients:
            where = f"port-file directory {self.directory}" if self.directory else "the URL list"
            raise ConnectorError(f"no agents found in {where}; start them with probebook agent run --port-file")
        return list(self.clients.values())

    def _each(self, call: Callable[[AgentClient], T]) -> Dict[str, Union[T, ConnectorError]]:
        """Run `call` on every instance at once: instance label -> its answer or its error."""
        clients = list(self.clients.values())

        def run(client: AgentClient) -> Tuple[str, Union[T, ConnectorError]]:
            try:
                label = client.instance_id
                out: Union[T, ConnectorError] = call(client)
                self.errors.pop(label, None)
            except ConnectorError as exc:
                label = client._identity[0] if client._identity else client.name
                self.errors[label] = str(exc)
                out = exc
            return label, out

        return dict(self._pool.map(run, clients))

    def health(self) -> Dict[str, Union[AgentHealth, ConnectorError]]:
        return self._each(lambda c: c.health())

    def set_redaction(self, **changes: Any) -> Dict[str, InstanceResult]:
        answers = self._each(lambda c: c.set_redaction(**changes))
        return {iid: _result(iid, a, lambda r: {"redaction": r}) for iid, a in answers.items()}

    def set_limits(self, **changes: Any) -> Dict[str, InstanceResult]:
        answers = self._each(lambda c: c.set_limits(**changes))
        return {iid: _result(iid, a, lambda r: {"limits": r}) for iid, a in answers.items()}

    def probes(self) -> Dict[str, Union[List[ProbeInfo], ConnectorError]]:
        return self._each(lambda c: c.probes())

    def add_probe(self, spec: Spec) -> FleetProbe:
        """Place the probe on every instance; the fleet id is also each instance's probe id."""
        body = fleet_probe_spec(spec)
        answers = self._each(lambda c: c.add_probe(body))
        results = {iid: _result(iid, a, lambda p: {"probe": asdict(p)}, 201) for iid, a in answers.items()}
        probe = FleetProbe(body["id"], results)
        self.probe_ids[probe.id] = probe.probe_ids
        return probe

    def remove_probe(self, fleet_id: str) -> Dict[str, InstanceResult]:
        ids = self.probe_ids.get(fleet_id, {})
        answers = self._each(lambda c: c.remove_probe(ids.get(c.instance_id, fleet_id)))
        return {iid: _result(iid, a, lambda p: {"probe": asdict(p)}) for iid, a in answers.items()}

    def remove_all(self) -> Dict[str, InstanceResult]:
        answers = self._each(lambda c: c.remove_all())
        return {iid: _result(iid, a, lambda n: {"removed": n}) for iid, a in answers.items()}

    def source_file(self, path: str, start: Optional[int] = None, end: Optional[int] = None) -> SourceFile:
        """The file as one instance runs it: the first that answers (they run the same code)."""
        last: Optional[ConnectorError] = None
        for client in list(self.clients.values()):
            try:
                return client.source_file(path, start, end)
            except ConnectorError as exc:
                last = exc
        raise last or ConnectorError("no instance to read source from")

    def source_modules(self) -> List[ModuleSource]:
        """The modules one instance has loaded: the first that answers."""
        last: Optional[ConnectorError] = None
        for client in list(self.clients.values()):
            try:
                return client.source_modules()
            except ConnectorError as exc:
                last = exc
        raise last or ConnectorError("no instance to read source from")

    def events(self, timeout: float = 0.0, limit: int = 1000) -> List[AgentEvent]:
        """New events of every instance, merged in time order and labelled with the instance id.
        An instance that cannot be reached keeps its cursor and is read again next time (see
        `errors`); `AgentUnreachable` only when none answered."""
        pages = self._each(lambda c: c.events(timeout=timeout, limit=limit))
        got = [p for p in pages.values() if isinstance(p, EventPage)]
        if pages and not got:
            first = next(iter(pages.values()))
            raise AgentUnreachable(f"no instance answered: {first}")
        return merge_events([e for p in got for e in p.events])

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self._pool.shutdown(wait=False)


def _result(iid: str, answer: Any, body_of: Callable[[Any], Dict[str, Any]], status: int = 200) -> InstanceResult:
    if isinstance(answer, AgentRequestError):
        return InstanceResult(iid, answer.status, {"error": str(answer)}, str(answer))
    if isinstance(answer, ConnectorError):
        return InstanceResult(iid, 0, {}, str(answer))
    return InstanceResult(iid, status, body_of(answer))
