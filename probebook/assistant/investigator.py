"""The deterministic investigator: generic strategies, no LLM, no knowledge of any service.

It triages (which service and route the incident names, which class of symptom), finds where the
requests enter the service's own code (`entrypoints`), and tests hypotheses with probes:

- errors: an exception probe on the entry functions gives the raise site and every frame's locals;
  the ``if`` guarding the raise is captured on failing and on healthy calls (two snapshots with the
  guard and its negation as conditions); the variable that separates them is followed to where it
  is first made (a parameter -> the caller's argument -> the function that returned it), and the
  claim is tested there with a probe of its own;
- a log line the reporter quotes, written by an ``except`` handler that drops what it caught: the
  exception is caught with exception probes on what the ``try`` calls, and proven where it is raised;
- growth (the alerts say something grows): the map of ours that grows with a new key on every store,
  the part of its keys that is new every time, and the function that makes such keys;
- retries (the alerts say the calls are amplified): the retry loop of ours that goes round most, proven
  where it retries with no wait between attempts;
- latency: in an async service, first the plain functions its coroutines call on the loop's thread
  (one that holds the loop is the cause of every slow page); then duration probes on the entry
  function and the functions it calls, descending into the callee that holds most of the time until
  no callee dominates (following calls out to the service of ours that serves them).

Only the proof gate makes a verdict `proven`; whatever it refuses stays `likely`, and a strategy
that finds nothing answers `inconclusive` with what it tried.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from probebook.errors import ProbebookError, one_line
from probebook.evidence.predicate import Predicate

from .codeview import PURE_CALLS, callees, functions
from .entrypoints import EntryPoint, entry_points, is_app_file, symptom_classes, words
from .model import Hypothesis, Incident, Verdict
from .proof import ProofGate
from .strategies.blocking import blocking
from .strategies.errors import errors
from .strategies.growth import growth
from .strategies.latency import descend, slowest_first
from .strategies.leaks import leaks
from .strategies.logged import logged
from .strategies.quiet import quiet
from .strategies.retries import retries
from .tools import ToolBox

__all__ = ["Investigator", "Stopped"]

# symptom class -> the strategy for the mechanism it names: a map that keeps new keys, a pool drained by a
# leak, calls sent again at once
_MECHANISMS = {"growth": growth, "saturation": leaks, "retries": retries}

Progress = Callable[[str], None]


class Stopped(Exception):
    """The user asked the investigation to stop (an interrupt, a Stop button), or its time ran out."""


class Investigator:
    """Runs one investigation to a verdict within `budget_s` seconds; probes are removed at the end."""

    def __init__(self, tools: ToolBox, gate: ProofGate, incident: Incident, budget_s: float = 110.0,
                 progress: Optional[Progress] = None, wait_s: float = 20.0,
                 stop: Optional[threading.Event] = None) -> None:
        self.tools, self.gate, self.incident = tools, gate, incident
        self.stop = stop or threading.Event()
        self.deadline = time.monotonic() + budget_s
        self.progress = progress or (lambda line: None)
        self.wait_s = wait_s
        self.hypotheses: List[Hypothesis] = []
        self._files: Dict[str, Dict[str, str]] = {}
        self._connected: Optional[List[str]] = None
        self._gone: Dict[str, str] = {}
        self._texts: Dict[Tuple[str, str], str] = {}
        self._functions: Dict[Tuple[str, str], list] = {}
        self._entries: Dict[tuple, List[EntryPoint]] = {}
        self._loops_checked: set = set()  # async services whose event loop was checked for a plain call holding it

    # ------------------------------------------------------------------ the run
    def run(self) -> Verdict:
        try:
            verdict = self._investigate()
        except Stopped as why:
            verdict = Verdict("inconclusive", cause=f"{why} before a verdict; every probe it placed is removed")
        except Exception as exc:  # noqa: BLE001 - a strategy's bug is an honest inconclusive, never a crash
            verdict = Verdict("inconclusive", cause=f"the investigation failed ({type(exc).__name__}: "
                                                    f"{one_line(exc, 160)}); every probe it placed is removed")
        finally:
            self.tools.remove_all()
        return self.gate.final(verdict, self.hypotheses)

    def _investigate(self) -> Verdict:
        text = " ".join([self.incident.title, self.incident.text] +
                        [f"{a.name} {a.summary} {' '.join(a.labels.values())}" for a in self.incident.alerts])
        said_by_alerts = " ".join(f"{a.name} {a.summary}" for a in self.incident.alerts)
        classes = symptom_classes(said_by_alerts) or symptom_classes(text)  # the alerts first, then the words
        cls = classes[0] if classes else "unknown"
        services = self.services()
        named = [s for s in dict.fromkeys(a.labels.get("service", "") for a in self.incident.alerts) if s]
        focus = [s for s in named if s in services]
        focus += [s for s in services if s in text and s not in focus]
        unreachable = self.unreachable()
        gone = [s for s in dict.fromkeys(named + words(text)) if s in unreachable]
        if gone:  # a service of ours that does not answer: its callers see why first
            self.progress(f"triage: {', '.join(gone)} does not answer ({unreachable[gone[0]][:120]}); "
                          f"looking at its callers")
            focus = sorted(focus + [s for s in services if s not in focus], key=lambda s: not self.mentions(s, gone[0]))
        focus = focus or services
        routes = [a.labels["route"] for a in self.incident.alerts if a.labels.get("route")]
        route_words = list(dict.fromkeys(routes + [w for w in words(text) if w.startswith("/")]))
        self.progress(f"triage: alerts {', '.join(a.name + str(a.labels) for a in self.incident.alerts) or 'none'}")
        self.progress(f"triage: symptom {', '.join(classes) or cls}, services {', '.join(focus) or 'none'}, routes "
                      f"{', '.join(route_words) or 'none'}")
        self._note_changes()
        if not services:
            return Verdict("inconclusive", cause="no service is connected: connect the services first")
        if not self.incident.alerts and cls == "unknown":  # nothing fires, no symptom named: is anything wrong?
            return quiet(self, focus) or Verdict("inconclusive", cause="no alert fires and the requests watched "
                                                                       "were too few to say that nothing is wrong")
        said = logged(self, focus + [s for s in services if s not in focus], text)  # a quoted log line
        if said is not None:
            return said
        fallback: Optional[Verdict] = None  # a `likely` answer does not end the search while time is left
        for c in classes:  # a mechanism the alerts name has a strategy of its own, tried before the generic one
            found = _MECHANISMS[c](self, focus + [s for s in services if s not in focus]) if c in _MECHANISMS else None
            # amplification seen is the answer, unless a service of ours is gone: its callers' retries are
            # what its absence causes, and the refusals they see are the stronger lead
            if found is not None and (found.kind != "likely" or (c == "retries" and not gone)):
                return found
            fallback = fallback or found
        # a service of ours that does not answer: its callers' calls to it are refused, errors they see at
        # once, whatever else the alerts say (a latency alert may be another incident's, still open)
        generic = "errors" if gone else next((c for c in classes if c in ("errors", "latency")), cls)
        for service in focus:
            if time.monotonic() > self.deadline:
                break
            eps = self.entries(service, route_words or words(text))
            if not eps:
                self.progress(f"{service}: no entry point found for {', '.join(route_words) or 'the incident'}")
                continue
            if generic == "latency":
                verdict = self.loop_held(service, eps) or descend(self, service, slowest_first(self, service, eps))
            else:
                verdict = errors(self, service, eps, depth=0)
            if verdict is not None and verdict.kind != "likely":
                return verdict
            if verdict is not None:
                self.progress(f"{service}: {verdict.headline()[:160]}; looking further while time is left")
            fallback = fallback or verdict
        if fallback is not None:
            return fallback
        return Verdict("inconclusive", cause=f"the {generic} strategy found no decisive evidence in "
                                             f"{', '.join(focus)}; the probes placed saw nothing that separates "
                                             f"failing calls from healthy ones")

    # ------------------------------------------------------------------ what strategies use
    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped("stopped by the user")
        if time.monotonic() > self.deadline + 10.0:  # a step may finish; a new one may not start
            raise Stopped("out of its time budget")

    def pause(self, seconds: float) -> None:
        """Let probes collect for `seconds` (within the budget), honouring a stop request."""
        self.stop.wait(min(seconds, max(0.0, self.deadline - time.monotonic())))
        self.check_stop()

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def serving(self, service: str, paths: List[str], what: str) -> Optional[Tuple[str, List[EntryPoint]]]:
        """The other connected service whose code serves one of `paths` (where a call out of `service`
        went), with its entry points; None when no service of ours serves them."""
        if not paths:
            return None
        self.progress(f"{service}: {what} went to {', '.join(paths[:3])}")
        # the innermost call's path first, but a path `service` serves itself last (the request's own URL,
        # which its frames hold too); a function that serves it (a route handed to it or decorating it)
        # before one that merely names it (more often a caller of that path than its server), and that
        # one never for a path `service` serves itself
        own = {p: self.serves(service, p) for p in paths[:4]}
        for serves in (True, False):
            for path in sorted(own, key=own.get)[:3]:
                if own[path] and not serves:
                    continue
                for other in self.services():
                    eps = [ep for ep in self.entries(other, [path]) if ep.receives == serves]
                    if other != service and eps:
                        self.progress(f"following to {other} ({eps[0].function} serves {path})")
                        return other, eps
        return None

    def serves(self, service: str, path: str) -> bool:
        """Does a function of the service receive requests for `path` (a route handed to it or decorating it)?"""
        return any(ep.receives for ep in self.entries(service, [path]))

    def services(self) -> List[str]:
        """Every connected service (asked once per investigation)."""
        if self._connected is None:
            self._connected = self._services()
        return list(self._connected)

    def unreachable(self) -> Dict[str, str]:
        """Services of ours whose agents do not answer (at `connect`, or none of their instances now): why."""
        self.services()
        return dict(self._gone)

    def call(self, tool: str, **args: Any) -> Any:
        self.check_stop()
        res = self.tools.call(tool, args)
        if res.error:
            self.progress(f"{tool}: {res.error}")
            return None
        self.progress(f"{tool}: {res.summary}")
        return res

    def _services(self) -> List[str]:
        res = self.call("services")
        rows = res.data if res else []
        self._gone = {r["service"]: str(r.get("problem") or r.get("health")) for r in rows
                      if r.get("health") in ("down", "unreachable")}
        return [r["service"] for r in rows if r["service"] not in self._gone]

    def _note_changes(self) -> None:
        res = self.call("changes", since="3h")
        for row in (res.data if res else [])[:5]:
            self.hypotheses.append(Hypothesis(f"change before the incident: {row.get('summary')}",
                                              str(row.get("service") or ""), score=0.1,
                                              evidence=[row["evidence_id"]] if row.get("evidence_id") else []))

    def app_files(self, service: str) -> Dict[str, str]:
        if service not in self._files:
            self.call("modules", service=service)  # journaled; the full list is read below
            try:
                mods = self.tools.inv.modules(service)
            except ProbebookError:
                mods = []
            self._files[service] = {m.file: m.name for m in mods if is_app_file(m.file)}
        return self._files[service]

    def text(self, service: str, path: str) -> str:
        """A running file's text, read once per investigation (strategies read the same files often)."""
        key = (service, path)
        if key not in self._texts:
            self._texts[key] = self.tools._text(service, path)
        return self._texts[key]

    def entries(self, service: str, route_words: List[str], limit: int = 3) -> List[EntryPoint]:
        key = (service, tuple(route_words), limit)
        if key not in self._entries:  # the source is read once; the answer too
            files = list(self.app_files(service))
            self._entries[key] = entry_points(service, files, lambda p: self.text(service, p), route_words, limit)
        return list(self._entries[key])

    def loop_held(self, service: str, eps: List[EntryPoint]) -> Optional[Verdict]:
        """In an async service (an entry point is a coroutine), the plain function of ours that holds its
        event loop, proven (`strategies/blocking.py`); asked once per service, where the incident starts
        or where a slow call out leads: a request that waits for the loop is slow before its handler runs,
        so the handler's own time does not show it."""
        if service in self._loops_checked or not any(self.is_async(service, ep) for ep in eps):
            return None
        self._loops_checked.add(service)
        return blocking(self, service, [ep.file for ep in eps])

    def is_async(self, service: str, ep: EntryPoint) -> bool:
        return bool(getattr(self.info(service, ep.file, ep.function), "is_async", False))

    def is_plain(self, service: str, file: str, function: str) -> bool:
        """A plain function (not a coroutine or a generator): its thread's time and CPU clock are its own."""
        me = self.info(service, file, function)
        return not (me is None or me.is_async or me.is_generator)

    def where(self, service: str, file: str, qualname: str) -> str:
        module = self.app_files(service).get(file)
        return f"{module}:{qualname}" if module else f"{file}:{qualname}"

    def place(self, service: str, kind: str, where: str, **kw: Any) -> Optional[str]:
        """Place a probe; at the live-probe budget the oldest of ours makes room (a strategy is done with it)."""
        while self.tools.live and len(self.tools.live) >= self.tools.budget.max_live:
            self.call("remove_probe", probe=self.tools.live[0])
        res = self.call("place_probe", service=service, kind=kind, where=where, **kw)
        return res.data["probe"] if res else None

    def _until(self, timeout: Optional[float]) -> float:
        """When a wait of `timeout` s (the usual window when None) ends, within the budget."""
        wait = self.wait_s if timeout is None else timeout
        return time.monotonic() + max(0.0, min(wait, self.deadline - time.monotonic()))

    def events(self, alias: Optional[str], want: int, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        if alias is None:
            return []
        end = self._until(timeout)
        while True:  # in short waits, so a stop request is honoured within a second
            self.call("wait_events", probe=alias, count=want, timeout=min(1.0, max(0.0, end - time.monotonic())))
            events = self.tools.events_of(alias)
            if len(events) >= want or time.monotonic() >= end:
                return events

    def gathered(self, aliases: List[Optional[str]], want: int,
                 timeout: Optional[float] = None) -> List[List[Dict[str, Any]]]:
        """The events of several probes watched together: it waits until they hold `want` events between them
        (not `want` each, one after the other: a probe on a path nobody takes would hold the others' wait),
        then records one `wait_events` per probe; `[]` for a probe that was not placed."""
        live = [a for a in aliases if a is not None]
        end = self._until(timeout)
        while live and time.monotonic() < end:
            if sum(len(self.tools.events_of(a)) for a in live) >= want:
                break
            self.pause(min(0.5, max(0.0, end - time.monotonic())))
        return [self.events(a, want, timeout=0.0) if a is not None else [] for a in aliases]

    def fired(self, service: str, sites: List[tuple]) -> List[Tuple[tuple, List[Dict[str, Any]]]]:
        """A snapshot probe on each site's line (``site[0]`` the file, ``site[2]`` the line); the sites that
        ran while watched, with their events, the busiest first (in `sites` order on a tie)."""
        placed = [(site, self.place(service, "snapshot", f"{site[0]}:{site[2]}", rate=20)) for site in sites]
        self.pause(min(self.wait_s, 10.0))
        fired = [(site, self.events(alias, 1, timeout=1.0)) for site, alias in placed]
        return sorted([(site, evs) for site, evs in fired if evs], key=lambda f: -len(f[1]))

    def watch_found(self, services: List[str], find: Callable[[str], list], line: Callable[[Any], int],
                    capture: Callable[[Any], List[str]], say: Callable[[Any], str]) -> Optional[list]:
        """Sites that `find(source)` finds in the services' own running files (four a file), each watched
        with a snapshot on `line(site)` capturing `capture(site)`: ``(service, file, site, events)`` of
        those that ran while watched, the busiest first (when none ran: the first found, with no events);
        None when nothing was found to watch."""
        placed = []
        for service in services:
            for file in self.app_files(service):
                try:
                    found = find(self.text(service, file))
                except (SyntaxError, ValueError, ProbebookError):
                    continue
                for site in found[:4]:
                    self.progress(f"{service}: {say(site)} ({file}:{line(site)})")
                    placed.append((service, file, site, self.place(service, "snapshot", f"{file}:{line(site)}",
                                                                   capture=capture(site), rate=20, light=True)))
        if not placed:
            return None
        self.pause(min(self.wait_s, 10.0))
        seen = [(service, file, site, self.events(alias, 1, timeout=1.0)) for service, file, site, alias in placed]
        return sorted([x for x in seen if x[3]], key=lambda x: -len(x[3])) or [(*placed[0][:3], [])]

    def conclude(self, kind: str, service: str, locus: str, cause: str, pred: Predicate,
                  evidence: List[str]) -> Optional[Verdict]:
        v = Verdict(kind, service, locus, cause, pred, evidence=evidence,
                    check=f"the same probe shows {pred.describe()} no longer")
        checked = self.gate.check(v)
        self.progress(f"gate: {checked.kind} {locus}: {'; '.join(checked.reasons)[:200]}")
        h = Hypothesis(cause, service, locus, pred, "proven" if checked.kind == kind else "supported", evidence,
                       score=1.0 if checked.kind == kind else 0.5)
        self.hypotheses.append(h)
        return v if checked.kind == kind else None

    def mentions(self, service: str, word: str) -> bool:
        """Does any running file of the service's own code hold `word` (a peer's name in its config or client)?"""
        for file in self.app_files(service):
            try:
                if word in self.text(service, file):
                    return True
            except (ProbebookError, ValueError):
                continue
        return False

    def parsed(self, service: str, file: str) -> list:
        """The functions of a running file of the service (parsed once per investigation)."""
        key = (service, file)
        if key not in self._functions:
            try:
                self._functions[key] = functions(self.text(service, file))
            except (ProbebookError, ValueError):  # unreadable or not parseable here
                self._functions[key] = []
        return self._functions[key]

    def info(self, service: str, file: str, qualname: str) -> Optional[Any]:
        """The `FunctionInfo` of a function of the service's running source."""
        return next((f for f in self.parsed(service, file) if f.qualname == qualname), None)

    def calls_out(self, service: str, file: str, qualname: str) -> List[Any]:
        """The calls the function makes out of our code: to nothing of the service's own, and not a pure
        computation (a socket, a database, a library; their time is not our code's)."""
        return [c for c in callees(self.text(service, file), qualname) if c.name.split(".")[-1] not in PURE_CALLS
                and self.resolve(service, c.name, file) is None]

    def resolve(self, service: str, name: str, near: str = "") -> Optional[Tuple[str, str]]:
        """The function of ours a call `name` (as written: ``f``, ``self.m``, ``self.ledger.stock``) reaches:
        in the file `near` first, then its folder, then the service. A call through another object
        (``conn.execute``, ``pricing.total``) reaches a method, or a module's function, only where `near`
        defines or names its class (or module): not the `execute` of a class the caller never mentions."""
        parts = name.replace("()", "").split(".")
        last, through = parts[-1], len(parts) > 2 or (len(parts) == 2 and parts[0] not in ("self", "cls"))
        folder = near.rsplit("/", 1)[0]
        files = sorted(self.app_files(service), key=lambda f: (f != near, not f.startswith(folder + "/")))
        for file in files:
            for f in self.parsed(service, file):
                if f.qualname.split(".")[-1] == last and "<locals>" not in f.qualname and \
                        (not through or file == near or self._names(service, near, file, f.qualname)):
                    return file, f.qualname
        return None

    def _names(self, service: str, near: str, file: str, qualname: str) -> bool:
        """Does the file `near` name the class of `qualname` (or, for a module's function, its module)?"""
        owner = qualname.split(".")[-2] if "." in qualname else file.rsplit("/", 1)[-1][:-3]
        try:
            return re.search(rf"\b{re.escape(owner)}\b", self.text(service, near)) is not None
        except (ProbebookError, ValueError):
            return False
