"""The deterministic investigator: generic strategies, no LLM, no knowledge of any service.

It triages (which service and route the incident names, which class of symptom), finds where the
requests enter the service's own code (`entrypoints`), and tests hypotheses with probes:

- errors: an exception probe on the entry functions gives the raise site and every frame's locals;
  the ``if`` guarding the raise is captured on failing and on healthy calls (two snapshots with the
  guard and its negation as conditions); the variable that separates them is followed to where it
  is first made (a parameter -> the caller's argument -> the function that returned it), and the
  claim is tested there with a probe of its own;
- latency: duration probes on the entry function and the functions it calls in the same service,
  descending into the callee that holds most of the time until no callee dominates.

Only the proof gate makes a verdict `proven`; whatever it refuses stays `likely`, and a strategy
that finds nothing answers `inconclusive` with what it tried.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from probebook.errors import ProbebookError
from probebook.evidence.predicate import Predicate

from .codeview import argument_for, assigned_from, callees, functions, names_in, raises, returns
from .differential import separate, values_of
from .entrypoints import EntryPoint, entry_points, is_app_file, symptom_class, words
from .model import Hypothesis, Incident, Verdict
from .proof import ProofGate
from .tools import ToolBox

__all__ = ["Investigator"]

Progress = Callable[[str], None]


class Investigator:
    """Runs one investigation to a verdict within `budget_s` seconds; probes are removed at the end."""

    def __init__(self, tools: ToolBox, gate: ProofGate, incident: Incident, budget_s: float = 110.0,
                 progress: Optional[Progress] = None, wait_s: float = 20.0) -> None:
        self.tools, self.gate, self.incident = tools, gate, incident
        self.deadline = time.monotonic() + budget_s
        self.progress = progress or (lambda line: None)
        self.wait_s = wait_s
        self.hypotheses: List[Hypothesis] = []
        self._files: Dict[str, Dict[str, str]] = {}

    # ------------------------------------------------------------------ the run
    def run(self) -> Verdict:
        try:
            verdict = self._investigate()
        finally:
            self.tools.remove_all()
        checked = self.gate.check(verdict)
        checked.ranked = sorted(self.hypotheses, key=lambda h: -h.score)[:5]
        return checked

    def _investigate(self) -> Verdict:
        text = " ".join([self.incident.title, self.incident.text] +
                        [f"{a.name} {a.summary} {' '.join(a.labels.values())}" for a in self.incident.alerts])
        cls = symptom_class(text)
        services = self._services()
        focus = [s for s in dict.fromkeys(a.labels.get("service", "") for a in self.incident.alerts) if s in services]
        focus += [s for s in services if s in text and s not in focus]
        focus = focus or services
        routes = [a.labels["route"] for a in self.incident.alerts if a.labels.get("route")]
        route_words = list(dict.fromkeys(routes + [w for w in words(text) if w.startswith("/")]))
        self.progress(f"triage: symptom {cls}, services {', '.join(focus) or 'none'}, routes "
                      f"{', '.join(route_words) or 'none'}")
        self._note_changes()
        if not services:
            return Verdict("inconclusive", cause="no service is connected: connect the services first")
        for service in focus:
            if time.monotonic() > self.deadline:
                break
            eps = self._entries(service, route_words or words(text))
            if not eps:
                self.progress(f"{service}: no entry point found for {', '.join(route_words) or 'the incident'}")
                continue
            if cls in ("latency",):
                verdict = next((v for v in (self._latency(service, ep) for ep in eps) if v is not None), None)
            else:
                verdict = self._errors(service, eps, depth=0)
            if verdict is not None:
                return verdict
        return Verdict("inconclusive", cause=f"the {cls} strategy found no decisive evidence in "
                                             f"{', '.join(focus)}; the probes placed saw nothing that separates "
                                             f"failing calls from healthy ones")

    # ------------------------------------------------------------------ helpers
    def _call(self, tool: str, **args: Any) -> Any:
        res = self.tools.call(tool, args)
        if res.error:
            self.progress(f"{tool}: {res.error}")
            return None
        self.progress(f"{tool}: {res.summary}")
        return res

    def _services(self) -> List[str]:
        res = self._call("services")
        return [r["service"] for r in res.data] if res else []

    def _note_changes(self) -> None:
        res = self._call("changes", since="3h")
        for row in (res.data if res else [])[:5]:
            self.hypotheses.append(Hypothesis(f"change before the incident: {row.get('summary')}",
                                              str(row.get("service") or ""), score=0.1,
                                              evidence=[row["evidence_id"]] if row.get("evidence_id") else []))

    def _app_files(self, service: str) -> Dict[str, str]:
        if service not in self._files:
            self._call("modules", service=service)  # journaled; the full list is read below
            try:
                mods = self.tools.inv.modules(service)
            except ProbebookError:
                mods = []
            self._files[service] = {m.file: m.name for m in mods if is_app_file(m.file)}
        return self._files[service]

    def _text(self, service: str, path: str) -> str:
        return self.tools._text(service, path)

    def _entries(self, service: str, route_words: List[str]) -> List[EntryPoint]:
        files = list(self._app_files(service))
        return entry_points(service, files, lambda p: self._text(service, p), route_words)

    def _where(self, service: str, file: str, qualname: str) -> str:
        module = self._app_files(service).get(file)
        return f"{module}:{qualname}" if module else f"{file}:{qualname}"

    def _place(self, service: str, kind: str, where: str, **kw: Any) -> Optional[str]:
        res = self._call("place_probe", service=service, kind=kind, where=where, **kw)
        return res.data["probe"] if res else None

    def _events(self, alias: Optional[str], want: int, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        if alias is None:
            return []
        left = max(0.0, min(timeout or self.wait_s, self.deadline - time.monotonic()))
        self._call("wait_events", probe=alias, count=want, timeout=left)
        return self.tools.events_of(alias)

    def _conclude(self, kind: str, service: str, locus: str, cause: str, pred: Predicate,
                  evidence: List[str]) -> Optional[Verdict]:
        v = Verdict(kind, service, locus, cause, pred, evidence=evidence,
                    check=f"the same probe shows {pred.describe()} no longer")
        checked = self.gate.check(v)
        self.progress(f"gate: {checked.kind} {locus}: {'; '.join(checked.reasons)[:200]}")
        h = Hypothesis(cause, service, locus, pred, "proven" if checked.kind == kind else "supported", evidence,
                       score=1.0 if checked.kind == kind else 0.5)
        self.hypotheses.append(h)
        return v if checked.kind == kind else None

    # ------------------------------------------------------------------ errors
    def _errors(self, service: str, eps: List[EntryPoint], depth: int) -> Optional[Verdict]:
        probes = [self._place(service, "exception", self._where(service, ep.file, ep.function), rate=20)
                  for ep in eps]
        events: List[Dict[str, Any]] = []
        for alias in probes:
            events += [e for e in self._events(alias, 3) if e.get("frames")]
        if not events:
            self.progress(f"{service}: the entry points raised nothing while watched")
            return None
        sites: Dict[Tuple[str, str, int], List[Dict[str, Any]]] = {}
        for e in events:
            inner = next((f for f in reversed(e["frames"]) if is_app_file(f.get("file") or "")), None)
            if inner is not None:
                sites.setdefault((inner["file"], inner["function"], inner["line"]), []).append(e)
        if not sites:
            return None
        (file, function, line), evs = max(sites.items(), key=lambda kv: len(kv[1]))
        exc_type = evs[0].get("exc_type") or "?"
        self.progress(f"{service}: {len(evs)} x {exc_type} raised in {function} ({file}:{line})")
        self.hypotheses.append(Hypothesis(f"{exc_type} raised in {function}", service,
                                          f"{file}:{function}", score=0.4,
                                          evidence=[e["evidence_id"] for e in evs[:5]]))
        return self._origin(service, file, function, line, evs[0]["frames"])

    def _origin(self, service: str, file: str, function: str, line: int,
                frames: List[Dict[str, Any]]) -> Optional[Verdict]:
        src = self._text(service, file)
        guards = [r for r in raises(src, function) if r[0] == line and r[2]]
        if not guards:
            self.progress(f"{function}: the raise at line {line} has no guard to test")
            return None
        _, _, guard, gline = guards[0]
        names = names_in(guard)
        fn = next(f for f in functions(src) if f.qualname == function)
        # the guard's names and whatever they are computed from in this function
        feeds = list(names)
        for n in names:
            for _, expr in assigned_from(src, function, n):
                feeds += [x for x in names_in(expr) if x not in feeds]
        capture = [n for n in feeds if n in fn.params or assigned_from(src, function, n)]
        where = f"{file}:{gline}"
        bad = self._place(service, "snapshot", where, when=guard, capture=capture, rate=20)
        good = self._place(service, "snapshot", where, when=f"not ({guard})", capture=capture, rate=20)
        bad_ev, good_ev = self._events(bad, 3), self._events(good, 5)
        likely: Optional[Verdict] = None
        for name in capture:
            split = separate(values_of(bad_ev, name), values_of(good_ev, name), nodes=True)
            if split is None:
                continue
            op, value = split
            pred = Predicate(capture=name, op=op, value=value)
            ids = [e["evidence_id"] for e in bad_ev]
            self.progress(f"{function}: failing calls have {name} {op} {value!r}, healthy ones do not")
            likely = likely or Verdict("likely", service, f"{file}:{function}",
                                       f"{function} fails when {name} {op} {value!r}", pred, evidence=ids)
            if name in fn.params:
                found = self._from_caller(service, function, name, pred, frames)
                if found is not None:
                    return found
                continue
            if any(n in fn.params and separate(values_of(bad_ev, n), values_of(good_ev, n), nodes=True)
                   for n in feeds if n not in names):
                continue  # made here from a bad argument: the loop follows that argument next
            return self._conclude("proven", service, f"{file}:{function}",
                                  f"{function} computes {name} {op} {value!r} on failing calls", pred, ids) or likely
        return likely

    def _from_caller(self, service: str, function: str, param: str, pred: Predicate,
                     frames: List[Dict[str, Any]]) -> Optional[Verdict]:
        idx = next((i for i in range(len(frames) - 1, -1, -1) if frames[i].get("function") == function), None)
        if not idx:
            return None
        caller = frames[idx - 1]
        cfile, cfunc, cline = caller.get("file") or "", caller.get("function") or "", caller.get("line") or 0
        if not is_app_file(cfile):
            return None
        csrc = self._text(service, cfile)
        src = self._text(service, frames[idx].get("file") or "")
        params = next((f.params for f in functions(src) if f.qualname == function), ())
        arg = argument_for(csrc, cfunc, cline, function.split(".")[-1], params, param)
        if arg is None:
            self.progress(f"{cfunc}: cannot tell what it passes as {param} at line {cline}")
            return None
        made_by = [arg] + [expr for n in names_in(arg) for _, expr in assigned_from(csrc, cfunc, n)]
        producers = [c for c in callees(csrc, cfunc) if any(c.name.split(".")[-1] + "(" in e for e in made_by)]
        self.progress(f"{cfunc} passes {arg} as {param}; made by {', '.join(c.name for c in producers) or 'nothing we can probe'}")
        for call in producers:
            target = self._resolve(service, call.name.split(".")[-1].rstrip("()"), cfile)
            if target is None:
                continue
            tfile, tfunc = target
            for rline, expr in returns(self._text(service, tfile), tfunc)[:2]:
                alias = self._place(service, "snapshot", f"{tfile}:{rline}", capture=[expr], rate=20)
                evs = self._events(alias, 5)
                got = [e for e in evs if (e.get("expressions") or {}).get(expr) is not None]
                claim = Predicate(capture=expr, op=pred.op, value=pred.value)
                if got:
                    v = self._conclude("proven", service, f"{tfile}:{tfunc}",
                                       f"{tfunc} returns {expr} {pred.op} {pred.value!r}, which reaches {function} "
                                       f"as {param} and makes it fail", claim, [e["evidence_id"] for e in got])
                    if v is not None:
                        return v
        return None

    def _resolve(self, service: str, name: str, near: str = "") -> Optional[Tuple[str, str]]:
        """The function called `name`: in the file `near` first, then its folder, then the service."""
        folder = near.rsplit("/", 1)[0]
        files = sorted(self._app_files(service), key=lambda f: (f != near, not f.startswith(folder + "/")))
        for file in files:
            try:
                fns = functions(self._text(service, file))
            except ProbebookError:
                continue
            except ValueError:
                continue
            for f in fns:
                if f.qualname.split(".")[-1] == name and "<locals>" not in f.qualname:
                    return file, f.qualname
        return None

    # ------------------------------------------------------------------ latency
    def _latency(self, service: str, entry: EntryPoint) -> Optional[Verdict]:
        current = entry
        for _ in range(4):
            if time.monotonic() > self.deadline:
                break
            src = self._text(service, current.file)
            names = {c.name.split(".")[-1] for c in callees(src, current.function)}
            kids = [t for t in (self._resolve(service, n, current.file) for n in sorted(names)) if t is not None][:5]
            probes = {(current.file, current.function): self._place(
                service, "metric", self._where(service, current.file, current.function), metric="entry_ms", rate=50)}
            for kfile, kfunc in kids:
                probes[(kfile, kfunc)] = self._place(service, "metric", self._where(service, kfile, kfunc),
                                                     metric="callee_ms", rate=50)
            time.sleep(min(self.wait_s, max(0.0, self.deadline - time.monotonic())))
            med = {}
            for key, alias in probes.items():
                evs = self.tools.events_of(alias) if alias else []
                vals = [e["value"] for e in evs if isinstance(e.get("value"), (int, float))]
                if len(vals) >= 3:
                    med[key] = (statistics.median(vals), [e["evidence_id"] for e in evs])
                self.tools.call("remove_probe", {"probe": alias}) if alias else None
            top = med.get((current.file, current.function))
            if top is None:
                return None
            kid = max(((k, v) for k, v in med.items() if k != (current.file, current.function)),
                      key=lambda kv: kv[1][0], default=None)
            if kid is None or kid[1][0] < 0.6 * top[0]:
                threshold = round(top[0] / 2, 3)
                pred = Predicate(field="value", op=">", value=threshold, agg="median", min_events=3)
                return self._conclude("proven", service, f"{current.file}:{current.function}",
                                      f"{current.function} itself holds the time: median {top[0]:.1f} ms",
                                      pred, top[1])
            (kfile, kfunc), _ = kid
            self.progress(f"latency: {kfunc} holds {kid[1][0]:.1f} of {top[0]:.1f} ms; descending")
            current = EntryPoint(service, kfile, kfunc, 0, "holds the time")
        return None
