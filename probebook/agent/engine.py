"""The in-process agent: add, list and remove probes; read what they captured.

>>> from probebook.agent import Agent
>>> agent = Agent()
>>> probe = agent.add_probe({"kind": "log", "where": "shop/cart.py:42",
...                          "template": "total={cart.total}"})       # doctest: +SKIP
>>> [e.message for e in agent.drain_events() if e.kind == "log"]      # doctest: +SKIP
['total=12.5']
>>> agent.remove_probe(probe.id)                                      # doctest: +SKIP

Adding a probe either installs it completely or changes nothing. Probes on modules not yet
imported wait, and install the moment the module's code has run, in the importing thread
(`instrument.importwatch`), before any of its functions can be called.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from types import CodeType, ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from probebook.errors import AgentUnavailable, LocationError, ProbebookError, ProbeNotFound, SpecError
from probebook.protocol.events import Event, StatusEvent
from probebook.protocol.kinds import ACTIVE, ENDED, Status
from probebook.protocol.records import ProbeInfo
from probebook.protocol.spec import ProbeSpec, Where, parse_where

from .capture.safe_access import module_file
from .capture.values import CaptureLimits
from .events import EventBatch, EventBuffer
from .expr.expressions import compile_expression
from .expr.template import compile_template
from .instrument import backend
from .instrument.guards import certainly_false, inline_guard
from .instrument.hookset import HookSet
from .instrument.importwatch import ImportWatch
from .limits import AgentLimits, CpuBudget, RateLimiter, probe_rate
from .instrument.locate import (ModuleCode, code_name, drop_stale_index, module_by_name, modules_for_file, refuse_own,
                                why_pending)
from .probes import ProbeRuntime
from .capture.redaction import RedactionConfig, Redactor
from .instrument.sites import Site

__all__ = ["Agent"]

_KEEP_ENDED = 200
_TICK = 0.2


def _importing(module: Any) -> bool:
    """True while `module` is in sys.modules but its code still runs (its functions may not exist yet)."""
    spec = vars(module).get("__spec__") if hasattr(module, "__dict__") else None
    return getattr(spec, "_initializing", False) is True


def backend_problem() -> str:
    """Why probes cannot be placed in this interpreter, in one line ('' when they can): on Python <= 3.11
    they rewrite bytecode with the `bytecode` package (on >= 3.12 without it, `sys.monitoring` alone serves)."""
    global _PROBLEM
    if _PROBLEM is None:
        _PROBLEM = ""
        if sys.version_info < (3, 12):
            import importlib.util

            if importlib.util.find_spec("bytecode") is None:
                _PROBLEM = (f"probes need the 'bytecode' package on Python {sys.version.split()[0]}, and "
                            f"{sys.executable} does not have it: {sys.executable} -m pip install 'bytecode>=0.16'")
    return _PROBLEM


_PROBLEM: Optional[str] = None


class Agent:
    """Places probes into this process. Thread-safe; never raises into probed code."""

    def __init__(self, limits: Optional[AgentLimits] = None, redaction: Optional[RedactionConfig] = None) -> None:
        self.limits = limits or AgentLimits()
        self.redactor = Redactor(redaction)
        self.buffer = EventBuffer(self.limits.event_capacity)
        self._cpu = CpuBudget(self.limits.cpu_budget, self.limits.cpu_window)
        self._snapshots = RateLimiter(self.limits.process_snapshot_rate, self.limits.process_snapshot_rate)
        self._lock = threading.RLock()
        self._probes: Dict[str, ProbeRuntime] = {}
        self._pending: Dict[str, Where] = {}
        self._importing = False  # a module was still executing at the last look: look again next tick
        self._watch = ImportWatch(self._module_loaded)  # on sys.meta_path while a probe is pending
        self._resolving = threading.local()  # this thread is resolving pending probes (imports may follow)
        self._sites: Dict[int, Site] = {}
        self._probe_site: Dict[str, Tuple[Site, Optional[int]]] = {}
        self._disable_queue: List[Tuple[ProbeRuntime, str, str]] = []
        self._ids = itertools.count(1)
        self._backend: Any = None
        self._depth = 1
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._modules_seen = 0
        self.started = time.time()
        # ProbeHost.emit: the ring's own append, so a hit makes one call, not two
        self.emit: Callable[[Any], None] = self.buffer.append

    # ---------------------------------------------------------------- ProbeHost for probes
    @property
    def condition_budget_ns(self) -> int:
        return int(self.limits.condition_budget * 1e9)

    @property
    def condition_failures(self) -> int:
        return self.limits.condition_failures

    def allow_snapshot(self) -> bool:
        return self._snapshots.allow()

    def cpu_spent(self, probe: ProbeRuntime, ns: int) -> None:
        probe.budget_ns += ns  # refunded when the probe ends
        if self._cpu.spend(ns) and probe.active:
            probe.active = False
            used = self._cpu.used() * 100
            self.request_disable(probe, Status.DISABLED, (
                f"CPU budget exceeded: probes used {used:.1f}% of one core over {self._cpu.window}s "
                f"(budget {self._cpu.share * 100:g}%); raise limits.cpu_budget or probe less often"))

    def request_disable(self, probe: ProbeRuntime, status: str, reason: str) -> None:
        """Called from the application thread: uninstalling happens on the housekeeping thread."""
        probe.active = False
        self._disable_queue.append((probe, status, reason))
        self._wake.set()

    # ---------------------------------------------------------------- public API
    def add_probe(self, spec: Union[ProbeSpec, Dict[str, Any]]) -> ProbeInfo:
        """Validate, compile and install a probe; raise `SpecError`/`LocationError` and change nothing
        when the spec is wrong."""
        spec = ProbeSpec.from_dict(spec)
        where = parse_where(spec.where)
        if backend_problem():
            raise AgentUnavailable(backend_problem())
        probe = self._build(spec)
        waiting = None
        if where.is_line and not modules_for_file(where.file):  # type: ignore[arg-type]
            waiting = why_pending(where, spec.pending)  # may read the disk: outside the lock; may refuse
        with self._lock:
            if probe.id in self._probes and self._probes[probe.id].status not in ENDED:
                raise SpecError(f"id: a probe with id {probe.id!r} already exists; remove it first or pick another", "id")
            target = self._resolve(where, spec.function_level)
            if target is None and waiting is None:  # a module name, or a file loaded but mid-import
                waiting = f"waiting for {where.file or where.module} to be imported"
            self._probes[probe.id] = probe
            if target is None:
                self._pending[probe.id] = where
                self._watch.install()
                probe.status, probe.reason = Status.PENDING, waiting
                self.emit(StatusEvent(probe_id=probe.id, status=Status.PENDING, reason=probe.reason))
            else:
                try:
                    self._install(probe, *target)
                except BaseException:
                    self._probes.pop(probe.id, None)
                    raise
            self._trim_ended()
        self._ensure_thread()
        return self._info(probe)

    def remove_probe(self, probe_id: str) -> ProbeInfo:
        """Remove a probe and restore the original code where no other probe needs it."""
        with self._lock:
            probe = self._probes.get(probe_id)
            if probe is None:
                raise ProbeNotFound(f"no probe with id {probe_id!r}; list them with probes()")
            self._end(probe, Status.REMOVED, "removed on request")
            del self._probes[probe_id]
            return self._info(probe)

    def remove_all(self) -> int:
        with self._lock:
            ids = list(self._probes)
            for pid in ids:
                self.remove_probe(pid)
            return len(ids)

    def probes(self) -> List[ProbeInfo]:
        with self._lock:
            return [self._info(p) for p in self._probes.values()]

    def get_probe(self, probe_id: str) -> ProbeInfo:
        with self._lock:
            probe = self._probes.get(probe_id)
            if probe is None:
                raise ProbeNotFound(f"no probe with id {probe_id!r}; list them with probes()")
            return self._info(probe)

    def drain_events(self) -> List[Event]:
        """Every event not yet drained, oldest first (`dropped` tells how many were lost)."""
        return self.buffer.drain().events

    def read_events(self, after: int = 0, limit: int = 1000, timeout: float = 0.0) -> EventBatch:
        """Events after sequence number `after`, waiting up to `timeout` seconds for one."""
        return self.buffer.read(after, limit, timeout)

    @property
    def dropped_events(self) -> int:
        return self.buffer.dropped

    def set_limits(self, **changes: Any) -> AgentLimits:
        """Change process-wide limits at run time, e.g. ``set_limits(cpu_budget=0.05)``."""
        with self._lock:
            self.limits = self.limits.with_changes(changes)
            self._cpu = CpuBudget(self.limits.cpu_budget, self.limits.cpu_window)
            rate = self.limits.process_snapshot_rate
            self._snapshots = RateLimiter(rate, rate)
            self.buffer.capacity = self.limits.event_capacity
            return self.limits

    def set_redaction(self, **changes: Any) -> RedactionConfig:
        """Change redaction at run time; see `Redactor.configure`."""
        return self.redactor.configure(**changes)

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            active = sum(1 for p in self._probes.values() if p.status in ACTIVE)
            return {
                "pid": os.getpid(),
                "ppid": os.getppid(),  # a supervisor (gunicorn's master) is the parent of its workers
                "python": sys.version.split()[0],
                "backend": self._backend.name if self._backend else backend.name(),
                "probes": len(self._probes),
                "active_probes": active,
                "pending_probes": len(self._pending),
                "events_seq": self.buffer.last_seq,
                "dropped_events": self.buffer.dropped,
                "polls_waiting": self.buffer.waiting,
                "cpu_budget_used": round(self._cpu.used(), 6),
                "cpu_budget": self.limits.cpu_budget,
                "uptime_s": round(time.time() - self.started, 3),
            }

    def close(self) -> None:
        """Remove every probe, restore all code and stop the housekeeping thread."""
        self.remove_all()
        self._watch.uninstall()
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        if self._backend is not None:  # the last agent out frees the interpreter's tool id (3.12+)
            self._backend = None
            backend.release()

    # ---------------------------------------------------------------- building and installing
    def _build(self, spec: ProbeSpec) -> ProbeRuntime:
        red = self.redactor.is_redacted_name
        condition = compile_expression(spec.when, field="when", is_redacted_name=red) if spec.when else None
        template = None
        if spec.kind == "log":
            template = compile_template(spec.template or "", field="template", is_redacted_name=red)
        captures = tuple((c, compile_expression(c, field="capture", is_redacted_name=red)) for c in spec.capture)
        metric_value = None
        if spec.metric is not None and spec.metric.value:
            metric_value = compile_expression(spec.metric.value, field="metric.value", is_redacted_name=red)
        limits = CaptureLimits.from_mapping(spec.limits) if spec.limits else CaptureLimits()
        ttl = spec.ttl if spec.ttl is not None else self.limits.default_ttl
        if ttl > self.limits.max_ttl:
            raise SpecError(f"ttl: at most {self.limits.max_ttl:g}s is allowed here, got {ttl:g}s "
                            f"(an operator may raise limits.max_ttl)", "ttl")
        rate = probe_rate(spec.kind, spec.rate, self.limits)
        pid = spec.id or f"p{next(self._ids)}-{os.urandom(3).hex()}"
        return ProbeRuntime(pid, spec, self, condition=condition, template=template, captures=captures,
                            metric_value=metric_value, limits=limits, rate=rate, ttl=ttl)

    def _resolve(self, where: Where, function_level: bool, loaded: Optional[ModuleType] = None
                 ) -> Optional[Tuple[CodeType, List[CodeType], Optional[int]]]:
        if where.is_line:
            mods = modules_for_file(where.file)  # type: ignore[arg-type]
            if not mods:
                return None
            if len(mods) > 1:
                names = ", ".join(sorted(str(module_file(m)) for m in mods))
                raise LocationError(f"where: {where.file} matches {len(mods)} loaded files ({names}); "
                                    f"give more of the path")
            if _importing(mods[0]) and mods[0] is not loaded:
                return None
            refuse_own(mods[0])
            scan = ModuleCode.scan(mods[0])
            code = scan.innermost_for_line(where.line)  # type: ignore[arg-type]
            line = None if function_level else where.line
        else:
            mod = module_by_name(where.module)  # type: ignore[arg-type]
            if mod is None or (_importing(mod) and mod is not loaded):
                return None
            refuse_own(mod)
            scan = ModuleCode.scan(mod)
            code = scan.by_qualname(where.qualname)  # type: ignore[arg-type]
            line = None
        parents: List[CodeType] = []
        cur = scan.parent.get(id(code))
        while cur is not None:
            parents.insert(0, cur)
            cur = scan.parent.get(id(cur))
        if self._backend is not None:  # what we found may be our own instrumented copy
            code = self._backend.original_of(code)
            parents = [self._backend.original_of(c) for c in parents]
        return code, parents, line

    def _install(self, probe: ProbeRuntime, code: CodeType, parents: List[CodeType], line: Optional[int]) -> None:
        if self._backend is None:
            self._backend, self._depth = backend.acquire()
        site = self._sites.get(id(code))
        if site is None:
            site = Site(code, parents, self._depth)
        site.add(probe, line, probe.spec.function_level)
        try:
            self._apply(site)
        except Exception as exc:
            site.discard(probe)
            try:
                self._apply(site)
            finally:
                raise ProbebookError(f"could not instrument {probe.spec.where}: {type(exc).__name__}: {exc}") from exc
        self._sites[id(code)] = site
        self._probe_site[probe.id] = (site, line)
        if self._depth != 1 and line is not None:  # monitoring backend: guard in Python, not bytecode
            guard = inline_guard(probe.spec.when, code, self.redactor.is_redacted_value)
            probe.fast_false = certainly_false(guard) if guard else None
        at = f"{code.co_filename}:{line or code.co_firstlineno}"
        probe.location = f"{at} ({code_name(code)})"
        probe.status, probe.reason, probe.active = Status.INSTALLED, "", True
        self.emit(StatusEvent(probe_id=probe.id, status=Status.INSTALLED, reason=probe.location))

    def _apply(self, site: Site) -> None:
        guards, skips = {}, {}
        if self._depth == 1:  # the bytecode backend can check simple conditions inline
            for line, probes in site.line_probes.items():
                guard = (inline_guard(probes[0].spec.when, site.code, self.redactor.is_redacted_value)
                         if len(probes) == 1 else None)
                if guard:
                    guards[line], skips[line] = guard, probes[0].guard_skips.items
        hooks = None if site.empty else HookSet(
            lines=frozenset(site.line_probes), line_hook=site.line, function_hooks=site.needs_function_hooks,
            enter_hook=site.enter, return_hook=site.leave, raise_hook=site.raised, guards=guards,
            guard_skips=skips)
        self._backend.update(site.code, hooks, site.parents)
        if site.empty:
            self._sites.pop(id(site.code), None)

    def _end(self, probe: ProbeRuntime, status: str, reason: str) -> None:
        """Uninstall (if installed) and record the final status. Caller holds the lock."""
        probe.active = False
        if self._pending.pop(probe.id, None) is not None and not self._pending:
            self._watch.uninstall()
        self._cpu.refund(probe.budget_ns)
        probe.budget_ns = 0
        placed = self._probe_site.pop(probe.id, None)
        if placed is not None:
            site = placed[0]
            site.discard(probe)
            try:
                self._apply(site)
            except Exception as exc:  # restoring must not fail silently
                status, reason = Status.ERROR, f"{reason}; restoring the code failed: {exc}"
        if probe.status in ENDED:
            return
        probe.status, probe.reason, probe.ended_at = status, reason, time.monotonic()
        self.emit(StatusEvent(probe_id=probe.id, status=status, reason=reason))

    def _info(self, p: ProbeRuntime) -> ProbeInfo:
        left = max(0.0, p.expires_at - time.monotonic()) if p.status not in ENDED else 0.0
        return ProbeInfo(p.id, p.spec.kind, p.spec.where, p.location, p.status, p.reason, p.hits, p.emitted,
                         p.rate_limited, p.created, round(left, 3), p.spec.to_dict(), p.filtered + p.guard_skips.count,
                         p.failed)

    def _trim_ended(self) -> None:
        ended = [pid for pid, p in self._probes.items() if p.status in ENDED]
        for pid in ended[: max(0, len(ended) - _KEEP_ENDED)]:
            del self._probes[pid]

    # ---------------------------------------------------------------- housekeeping thread
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._housekeeping, name="probebook-housekeeping", daemon=True)
            self._thread.start()

    def _housekeeping(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_TICK)
            self._wake.clear()
            try:
                self.tick()
            except Exception as exc:  # keep the thread alive; say what went wrong
                self.emit(StatusEvent(probe_id="", status=Status.ERROR, reason=f"housekeeping: {exc}"))

    def tick(self) -> None:
        """One round of housekeeping: disable requests, TTL expiry, pending installs."""
        with self._lock:
            while self._disable_queue:
                probe, status, reason = self._disable_queue.pop(0)
                self._end(probe, status, reason)
            now = time.monotonic()
            for probe in list(self._probes.values()):
                if probe.status not in ENDED and now >= probe.expires_at:
                    self._end(probe, Status.EXPIRED, f"ttl of {probe.ttl:g}s reached")
                elif probe.status == Status.EXPIRED and now >= probe.ended_at + self.limits.expired_grace:
                    del self._probes[probe.id]  # its `expired` event stays in the stream
            drop_stale_index()
            if self._pending and (len(sys.modules) != self._modules_seen or self._importing):
                self._modules_seen = len(sys.modules)
                self._importing = any(_importing(m) for m in list(sys.modules.values()))
                self._resolve_pending()

    def _module_loaded(self, module: ModuleType) -> None:
        """The import watch: `module` has just run its code in this thread (not one resolving already)."""
        if getattr(self._resolving, "on", False):
            return
        with self._lock:
            if self._pending:
                self._resolve_pending(loaded=module)

    def _resolve_pending(self, loaded: Optional[ModuleType] = None) -> None:
        """Install the pending probes whose module is there now (`loaded`: one whose code has just
        finished running, though its import is not marked finished yet). Caller holds the lock."""
        self._resolving.on = True
        try:
            self._resolve_each(loaded)
        finally:
            self._resolving.on = False
        if not self._pending:
            self._watch.uninstall()

    def _resolve_each(self, loaded: Optional[ModuleType]) -> None:
        for pid, where in list(self._pending.items()):
            probe = self._probes[pid]
            try:
                target = self._resolve(where, probe.spec.function_level, loaded)
                if target is not None:
                    del self._pending[pid]
                    self._install(probe, *target)
            except ProbebookError as exc:
                self._pending.pop(pid, None)
                probe.status, probe.reason = Status.ERROR, str(exc)
                self.emit(StatusEvent(probe_id=pid, status=Status.ERROR, reason=str(exc)))
