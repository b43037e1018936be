"""An investigation: connected services, probes placed, evidence collected, a timeline.

This is the typed API behind every magic, runbook and the assistant:

>>> inv = Investigation("incident-42.duckdb")                                   # doctest: +SKIP
>>> inv.connect("orders", "http://127.0.0.1:7801", token_file="tokens.txt")      # doctest: +SKIP
>>> inv.probe("log", "orders", "orders/app.py:42", template="total={total}", alias="tot")  # doctest: +SKIP
>>> inv.sql("SELECT message FROM logs")                                         # doctest: +SKIP
>>> inv.telemetry.promql("rate(http_requests_total[1m])", range="30m")          # doctest: +SKIP

A service is reached through a `ServiceHandle` (HTTP, a Redis fleet, or an agent in this process
with `attach`). A service that dies shows as unhealthy (`services()`), its evidence stays in the store, and the
other services keep being collected.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, TypeVar, Union

import polars as pl

from probebook.protocol.tokens import Tokens, client_secret
from probebook.agent.engine import Agent
from probebook.protocol.records import ModuleSource, SourceFile
from probebook.protocol.spec import ProbeSpec
from probebook.connectors import RedisFleet, ServiceClient
from probebook.connectors.agent_records import AgentEvent
from probebook.errors import ConnectorError, EvidenceError, SessionError, one_line
from probebook.evidence import EvidenceStore

from .collector import Collector
from .handles import ServiceHandle, ServiceRow, SourceReader, service_row
from .inprocess import InProcessHandle
from .records import COUNTS, ProbeRecord, SnapshotResult, final_counts
from .telemetry import Telemetry

__all__ = ["Investigation", "ProbeRecord", "SnapshotResult", "SessionError", "Duration", "Rate"]

Duration = Union[float, int, str]  # seconds, or "30s", "15m", "1h"
Rate = Union[float, int, str]  # events a second, or "10/m"
T = TypeVar("T")


class Investigation:
    """Everything one investigation knows. `path`: the DuckDB file (":memory:" by default)."""

    def __init__(self, path: str = ":memory:", read_only: bool = False) -> None:
        self.store = EvidenceStore(path, read_only)
        self.collector = Collector(self.store)
        self.handles: Dict[str, ServiceHandle] = {}
        self.targets: Dict[str, str] = {}
        self.unreachable: Dict[str, str] = {}  # services whose agents did not answer `connect`: why
        self._telemetry: Optional[Telemetry] = None
        self.records: Dict[str, ProbeRecord] = {}
        self._lock = threading.RLock()
        self._aliases = 0
        self._closed = False
        atexit.register(_close_at_exit, weakref.ref(self))

    @classmethod
    def open(cls, path: str) -> "Investigation":
        """A saved investigation (`Investigation(FILE)`, `--out FILE`) read again, read-only: its evidence,
        timeline and verdicts, for a postmortem; nothing is connected and nothing is written."""
        if not os.path.isfile(path):
            raise SessionError(f"{path}: no saved investigation there; give the .duckdb file an investigation wrote")
        return cls(path, read_only=True)

    # ------------------------------------------------------------------ services
    def connect(self, name: str, target: Union[str, Sequence[str]], token: Optional[str] = None,
                token_file: Optional[str] = None, backlog: bool = False) -> ServiceRow:
        """Connect to service `name`: one agent URL, a list of URLs, or a port-file directory. Events
        are read from now on (`backlog`: also those the agents hold already, other clients' too)."""
        _check_name(name, "service name")
        secret = client_secret(token, token_file)
        if secret is None:
            raise SessionError("no token: pass token= or token_file= (or set PROBEBOOK_TOKEN / PROBEBOOK_TOKEN_FILE)")
        try:
            handle = ServiceClient(target, token=secret, backlog=backlog)
            health = handle.health()
        except ConnectorError as exc:
            self.unreachable[name] = one_line(exc, 200)
            raise SessionError(f"cannot connect to {name}: {exc}") from None
        if all(isinstance(h, Exception) for h in health.values()):
            first = next(iter(health.values()))
            handle.close()
            self.unreachable[name] = one_line(first, 200)
            raise SessionError(f"cannot connect to {name}: {first}")
        self.unreachable.pop(name, None)
        self._attach(name, handle, target if isinstance(target, str) else ", ".join(target))
        return self._service_row(name)

    def connect_redis(self, redis_url: str, service: str, token: Optional[str] = None,
                      token_file: Optional[str] = None, token_name: Optional[str] = None) -> ServiceRow:
        """Reach every instance of `service` through the Redis broker its agents registered with."""
        _check_name(service, "service name")
        if token_file:
            tokens = Tokens.from_file(token_file)
            token_name = token_name or next(iter(tokens))
            token = tokens[token_name]
        if not token:
            raise SessionError("no token: pass token= (and token_name=) or token_file=")
        try:
            fleet = RedisFleet(redis_url, service, token_name or "default", token)
            if not fleet.instances():
                raise SessionError(f"no instances of {service} registered at {redis_url}; start them with --broker")
        except ConnectorError as exc:
            raise SessionError(f"cannot reach {redis_url}: {exc}") from None
        self._attach(service, fleet, redis_url)
        return self._service_row(service)

    def attach(self, name: str, agent: Agent, audit_path: Optional[str] = None) -> ServiceRow:
        """Investigate `agent`, an agent of this very process, as service `name` (see `InProcessHandle`).

        >>> from probebook.agent import Agent
        >>> inv = Investigation()
        >>> inv.attach("self", Agent())["health"]
        'ok'
        >>> inv.close()
        """
        _check_name(name, "service name")
        self._attach(name, InProcessHandle(agent, name, audit_path=audit_path), "in-process")
        return self._service_row(name)

    def _attach(self, name: str, handle: ServiceHandle, target: str) -> None:
        with self._lock:
            old = self.handles.pop(name, None)
            if old is not None:
                self.collector.remove(name)
                old.close()
            self.handles[name] = handle
            self.targets[name] = target
        self.collector.add(name, handle)
        self.store.add_timeline(f"connected to {name} ({target})", source="connect")

    def handle(self, name: str) -> ServiceHandle:
        """The handle of connected service `name`; `SessionError` naming the connected ones if none."""
        try:
            return self.handles[name]
        except KeyError:
            known = ", ".join(sorted(self.handles)) or "none yet (use %connect)"
            raise SessionError(f"unknown service {name!r}; connected: {known}") from None

    def _service_row(self, name: str) -> ServiceRow:
        return service_row(name, self.targets.get(name, ""), self.handles[name], self.collector.errors.get(name, ""))

    def services(self) -> pl.DataFrame:
        """One row per connected service: instances, Python, probes, health."""
        rows = [self._service_row(n) for n in sorted(self.handles)]
        return pl.DataFrame(rows) if rows else pl.DataFrame(schema={"service": pl.Utf8, "health": pl.Utf8})

    def source(self, service: str, path: str, start: Optional[int] = None, end: Optional[int] = None) -> str:
        """The code a service is running, with line numbers (from one of its instances)."""
        src = self.source_file(service, path, start, end)
        width = len(str(src.lines[-1][0])) if src.lines else 1
        head = f"# {src.file}  sha256:{src.sha256[:12]}\n"
        return head + "\n".join(f"{n:>{width}}  {text}" for n, text in src.lines)

    def source_file(self, service: str, path: str, start: Optional[int] = None,
                    end: Optional[int] = None) -> SourceFile:
        """The lines of a file as `service` runs it (typed: file, sha256, (number, text) lines)."""
        return self._reader(service, lambda r: r.source_file(path, start, end))

    def modules(self, service: str) -> List[ModuleSource]:
        """The modules `service` has loaded, with their files and content hashes."""
        return self._reader(service, lambda r: r.source_modules())

    def _reader(self, service: str, call: Callable[[SourceReader], T]) -> T:
        handle = self.handle(service)
        if not isinstance(handle, SourceReader):
            raise SessionError(f"{service}: source browsing needs HTTP access to an instance")
        try:
            return call(handle)
        except ConnectorError as exc:
            raise SessionError(f"{service}: {exc}") from None

    # ------------------------------------------------------------------ probes
    def probe(self, kind: str, service: str, where: str, *, when: Optional[str] = None,
              template: Optional[str] = None, capture: Iterable[str] = (),
              metric: Union[str, Mapping[str, str], None] = None, ttl: Optional[Duration] = None,
              rate: Optional[Rate] = None, max_hits: Optional[int] = None, name: Optional[str] = None,
              alias: Optional[str] = None, limits: Optional[Mapping[str, int]] = None,
              partial: bool = False, pending: bool = False) -> ProbeRecord:
        """Place a probe on every instance of `service`; bad specs raise before anything is sent.
        `ttl`: seconds or ``"15m"``; `rate`: events a second or ``"10/m"``; `metric`: a name or
        ``{"name", "type", "value", "unit"}``; `limits`: capture limits (``{"max_depth": 1}``).
        An instance that refuses it is an error (the others' copies are removed) unless `partial`;
        one that does not answer is not (it is in the record's summary). `pending`: a file path found in no
        loaded module and on no instance's disk waits for it instead of being refused."""
        raw: Dict[str, object] = {"kind": kind, "where": where}
        if pending:
            raw["pending"] = True
        for key, value in (("when", when), ("template", template), ("metric", metric), ("ttl", ttl),
                           ("rate", rate), ("max_hits", max_hits), ("name", name),
                           ("limits", dict(limits) if limits else None)):
            if value is not None:
                raw[key] = value
        capture = list(capture)
        if capture:
            raw["capture"] = capture
        spec = ProbeSpec.from_dict(raw)  # SpecError here, before any instance sees it
        handle = self.handle(service)
        with self._lock:
            if alias is not None:
                _check_name(alias, "alias")
                if alias in self.records and not self.records[alias].removed:
                    raise SessionError(f"alias {alias!r} is in use; remove it first (%probe rm {alias}) or pick another")
            else:
                self._aliases += 1
                alias = f"{kind}{self._aliases}"
        try:
            placed = handle.add_probe(spec)
        except ConnectorError as exc:
            raise SessionError(f"{service}: {exc}") from None
        took = [iid for iid, r in placed.deciding.items() if r.ok]
        refused = {iid: r.message for iid, r in placed.deciding.items() if not r.ok and r.status}
        if not took or (refused and not partial):
            if placed.probe_ids:
                try:
                    handle.remove_probe(placed.id)  # nothing half-placed is left behind
                except ConnectorError:
                    pass
            iid, why = sorted((refused or placed.failed or {"?": "no instance answered"}).items())[0]
            raise SessionError(f"{service}: probe refused" + (
                f" by {len(refused)} of {len(placed.deciding)} instances ({iid}: {why}); pass partial=True to "
                f"keep it on the others" if took else f": {why}"))
        record = ProbeRecord(alias, placed.id, service, kind, where, spec.to_dict(), time.time(), placed)
        with self._lock:
            self.records[alias] = record
        self.store.record_probe(placed.id, service, kind, where, spec.to_dict(), alias)
        self.store.add_timeline(f"probe {alias} ({kind}) placed on {service} at {where}: {placed.summary()}",
                                source="probe", ref=placed.id)
        return record

    def remove(self, alias: Optional[str] = None, everything: bool = False) -> List[str]:
        """Remove one probe by alias, or all probes placed by this investigation."""
        with self._lock:
            if everything:
                targets = [r for r in self.records.values() if not r.removed]
            elif alias in self.records:
                targets = [self.records[alias]]  # type: ignore[index]
            else:
                known = ", ".join(sorted(a for a, r in self.records.items() if not r.removed)) or "none"
                raise SessionError(f"no probe {alias!r}; live probes: {known}")
        done = []
        for rec in targets:
            handle = self.handles.get(rec.service)
            if handle is not None:
                try:
                    rec.final = final_counts(handle.remove_probe(rec.fleet_id))
                except ConnectorError:
                    pass  # a dead service: its probes expire by TTL
            rec.removed, rec.removed_at = True, time.time()
            done.append(rec.alias)
            self.store.add_timeline(f"probe {rec.alias} removed from {rec.service}", source="probe", ref=rec.fleet_id)
        return done

    def extend(self, alias: str, ttl: Duration) -> ProbeRecord:
        """Give a live probe a fresh `ttl`: its spec is placed again, then the old probe removed
        (agents cannot change a TTL in place; this order leaves no gap, at worst a hit seen twice)."""
        with self._lock:
            old = self.records.get(alias)
            if old is None or old.removed:
                known = ", ".join(sorted(a for a, r in self.records.items() if not r.removed)) or "none"
                raise SessionError(f"no live probe {alias!r} to extend; live probes: {known}")
            old.removed = True  # frees the alias for the replacement
        keep = {k: old.spec[k] for k in ("when", "template", "capture", "metric", "rate", "max_hits", "name")
                if k in old.spec}
        try:
            new = self.probe(old.kind, old.service, old.where, ttl=ttl, alias=alias, **keep)  # type: ignore[arg-type]
        except BaseException:
            old.removed = False
            raise
        handle = self.handles.get(old.service)
        try:
            if handle is not None:
                handle.remove_probe(old.fleet_id)
        except ConnectorError:
            pass  # it expires by its TTL
        return new

    def probes(self) -> pl.DataFrame:
        """Probes placed here, live status and counts (`COUNTS`: hits were emitted, rate-limited or failed),
        summed over the instances that answered (`missing`: how many of the service's did not)."""
        rows = []
        live: Dict[str, Dict[str, Any]] = {}
        missing: Dict[str, int] = {}  # instances of a service that did not answer
        answered = set()
        for service in {r.service for r in self.records.values() if not r.removed}:
            try:
                per_instance = self.handles[service].probes()
            except (ConnectorError, KeyError):
                continue
            answered.add(service)
            apart = getattr(self.handles[service], "is_supervisor", None)
            workers = {iid: v for iid, v in per_instance.items() if apart is None or not apart(iid)}
            for infos in (workers or per_instance).values():  # a supervisor's pending copy is not the status
                if isinstance(infos, Exception):
                    missing[service] = missing.get(service, 0) + 1
                    continue
                for info in infos:
                    agg = live.setdefault(info.id, {"hits": 0, "emitted": 0, "rate_limited": 0, "filtered": 0,
                                                    "failed": 0, "statuses": set(), "expires_in": 0.0, "reason": ""})
                    for k in COUNTS:
                        agg[k] += getattr(info, k)
                    agg["statuses"].add(info.status)
                    agg["expires_in"] = max(agg["expires_in"], info.expires_in)
                    agg["reason"] = agg["reason"] or info.reason
        for rec in self.records.values():
            ids = set(rec.placed.probe_ids.values()) or {rec.fleet_id}
            aggs = [live[i] for i in ids if i in live] if not rec.removed else \
                [{**{k: rec.final.get(k, 0) for k in COUNTS}, "expires_in": 0.0, "reason": ""}]
            if not aggs and not rec.removed and rec.service in answered and not missing.get(rec.service):
                aggs = [rec.ended(self.store, ids)]  # every instance answered and none holds it: it ended
            status = "removed" if rec.removed else (
                "/".join(sorted(set().union(*(a["statuses"] for a in aggs)))) if aggs else "unknown")
            rows.append({
                "alias": rec.alias, "service": rec.service, "kind": rec.kind, "where": rec.where, "status": status,
                **{k: sum(a[k] for a in aggs) for k in COUNTS},
                "ttl_left_s": max((a["expires_in"] for a in aggs), default=0.0),
                "reason": next((a["reason"] for a in aggs if a["reason"]), ""), "id": rec.fleet_id,
                "missing": 0 if rec.removed else missing.get(rec.service, 0),
            })
        return pl.DataFrame(rows) if rows else pl.DataFrame(schema={"alias": pl.Utf8, "status": pl.Utf8})

    def snapshot(self, service: str, where: str, expressions: Sequence[str] = (), *, when: Optional[str] = None,
                 wait: float = 30.0, hits: int = 1, alias: Optional[str] = None,
                 progress: Optional[Callable[[int, int, float], None]] = None) -> SnapshotResult:
        """Place a snapshot probe, wait until `hits` snapshots arrive or `wait` s pass, remove it."""
        if hits < 1:
            raise SessionError("hits must be at least 1")
        # listen before placing: on a busy service the first snapshot can arrive before probe() returns
        seen: List[AgentEvent] = []
        ids: set = set()
        arrived = threading.Event()
        lock = threading.Lock()

        def matching() -> List[AgentEvent]:
            with lock:
                return [e for e in seen if e.probe_id in ids]

        def listener(name: str, events: List[AgentEvent]) -> None:
            if name != service:
                return
            with lock:
                seen.extend(e for e in events if e.kind == "snapshot")
            if ids and len(matching()) >= hits:
                arrived.set()

        self.collector.listen(listener)
        try:
            record = self.probe("snapshot", service, where, when=when, capture=list(expressions),
                                ttl=max(wait + 30, 60), max_hits=hits, rate=max(1, hits), alias=alias)
        except BaseException:
            self.collector.unlisten(listener)
            raise
        with lock:
            ids.update(set(record.placed.probe_ids.values()) | {record.fleet_id})
        if len(matching()) >= hits:
            arrived.set()
        deadline = time.monotonic() + wait
        try:
            while not arrived.is_set():
                left = deadline - time.monotonic()
                if progress is not None:
                    progress(len(matching()), hits, max(0.0, left))
                if left <= 0:
                    break
                arrived.wait(min(0.1, left))
        finally:
            self.collector.unlisten(listener)
            self.remove(record.alias)
        got = matching()
        if progress is not None:
            progress(len(got), hits, max(0.0, deadline - time.monotonic()))
        snaps = got[:hits]
        return SnapshotResult(
            alias=record.alias, service=service, where=where, expressions=list(expressions),
            snapshots=[e.data for e in snaps],
            evidence_ids=[f"snap:{service}:{e.instance_id}:{e.seq}" for e in snaps],
            timed_out=len(snaps) < hits)

    # ------------------------------------------------------------------ evidence
    def sql(self, query: str) -> pl.DataFrame:
        """SQL over the evidence store; a polars DataFrame."""
        try:
            return self.store.sql(query)
        except EvidenceError as exc:  # DuckDB's own words, on one line
            raise SessionError(str(exc)) from None

    def mark(self, text: str) -> str:
        """A note on the timeline; returns its evidence id."""
        if not text.strip():
            raise SessionError('mark needs text, e.g. %mark "rolled back orders to v41"')
        return self.store.add_timeline(text.strip(), source="mark")

    def timeline(self) -> pl.DataFrame:
        return self.store.sql("SELECT ts, source, text, evidence_id, ref FROM timeline ORDER BY ts")

    def metric_frame(self, name: Optional[str] = None) -> pl.DataFrame:
        where = "" if name is None else f"WHERE name = '{name.replace(chr(39), '')}'"
        return self.store.sql(f"SELECT ts, service, instance_id, name, value, error FROM metrics {where} ORDER BY ts")

    @property
    def telemetry(self) -> Telemetry:
        """Alerts, PromQL, logs and changes of this investigation, stored in its evidence (made on
        first use, with sources from the environment); see `probebook.session.telemetry`."""
        with self._lock:
            if self._telemetry is None:
                self._telemetry = Telemetry(self.store)
            return self._telemetry

    def close(self) -> None:
        """Stop collecting and close the store; again is harmless (it also runs at interpreter exit)."""
        if self._closed:
            return
        self._closed = True
        if self._telemetry is not None:
            self._telemetry.close()
        self.collector.stop()
        for handle in self.handles.values():
            handle.close()
        self.store.close()


def _close_at_exit(ref: "weakref.ref[Investigation]") -> None:
    """A script that ends (or raises) with an investigation open exits with its own status: the
    collector thread must not be writing to DuckDB while the interpreter tears down."""
    inv = ref()
    if inv is not None:
        try:
            inv.close()
        except Exception:  # noqa: BLE001 - exiting must not fail here
            pass


def _check_name(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "-_." for c in value):
        raise SessionError(f"{what} {value!r}: use letters, digits, '-', '_' or '.'")

