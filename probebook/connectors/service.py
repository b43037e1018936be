"""Every instance of one service over HTTP (`ServiceClient`): a list of agent URLs, or a directory
of port files that it follows while the service runs.

>>> shop = ServiceClient("/run/shop/ports", token="s3cret-token")              # doctest: +SKIP
>>> shop.add_probe({"kind": "log", "where": "shop/cart.py:42", "template": "hit"}).summary()  # doctest: +SKIP
'probe f-1a2b3c: installed on 4 of 4 instances'

Following a port-file directory (`follow`, run by `events` at most every `follow_every` seconds, so
an investigation's collector keeps it current):

- a new instance (a worker that replaced one recycled by ``--max-requests``, crashed or reloaded)
  gets every probe placed through this client that is still live, with what is left of its TTL,
  before its events are read;
- an instance whose process ended (or whose port file went) drops out;
- a process that is the parent of other instances of the service (gunicorn's master, uvicorn's
  supervisor, Django's autoreloader) is a supervisor: asked like the others, since it may run app
  code too, but not counted as an instance, and its answers never decide a probe's status.

Each change is a line in `changes`, for the investigation's timeline.

"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Set, Tuple, TypeVar, Union
from urllib.parse import urlsplit

from probebook.errors import AgentRequestError, AgentUnreachable, ConnectorError
from probebook.protocol.kinds import ENDED
from probebook.protocol.portfiles import process_gone
from probebook.protocol.records import AgentHealth, ModuleSource, ProbeInfo, SourceFile
from probebook.protocol.spec import ProbeSpec

from .agent import AgentClient
from .agent_records import AgentEvent, EventPage, FleetProbe, InstanceResult, merge_events
from .following import LiveProbes, supervisors
from .redis_fleet import fleet_probe_spec

__all__ = ["ServiceClient", "read_port_dir", "read_port_files"]

T = TypeVar("T")
Spec = Union[ProbeSpec, Mapping[str, Any]]


def read_port_dir(directory: str) -> List[str]:
    """Agent URLs from a directory of port files (`probebook agent run --port-file DIR/`); see
    `read_port_files`."""
    return [info["url"] for info in read_port_files(directory)]


def read_port_files(directory: str) -> List[Dict[str, Any]]:
    """What each port file of `directory` says: ``<pid>.json`` holds ``{"url", "pid", "ppid",
    "instance_id", "service"}``; a file may also hold just a URL, ``host:port`` or a port (then only
    "url" is known). Files of processes that no longer run here (or wait, dead, to be reaped) are
    skipped, and removed when the process has gone for good."""
    out: List[Dict[str, Any]] = []
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
        info = _port_file(text)
        if info and info.get("gone"):  # its process ended without its exit handlers (SIGKILL, SIGTERM)
            try:
                os.remove(path)  # stale: the next reader tidies it away
            except OSError:
                pass
        elif info:
            out.append(info)
    return out


def _port_file(text: str) -> Optional[Dict[str, Any]]:
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not data.get("url"):
            return None
        return {**data, "url": str(data["url"]), "gone": _gone(data.get("pid"), str(data["url"]))}
    if text.startswith(("http://", "https://")):
        return {"url": text.split()[0]}
    if text.isdigit():
        return {"url": f"http://127.0.0.1:{text}"}
    host, _, port = text.rpartition(":")
    return {"url": f"http://{host}:{port}"} if host and port.isdigit() else None


def _gone(pid: Any, url: str) -> bool:
    """True when `url` is on this machine and process `pid` has ended (killed before it could
    remove its port file), or is a zombie its parent has not reaped yet."""
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1") and process_gone(pid)


class ServiceClient:
    """All instances of one service over HTTP: a list of agent URLs, or a port-file directory that
    `follow` looks at again (new instances get the live probes, gone ones leave)."""

    def __init__(self, agents: Union[str, Sequence[str]], token: str, timeout: float = 10.0, retries: int = 3,
                 follow_every: float = 0.5, backlog: bool = True, **client_options: Any) -> None:
        """`backlog`: read the events the agents already hold (other clients' probes too); False starts
        each instance there now (an instance that joins later is read from its start)."""
        self.directory = agents if isinstance(agents, str) and os.path.isdir(agents) else None
        self._static = [agents] if isinstance(agents, str) and self.directory is None else list(agents or [])
        self._options = dict(token=token, timeout=timeout, retries=retries, **client_options)
        self.follow_every = follow_every
        self.clients: Dict[str, AgentClient] = {}  # url -> client
        self.supervisors: Set[str] = set()  # urls of the clients that are supervisors
        self.errors: Dict[str, str] = {}  # instance or url -> the last failure, cleared on success
        self.probe_ids: Dict[str, Dict[str, str]] = {}  # fleet probe id -> instance_id -> probe id
        self.changes: Deque[str] = deque(maxlen=200)  # instances that joined or left, for a timeline
        self._live = LiveProbes()  # placed through this client and not ended: what a joiner gets
        self._follow_lock = threading.Lock()
        self._followed = time.monotonic()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="probebook-service")
        self.refresh()
        if not backlog:
            for client, health in zip(list(self.clients.values()), self._pool.map(_events_seq, self.clients.values())):
                client.cursor = max(client.cursor, health)

    def refresh(self) -> List[AgentClient]:
        """Read the port files (or the URL list) again: clients for new instances, none for gone ones."""
        infos = read_port_files(self.directory) if self.directory else [{"url": u} for u in self._static]
        urls = [i["url"] for i in infos]
        for url in urls:
            if url not in self.clients:
                self.clients[url] = AgentClient(url, **self._options)
        for url in [u for u in self.clients if u not in urls]:
            self.clients.pop(url).close()
        self.supervisors = supervisors(infos) if len(infos) > 1 else set()
        if not self.clients:
            where = f"port-file directory {self.directory}" if self.directory else "the URL list"
            raise ConnectorError(f"no agents found in {where}; start them with probebook agent run --port-file")
        return list(self.clients.values())

    def follow(self) -> List[str]:
        """Instances that joined get the live probes; gone ones leave. What changed, in words."""
        if self.directory is None:
            return []
        with self._follow_lock:
            self._followed = time.monotonic()
            before = {u: c for u, c in self.clients.items()}
            try:
                self.refresh()
            except ConnectorError:
                self.clients = {}  # every instance has gone; the next look may find new ones
            said: List[str] = []
            for url, client in before.items():
                if url not in self.clients:
                    said.append(f"instance {_label(client)} left ({url})")
            for url in [u for u in self.clients if u not in before]:
                said.append(self._join(self.clients[url]))
            self.changes.extend(said)
            return said

    def _join(self, client: AgentClient) -> str:
        """Place the live probes on a new instance, but those it already holds (a forked worker
        inherits its parent's)."""
        try:
            held = {p.id for p in client.probes() if p.status not in ENDED}
        except ConnectorError as exc:
            return f"instance {_label(client)} joined ({client.url}) but did not list its probes: {exc}"
        for fid in held & self._live.ids():
            self.probe_ids.setdefault(fid, {})[client.instance_id] = fid

        def place(body: Dict[str, Any]) -> None:
            self.probe_ids.setdefault(body["id"], {})[client.instance_id] = client.add_probe(body).id

        try:
            label = client.instance_id  # asks the agent once when not known yet
        except ConnectorError:
            label = _label(client)
        return self._live.join(label, held, place, where=client.url)

    def _follow_due(self) -> None:
        if self.directory is not None and time.monotonic() - self._followed >= self.follow_every:
            self.follow()

    def is_supervisor(self, instance_id: str) -> bool:
        """Whether `instance_id` is a supervisor's (known once it has answered; asks nobody)."""
        bosses = self.supervisors
        return any(c._identity is not None and c._identity[0] == instance_id
                   for u, c in list(self.clients.items()) if u in bosses)

    def _each(self, call: Callable[[AgentClient], T]) -> Dict[str, Union[T, ConnectorError]]:
        """Run `call` on every instance at once: instance label -> its answer or its error."""
        clients = list(self.clients.values())

        def run(client: AgentClient) -> Tuple[str, Union[T, ConnectorError]]:
            try:
                label = client.instance_id
                out: Union[T, ConnectorError] = call(client)
                self.errors.pop(label, None)
            except ConnectorError as exc:
                label = _label(client)
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
        """Place the probe on every instance; the fleet id is also each instance's probe id. It is
        placed on instances that join later too, until it ends or is removed."""
        body = fleet_probe_spec(spec)
        with self._follow_lock:  # an instance joining meanwhile gets it once, from here or from `follow`
            answers = self._each(lambda c: c.add_probe(body))
            results = {iid: _result(iid, a, lambda p: {"probe": asdict(p)}, 201) for iid, a in answers.items()}
            apart = tuple(c.instance_id for u, c in list(self.clients.items()) if u in self.supervisors)
            probe = FleetProbe(body["id"], results, apart)
            self.probe_ids[probe.id] = probe.probe_ids
            self._live.placed(probe, body)
        return probe

    def remove_probe(self, fleet_id: str) -> Dict[str, InstanceResult]:
        self._live.drop(fleet_id)
        ids = self.probe_ids.get(fleet_id, {})
        answers = self._each(lambda c: c.remove_probe(ids.get(c.instance_id, fleet_id)))
        return {iid: _result(iid, a, lambda p: {"probe": asdict(p)}) for iid, a in answers.items()}

    def remove_all(self) -> Dict[str, InstanceResult]:
        self._live.drop()
        answers = self._each(lambda c: c.remove_all())
        return {iid: _result(iid, a, lambda n: {"removed": n}) for iid, a in answers.items()}

    def source_file(self, path: str, start: Optional[int] = None, end: Optional[int] = None) -> SourceFile:
        """The file as one instance runs it: the first that answers (they run the same code; a
        supervisor last, it may not have loaded the app)."""
        return self._first(lambda c: c.source_file(path, start, end))

    def source_modules(self) -> List[ModuleSource]:
        """The modules one instance has loaded: the first that answers (a supervisor last)."""
        return self._first(lambda c: c.source_modules())

    def _first(self, call: Callable[[AgentClient], T]) -> T:
        last: Optional[ConnectorError] = None
        for _url, client in sorted(self.clients.items(), key=lambda uc: uc[0] in self.supervisors):
            try:
                return call(client)
            except ConnectorError as exc:
                last = exc
        raise last or ConnectorError("no instance to read source from")

    def events(self, timeout: float = 0.0, limit: int = 1000) -> List[AgentEvent]:
        """New events of every instance, merged in time order and labelled with the instance id.
        An instance that cannot be reached keeps its cursor and is read again next time (see
        `errors`); `AgentUnreachable` only when none answered. A port-file directory is followed
        first (`follow`), at most every `follow_every` seconds."""
        self._follow_due()
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


def _events_seq(client: AgentClient) -> int:
    """Where the agent's event sequence is now (0 when it cannot say)."""
    try:
        return int(client.health().events_seq or 0)
    except (ConnectorError, TypeError, ValueError):
        return 0


def _label(client: AgentClient) -> str:
    """The instance id when known (asked once), else the client's name; never raises."""
    return client._identity[0] if client._identity and client._identity[0] else client.name


def _result(iid: str, answer: Any, body_of: Callable[[Any], Dict[str, Any]], status: int = 200) -> InstanceResult:
    if isinstance(answer, AgentRequestError):
        return InstanceResult(iid, answer.status, {"error": str(answer)}, str(answer))
    if isinstance(answer, ConnectorError):
        return InstanceResult(iid, 0, {}, str(answer))
    return InstanceResult(iid, status, body_of(answer))
