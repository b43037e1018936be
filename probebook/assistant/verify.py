"""Verification after a fix (issue 12, part 3): the probes that proved the cause are placed again, for a
while, and the proof's predicate is checked on what they capture now. The cause is gone when enough calls
were seen and none of them shows it (or, for an aggregate predicate, their aggregate no longer does);
too few calls is `inconclusive`, said as such. A proof read on a line few calls reach (an error path)
is judged out of every call of the function that holds the line, counted beside it. Where the predicate
cannot judge (values seen on neither side before; no call reaches its place, as when a flag took that
path out of use), the failure the investigation caught judges instead, where it was caught. Every step
is on the timeline; the probes are removed.

>>> VerifyReport("gone", 20, 0, "x > 1").headline()
'verified: x > 1 held on 0 of 20 calls after the fix'
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from probebook.errors import AssistantError, ProbebookError, one_line
from probebook.evidence.predicate import Predicate, compare, holds, judge, value_of
from probebook.evidence.schema import sql_list
from probebook.session import Investigation

from .codeview import SourceError, callees, enclosing, functions
from .differential import is_number
from .model import Verdict, epoch_of
from .proof import load_events
from .tools import probe_events, remove_placed

__all__ = ["VerifyReport", "verify_fix", "verify_failure", "failure_seen", "as_seen", "anchor_lines"]

_MOST_EVENTS = 1_000_000


@dataclass
class VerifyReport:
    """`outcome`: ``gone`` (the predicate held on none of `seen` calls), ``still`` (it still holds), or
    ``inconclusive`` (fewer calls than asked for arrived)."""

    outcome: str
    seen: int
    held: int
    claim: str
    evidence: List[str] = field(default_factory=list)
    probes: List[str] = field(default_factory=list)
    why: str = ""
    by_symptom: bool = False  # nothing left for a probe to judge: the alert's query is the judge

    def headline(self) -> str:
        word = {"gone": "verified", "still": "NOT fixed", "inconclusive": "inconclusive"}[self.outcome]
        return f"{word}: {self.claim} held on {self.held} of {self.seen} calls after the fix" + (
            f" ({self.why})" if self.why else "")

    def to_dict(self) -> Dict[str, Any]:
        return {"outcome": self.outcome, "seen": self.seen, "held": self.held, "claim": self.claim,
                "headline": self.headline(), "evidence": self.evidence, "probes": self.probes,
                "by_symptom": self.by_symptom}


def anchor_lines(inv: Investigation, verdict: Verdict) -> Dict[str, str]:
    """The text of each line the proof's probes were placed on, read from the code running now: taken
    before a rollback or a fix, it lets `verify_fix` find the same line in the release that replaces it."""
    out: Dict[str, str] = {}
    for service, spec in evidence_probes(inv, verdict.evidence):
        path, line = _file_line(spec.get("where", ""))
        if path:
            try:
                lines = inv.source_file(service, path, line, line).lines
            except ProbebookError:
                continue
            if lines:
                out[spec["where"]] = lines[0][1]
    return out


def verify_fix(inv: Investigation, verdict: Verdict, calls: int = 20, timeout: float = 60.0,
               progress: Optional[Callable[[str], None]] = None,
               anchors: Optional[Mapping[str, str]] = None) -> VerifyReport:
    """Place again the probes that captured `verdict`'s evidence (same kind, place, condition and
    captures), wait for `calls` events or `timeout` seconds, and judge the verdict's predicate on them.
    A probe whose file the service no longer runs (a new release elsewhere on disk) goes to the file it
    runs now with the same path tail, on the line with the text `anchors` held for it (`anchor_lines`).
    Where the running code no longer has that line (the fix rewrote it), the predicate has no place to be
    judged: the failure itself judges instead (`verify_failure`), or, where the investigation caught no
    exception, the answer is `inconclusive` and says to judge the fix by its symptom."""
    if verdict.predicate is None or not verdict.evidence:
        raise AssistantError("verify: the verdict has no predicate and evidence to check again; verify a proven one")
    say = progress or (lambda line: None)
    specs = [(service, _on_running_code(inv, service, spec, anchors or {}, say))
             for service, spec in evidence_probes(inv, verdict.evidence)]
    if not specs:
        raise AssistantError("verify: the probes that captured the verdict's evidence are not in this investigation")
    pred = as_seen(inv, verdict)
    claim = pred.describe() + (f" (the failing calls' values; the proof's bound: {verdict.predicate.describe()})"
                               if pred != verdict.predicate else "")
    rewritten = [spec for _, spec in specs if spec.get("rewritten")]
    if rewritten:  # the predicate read values at a line the running code no longer has: it says nothing now
        gone_line = f"the running code no longer has the line the proof was read at ({one_line(rewritten[0]['rewritten'], 60)})"
        report = _by_failure(inv, verdict, calls, timeout, say, gone_line)
        if report is None:
            report = VerifyReport("inconclusive", 0, 0, claim, why=f"{gone_line}: judge the fix by its symptom, "
                                                                    f"the alert, instead", by_symptom=True)
        inv.mark(f"verification: {report.headline()}")
        say(report.headline())
        return report
    deadline = time.monotonic() + timeout
    inv.mark(f"verification started: is {claim} gone at {verdict.locus}?")
    placed: List[Any] = []
    reach: List[Any] = []  # beside a probe with a condition: a plain log of every call reaching its place
    entered: List[Any] = []  # beside a probe on a line: every call of the function that holds the line, counted
    counted = ""  # that function, `module:qualname`
    callers: List[Any] = []  # the calls of the verdict's function's callers, counted
    try:
        holders = {(service, _function_of(inv, service, spec)) for service, spec in specs}
        for caller in _callers(inv, verdict):
            try:  # where they run and it does not, the path to it is out of use (a flag turned off)
                callers.append(inv.probe("metric", verdict.service, caller, metric="verify_calls", rate=50,
                                         ttl=timeout + 30, partial=True))
            except ProbebookError as exc:
                say(f"verify: the calls of {caller} cannot be counted: {one_line(exc, 120)}")
        if len(holders) == 1 and all(fn for _, fn in holders):  # every probe on lines of one function
            (service, holder), = holders
            try:  # placed first: every call that reaches the line is counted there too
                entered.append(inv.probe("metric", service, holder, metric="verify_calls", rate=50,
                                         ttl=timeout + 30, partial=True))
                counted = str(holder)
            except ProbebookError as exc:
                say(f"verify: the calls of {holder} cannot be counted: {one_line(exc, 120)}")
        for service, spec in specs:
            rec = inv.probe(spec["kind"], service, spec["where"], when=spec.get("when"), capture=spec.get("capture", ()),
                            template=spec.get("template"), limits=spec.get("limits"), rate=50,
                            ttl=timeout + 30, partial=True)
            placed.append(rec)
            say(f"verify: probe {rec.alias} again at {spec['where']}")
            if spec.get("when") and spec["kind"] in _LINE_KINDS:
                reach.append(inv.probe("log", service, spec["where"], template="verify: reached", rate=50,
                                       ttl=timeout + 30, partial=True))
        watching = time.monotonic()
        events, reached = _watch(inv, placed, reach, calls, timeout)
        watched = time.monotonic() - watching
        # the calls counted only where every probe of the proof took: an instance that refused one (an older
        # release beside the new one) would count calls nobody watched
        took = set.intersection(*(set(rec.placed.probe_ids) for rec in placed)) if placed else set()
        ran = sum(1 for e in _events(inv, entered) if e.get("instance_id") in took)
        upstream = sum(1 for e in _events(inv, callers) if e.get("instance_id") in took)
    finally:
        remove_placed(inv, placed + reach + entered + callers)
    events = events[:max(calls, 1)] if len(events) > calls else events
    held = sum(1 for e in events if holds(pred, e))
    expect = _expected(inv, verdict, pred, watched) if entered and ran >= calls and not held else 0.0
    if len(events) >= calls:
        still = judge(pred, events) if pred.agg == "median" else (held > 0 or None)
        report = VerifyReport("still" if still else "gone", len(events), held, claim)
    elif reach and reached >= calls:
        # the calls reached the place; the condition let only `events` through: judged on those, out of all
        still = judge(pred, events) if pred.agg == "median" and events else held > 0
        report = VerifyReport("still" if still else "gone", reached, held, claim,
                              why=f"the probe's condition let {len(events)} of {reached} calls through")
    elif entered and ran >= calls and pred.agg != "median" and (held or expect >= 3):
        # the line is on a path few calls take now (an error path the fix closed): judged out of every call of
        # its function, once the fault, at the rate the proof saw it, would have shown at least 3 times meanwhile
        fn = counted.rpartition(":")[2]
        report = VerifyReport("still" if held else "gone", ran, held, claim, why=(
            f"{len(events)} of {ran} calls of {fn} raised" if specs[0][1]["kind"] == "exception" else
            f"the line ran on {max(len(events), reached)} of {ran} calls of {fn}") +
            ("" if held else f"; at the rate it showed before, about {expect:.0f} "
                             f"would have shown the fault in these {watched:.0f}s"))
    else:
        report = VerifyReport("inconclusive", max(len(events), reached), held, claim,
                              why=f"asked for {calls} calls within {timeout:g}s")
    between = sum(1 for e in events if holds(verdict.predicate, e) and not holds(pred, e))
    if report.outcome == "gone" and between:  # values neither like the failing calls nor like the healthy ones
        report = VerifyReport("inconclusive", report.seen, held, claim, why=(
            f"{between} call(s) had {pred.capture} between the healthy calls' largest ({verdict.predicate.value!r}) "
            f"and the failing calls' smallest ({pred.value!r}): values seen on neither before the fix"
            if pred.op == ">=" else
            f"{between} call(s) had {pred.capture} between the failing calls' largest ({pred.value!r}) and the "
            f"healthy calls' smallest ({verdict.predicate.value!r}): values seen on neither before the fix"))
    report.evidence = [e["evidence_id"] for e in events]
    report.probes = [rec.alias for rec in placed]
    if report.outcome == "inconclusive" and report.held == 0 and (between or not report.seen):
        # the predicate cannot judge (values seen on neither side; or no call reached its place: an action
        # took that path out of use, or no traffic came): the failure itself, where it was caught, may
        idle = "" if report.seen else f"no call reached {', '.join(sorted({s['where'] for _, s in specs}))}"
        say(f"verify: {report.headline()}; asking the failure itself")
        failure = _by_failure(inv, verdict, calls, max(15.0, deadline - time.monotonic()), say, idle or report.why)
        report = failure if failure is not None and failure.outcome != "inconclusive" else report
        expect = _expected(inv, verdict, pred, watched) if upstream >= calls else 0.0
        if report.outcome == "inconclusive" and not report.seen and expect >= 3:
            # its callers ran and it did not, where at the rate the proof saw it about `expect` would have
            fn = verdict.locus.rpartition(":")[2]
            report = VerifyReport("gone", upstream, 0, claim, why=(
                f"the path no longer runs: {fn} ran on none of {upstream} calls of "
                f"{' and '.join(c.where.rpartition(':')[2] for c in callers)} while watched; at the rate it "
                f"showed before, about {expect:.0f} would have shown the fault in these {watched:.0f}s"))
    inv.mark(f"verification: {report.headline()}")
    say(report.headline())
    return report


def _expected(inv: Investigation, verdict: Verdict, pred: Predicate, seconds: float) -> float:
    """How many calls showing the fault the proof's probes would see in `seconds`, at the rate its cited
    events came (those `pred` holds on: the gaps between them over their span, a span under a second taken
    as one: a burst says little of a rate); 0 when fewer than 3 came or all at once."""
    stamps = sorted(epoch_of(e.get("ts")) for e in load_events(inv.store, verdict.evidence).values() if holds(pred, e))
    if len(stamps) < 3 or stamps[-1] - stamps[0] <= 0:
        return 0.0
    return (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1.0) * seconds


def _by_failure(inv: Investigation, verdict: Verdict, calls: int, timeout: float, say: Callable[[str], None],
                reason: str) -> Optional[VerifyReport]:
    """`verify_failure`'s answer on a failure of the verdict's service or function, saying why the predicate
    could not judge (`reason`); None when no such failure was caught."""
    report = verify_failure(inv, calls=calls, timeout=timeout, progress=say, verdict=verdict, related=True)
    if report is not None:
        report.why = "; ".join(w for w in (report.why, f"{reason}: judged by the failure itself") if w)
    return report


def as_seen(inv: Investigation, verdict: Verdict) -> Predicate:
    """The predicate verification judges: a bound that separated failing from healthy calls (``rate > 0.0``,
    the healthy calls' largest value) narrowed to the values the failing calls had (``rate >= 15``).
    Both separated them when the proof was made. After a fix, a call in the narrowed range shows the fault
    still; one between the two bounds (a rate of 0.15) was seen on neither side, so it makes the answer
    `inconclusive`, never `still` (it may be the fixed code's healthy value) nor `gone` (it may be the
    fault at a smaller size). Any other predicate is judged as it is."""
    p = verdict.predicate
    if p is None or p.agg != "any" or p.op not in (">", "<") or not p.capture or not is_number(p.value):
        return p  # type: ignore[return-value]
    seen = [value_of(p, e) for e in load_events(inv.store, verdict.evidence).values()]
    if not seen or not all(is_number(v) and compare(v, p.op, p.value) for v in seen):
        return p
    bound = min(seen) if p.op == ">" else max(seen)
    return replace(p, op=p.op + "=", value=bound)


_LINE_KINDS = ("snapshot", "log", "metric")  # the kinds a condition filters calls of at a place


def _file_line(where: str) -> Tuple[str, int]:
    path, sep, line = where.rpartition(":")
    return (path, int(line)) if sep and path.endswith(".py") and line.isdigit() else ("", 0)


def _on_running_code(inv: Investigation, service: str, spec: Dict[str, Any], anchors: Mapping[str, str],
                     say: Callable[[str], None]) -> Dict[str, Any]:
    path, line = _file_line(spec.get("where", ""))
    if not path:
        return spec  # a function (module:qualname) is found by name in any release
    try:
        files = [m.file for m in inv.modules(service)]
    except ProbebookError:
        return spec
    best, common = (path, 1) if path in files else ("", 0)
    tail = [p for p in path.split("/") if p]
    for f in files if not best else ():
        parts = [p for p in f.split("/") if p]
        n = 0
        while n < min(len(parts), len(tail)) and parts[-1 - n] == tail[-1 - n]:
            n += 1
        if n > common:
            best, common = f, n
    if not best:
        return spec
    text = anchors.get(spec["where"], "").strip()
    if text:
        try:
            found = [n for n, t in inv.source_file(service, best).lines if t.strip() == text]
        except ProbebookError:
            found = None
        if found == []:  # the fix rewrote the very line the proof was read at
            say(f"verify: {best} no longer has the line the proof was read at ({one_line(text, 80)})")
            return {**spec, "rewritten": text}
        line = min(found, key=lambda n: abs(n - line)) if found else line
    where = f"{best}:{line}"
    if where != spec["where"]:
        say(f"verify: {spec['where']} is {where} in the code {service} runs now")
    return {**spec, "where": where}


def _function_of(inv: Investigation, service: str, spec: Mapping[str, Any]) -> Optional[str]:
    """Where to count every call a probe sees only some of: for a probe on a line (``file.py:LINE``), the
    function whose body holds it in the code the service runs (`module:qualname`); for an exception probe,
    its own function. None for a probe that sees every call, or where the module or function is not found."""
    where = str(spec.get("where", ""))
    path, line = _file_line(where)
    if not path:
        return where if spec.get("kind") == "exception" and ":" in where else None
    try:
        module, source = _module_source(inv, service, path)
        fn = enclosing(source, line) if source else None
    except (ProbebookError, SourceError):
        return None
    return f"{module}:{fn.qualname}" if fn is not None else None


def _module_source(inv: Investigation, service: str, path: str) -> Tuple[str, str]:
    """The name of the module `service` runs from the file `path`, and its text; ("", "") where none does."""
    module = next((m.name for m in inv.modules(service) if m.file == path), "")
    return module, "\n".join(text for _, text in inv.source_file(service, path).lines) if module else ""


def _callers(inv: Investigation, verdict: Verdict, most: int = 2) -> List[str]:
    """The functions of the verdict's own module that call its function by name (``self.risk.score(...)``
    calls ``score``), as `module:qualname`, at most `most`; none where the module cannot be read."""
    path, _, qualname = verdict.locus.rpartition(":")
    name = qualname.rpartition(".")[2]
    if not (path and name and verdict.service):
        return []
    try:
        module, source = _module_source(inv, verdict.service, path)
        found = [f.qualname for f in functions(source) if f.qualname != qualname and
                 any(c.name.rpartition(".")[2] == name for c in callees(source, f.qualname))] if source else []
    except (ProbebookError, SourceError):
        return []
    return [f"{module}:{q}" for q in found[:most]]


def _watch(inv: Investigation, placed: List[Any], reach: List[Any], calls: int,
           timeout: float) -> Tuple[List[Dict[str, Any]], int]:
    """The events of `placed`, and how many calls reached `reach`, once either counts `calls` or at `timeout`."""
    deadline = time.monotonic() + timeout
    events, reached = _events(inv, placed), len(_events(inv, reach))
    while len(events) < calls and not (reach and reached >= calls) and time.monotonic() < deadline:
        time.sleep(0.25)
        events, reached = _events(inv, placed), len(_events(inv, reach))
    return events, reached


def failure_seen(inv: Investigation, verdict: Optional[Verdict] = None,
                 related: bool = False) -> Optional[Tuple[str, Dict[str, Any], str, int]]:
    """The failure this investigation watched: (service, spec of the exception probe, exception type, how
    many); None when its exception probes caught none. With a verdict, an exception caught in the verdict's
    service and raised through its function (a frame named as the locus names it, or by its bare name
    where Python gives only that) comes first, then one in its service, then one raised through its
    function elsewhere, then the type caught most: an unrelated error caught more often elsewhere is not
    what the fix is judged by. With `related`, only one in the verdict's service or raised through its
    function: None rather than an error of another kind elsewhere."""
    if "exceptions" not in inv.store.tables():
        return None
    qualname = verdict.locus.rpartition(":")[2] if verdict and ":" in verdict.locus else ""
    names = [n for n in dict.fromkeys((qualname, qualname.rpartition(".")[2])) if n]
    through = ("coalesce(bool_or(list_has_any(json_extract_string(frames, '$[*].function'), [" +
               sql_list(names) + "])), false)") if names else "false"
    own = "service = " + sql_list([verdict.service if verdict else ""])
    rows = inv.sql(f"SELECT service, probe_id, exc_type, count(*) AS n, {through} AS through, {own} AS own "
                   "FROM exceptions WHERE exc_type IS NOT NULL GROUP BY 1, 2, 3 "
                   "ORDER BY (through AND own) DESC, own DESC, through DESC, n DESC, exc_type LIMIT 1").rows()
    if not rows or (related and not (rows[0][4] or rows[0][5])):
        return None
    service, probe_id, exc_type, n = rows[0][:4]
    spec = _spec_of(inv, service, probe_id)
    return (service, spec, exc_type, int(n)) if spec and spec.get("where") else None


def verify_failure(inv: Investigation, calls: int = 20, timeout: float = 60.0,
                   progress: Optional[Callable[[str], None]] = None,
                   verdict: Optional[Verdict] = None, related: bool = False) -> Optional[VerifyReport]:
    """The failure itself after a fix: the exception probe that caught it (`failure_seen`, by the verdict
    when given) placed again where it was
    (a function by module and name, which a new release keeps), beside a duration probe that counts every
    call there. `gone` when `calls` calls came and none raised that type, `still` when one did,
    `inconclusive` when fewer came; None when the investigation caught no exception to check."""
    seen = failure_seen(inv, verdict, related)
    if seen is None:
        return None
    say = progress or (lambda line: None)
    service, spec, exc_type, n = seen
    where = spec["where"]
    claim = f"{exc_type} raised through {where}"
    inv.mark(f"verification started: is {claim} gone? ({n} caught while investigating)")
    placed: List[Any] = []
    reach: List[Any] = []
    try:
        placed.append(inv.probe("exception", service, where, rate=50, ttl=timeout + 30, partial=True))
        reach.append(inv.probe("metric", service, where, metric="verify_calls", rate=50, ttl=timeout + 30,
                               partial=True))
        say(f"verify: exception probe {placed[0].alias} again at {where}, and the calls reaching it counted")
        events, reached = _watch(inv, placed, reach, calls, timeout)
    except ProbebookError as exc:
        say(f"verify: the failure's probe could not be placed again: {one_line(exc, 160)}")
        return None
    finally:
        remove_placed(inv, placed + reach)
    raised = [e for e in events if e.get("exc_type") == exc_type]
    if raised:
        report = VerifyReport("still", max(reached, len(events)), len(raised), claim)
    elif reached >= calls:
        report = VerifyReport("gone", reached, 0, claim)
    else:
        report = VerifyReport("inconclusive", reached, 0, claim, why=f"asked for {calls} calls within {timeout:g}s")
    report.evidence = [e["evidence_id"] for e in raised]
    report.probes = [rec.alias for rec in placed + reach]
    return report


def _spec_of(inv: Investigation, service: str, probe_id: str) -> Optional[Dict[str, Any]]:
    rows = inv.sql("SELECT spec FROM probes WHERE probe_id = " + sql_list([probe_id]) + " AND service = "
                   + sql_list([service])).rows()
    if not rows:
        return None
    spec = rows[0][0]
    return json.loads(spec) if isinstance(spec, str) else dict(spec)


def evidence_probes(inv: Investigation, evidence: List[str]) -> List[tuple]:
    """(service, spec) of each distinct probe that captured one of `evidence`."""
    seen, out = set(), []
    for ev in load_events(inv.store, evidence).values():
        key = (ev.get("service"), ev.get("probe_id"))
        if key in seen:
            continue
        seen.add(key)
        spec = _spec_of(inv, str(key[0]), str(key[1]))
        if spec is not None:
            out.append((key[0], spec))
    return out


def _events(inv: Investigation, placed: List[Any]) -> List[Dict[str, Any]]:
    # every event its probes stored: far more than 50 a second fill in any wait verify is given
    return [e for rec in placed for e in probe_events(inv, rec, limit=_MOST_EVENTS)]
