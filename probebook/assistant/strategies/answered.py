"""Errors another service of ours answered: a caught error names a connected peer and the status it
answered (``target='payments', status=422``). The investigation moves to that peer:

1. Where does the peer answer that status? Every ``return``/``raise`` in its running source holding
   the number is watched with a snapshot probe; the one that fires is the answer.
2. The ``if`` guarding it is captured on failing and healthy calls (the guard and its negation). The
   variable that separates them is followed: read from the request under a field name
   (``body.get("currency")``) -> the value came from a caller; every place a connected service builds
   a payload with that field (``{"currency": cur}``) is watched, and the one where the bad value is
   made (not read from its own request under the same name) is claimed, with a probe of its own.
   Otherwise the errors strategy's comparison decides it in the peer.
3. No guard (the answer passes on what a deeper call said): the error handlers of that function and
   of its callees are watched (the caught-errors strategy, one level down).

Nothing here is `proven` unless the gate says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from probebook.errors import ProbebookError
from probebook.evidence.predicate import Predicate, holds

from ..codeview import PURE_CALLS, assigned_from, called_in, functions, names_in, next_line, operands
from ..differential import separate, values_of
from ..entrypoints import EntryPoint
from ..model import Hypothesis, Verdict
from ..wire import answers, field_reads, field_sites, read_of

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["answered"]

Event = Dict[str, Any]


def answered(ctx: "Investigator", peer: str, status: int, depth: int) -> Optional[Verdict]:
    """`peer`, a connected service of ours, answered `status` to a call: where and why (module doc)."""
    from .caught import caught  # the strategies hand over to each other

    if not 400 <= status <= 599 or depth > 3:
        return None
    sites: List[Tuple[str, str, int, str, str, int]] = []
    for file in ctx.app_files(peer):
        try:
            sites += [(file, *row) for row in answers(ctx.text(peer, file), status)]
        except (ProbebookError, ValueError):  # unreadable or not parseable here: not a candidate
            continue
    if not sites:
        ctx.progress(f"{peer}: no return or raise in its code holds {status}")
        return None
    ctx.progress(f"{peer}: {len(sites)} place(s) may answer {status}: "
                 f"{', '.join(f'{s[1]} line {s[2]}' for s in sites[:4])}")
    fired = ctx.fired(peer, sites[:6])
    if not fired:
        ctx.progress(f"{peer}: none of them answered while watched")
        return None
    (file, fn, line, stmt, guard, gline), evs = fired[0]
    ctx.progress(f"{peer}: {fn} answers {status} ({len(evs)} times): {stmt[:80]}")
    ctx.hypotheses.append(Hypothesis(f"{peer} answers {status} in {fn}" + (f" when {guard}" if guard else ""),
                                     peer, f"{file}:{fn}", score=0.3, evidence=[e["evidence_id"] for e in evs[:5]]))
    if guard:
        verdict = _guarded(ctx, peer, file, fn, guard, gline, line)
        if verdict is not None:
            return verdict
    return caught(ctx, peer, [EntryPoint(peer, file, fn, 0, f"answers {status}")], depth + 1)


def _guarded(ctx: "Investigator", peer: str, file: str, function: str, guard: str, gline: int,
             line: int) -> Optional[Verdict]:
    """The answer's guard: the names it reads, captured where the answer is made (failing calls) and after
    the ``if`` (healthy calls: the guard was false); what separates them, followed."""
    from .errors import _decide, _feeds

    src = ctx.text(peer, file)
    fn = next((f for f in functions(src) if f.qualname == function), None)
    after = next_line(src, function, gline)
    if fn is None or after is None:
        return None
    names = names_in(guard)
    feeds = _feeds(src, function, names)
    capture = [o for o in operands(guard) if o not in feeds and _dotted_only(o)]  # no calls: they may not run
    capture += [n for n in feeds if (n in fn.params or assigned_from(src, function, n)) and n not in capture]
    bad = ctx.events(ctx.place(peer, "snapshot", f"{file}:{line}", capture=capture, rate=20), 5)
    good = ctx.events(ctx.place(peer, "snapshot", f"{file}:{after}", capture=capture, rate=20), 10)
    for name in capture:
        split = separate(values_of(bad, name), values_of(good, name), nodes=True)
        if split is None:
            continue
        pred = Predicate(capture=name, op=split[0], value=split[1])
        fields = _request_fields(src, function, name, fn.params)
        ctx.progress(f"{function}: failing calls have {pred.describe()}, healthy ones do not"
                     + (f"; it is read from the request's {fields[0]!r}" if fields else ""))
        if fields:
            found = _upstream(ctx, peer, fields[0], pred, f"{peer} answers an error in {function} when {guard}")
            if found is not None:
                return found
    return _decide(ctx, peer, file, fn, src, names, feeds, capture, bad, good, [])


def _producer(ctx: "Investigator", service: str, file: str, fn: str, expr: str, claim: Predicate) -> Optional[Verdict]:
    """The value sent is returned by a call of ours (``region = region_of(user)``): proven at that
    function's ``return`` when the claim holds there too."""
    from .errors import probe_producers

    src = ctx.text(service, file)
    made = [e for _, e in assigned_from(src, fn, expr)] if expr.isidentifier() else [expr]
    calls = [c for c in called_in(src, fn, made) if c.split(".")[-1] not in PURE_CALLS]
    return probe_producers(ctx, service, file, calls, claim, fn, expr) if calls else None


def _dotted_only(expr: str) -> bool:
    """``resp.status``, ``self.pool.in_use``: names and attributes only, safe to capture."""
    return all(part.isidentifier() for part in expr.split("."))


def _request_fields(src: str, function: str, name: str, params: tuple) -> List[str]:
    """The field under which `name` is read from what the function was handed (a request): `name` is
    bound to ``body.get("currency")``, ``req["currency"]``, possibly converted (``str(...)``) or
    defaulted (``... or "USD"``), and ``body`` is a parameter or bound from one. A value computed from
    a call's answer is not a request field, whatever that call was given."""
    out: List[str] = []
    for _, expr in assigned_from(src, function, name):
        key, base = read_of(expr)
        if key is None or base is None:
            continue
        chain = [base] + [n for _, e in assigned_from(src, function, base) if read_of(e) == (None, None)
                          for n in names_in(e)[:1]]
        if any(n in params for n in chain) and key not in out:
            out.append(key)
    return out


def _upstream(ctx: "Investigator", peer: str, field: str, pred: Predicate, effect: str) -> Optional[Verdict]:
    """Where a connected service puts the bad value in a payload's `field` (module doc, step 2)."""
    sites: List[Tuple[str, str, str, int, str]] = []
    for svc in ctx.services():
        if svc == peer:
            continue
        for file in ctx.app_files(svc):
            try:
                sites += [(svc, file, *row) for row in field_sites(ctx.text(svc, file), field)]
            except (ProbebookError, ValueError):
                continue
    if not sites:
        ctx.progress(f"no service of ours builds a payload with {field!r}: the value comes from outside")
        return None
    ctx.progress(f"{field!r} is put in payloads in {len(sites)} place(s): "
                 f"{', '.join(f'{s[0]} {s[2]}' for s in sites[:5])}; watching them")
    placed = []
    for svc, file, fn, line, expr in sites[:6]:
        reads = field_reads(ctx.text(svc, file), fn, expr, field)[:2]
        alias = ctx.place(svc, "snapshot", f"{file}:{line}", capture=[expr] + reads, rate=20)
        placed.append(((svc, file, fn, expr, reads), alias))
    ctx.pause(min(ctx.wait_s, 10.0))
    made, passed = [], []
    for (svc, file, fn, expr, reads), alias in placed:
        claim = Predicate(capture=expr, op=pred.op, value=pred.value)
        bad = [e for e in ctx.events(alias, 2, timeout=1.0) if holds(claim, e)]
        if len(bad) < 2:  # seen more than once, not a single odd call
            continue
        forwarded = any(holds(Predicate(capture=r, op=pred.op, value=pred.value), e) for r in reads for e in bad)
        ctx.progress(f"{svc}: {fn} sends {field}={expr} with {pred.describe()} "
                     f"({'read under the same name from its own input' if forwarded else 'made here'})")
        (passed if forwarded else made).append((svc, file, fn, expr, claim, bad))
    for svc, file, fn, expr, claim, bad in made:
        found = _producer(ctx, svc, file, fn, expr, claim)
        if found is not None:
            return found
        v = ctx.conclude("proven", svc, f"{file}:{fn}", f"{fn} sends {field} = {expr} with {claim.describe()}; "
                         f"{effect}", claim, [e["evidence_id"] for e in bad])
        if v is not None:
            return v
    if passed:
        svc, file, fn, expr, claim, bad = passed[0]
        return Verdict("likely", svc, f"{file}:{fn}", f"{fn} passes on {field} with {claim.describe()} from its own "
                       f"caller; {effect}", claim, evidence=[e["evidence_id"] for e in bad])
    return None
