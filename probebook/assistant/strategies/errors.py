"""The errors strategy: from failing requests to the place where the bad value is made.

1. An exception probe on the entry functions: the raise site and every frame's locals.
2. If the failure came from a call out of the service (the innermost frame is library code, or the
   value that decides the raise was read from a call outside our code), the URLs in the raise
   frame's locals name the path of the next hop; the connected service that serves that path is
   investigated the same way.
3. Else the ``if`` guarding the raise is captured on failing and healthy calls; the variable that
   separates them is followed: made here from healthy inputs -> this function; passed in -> what the
   caller passed, and the function that produced it is probed at its ``return``.

Nothing here is `proven` until the gate says so; a separated value at the raise site without an
origin is `likely`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from probebook.evidence.predicate import Predicate, holds
from probebook.protocol.capture_tree import plain

from ..codeview import (PURE_CALLS, argument_for, assigned_from, called_in, functions, local_names, names_in,
                        next_line, operands, passes_through, raises, reads_into, reads_state, returns)
from ..differential import separate, separate_items, values_of
from ..entrypoints import EntryPoint, innermost_ours, is_app_file, paths_in
from ..model import Hypothesis, Verdict
from .caught import caught, outside, peer_of
from .down import down_raised

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["errors", "from_caller", "probe_producers"]

Event = Dict[str, Any]
_FROM_OUTSIDE = "comes from outside"  # a decisive value read from a call out of our code: look further


def errors(ctx: "Investigator", service: str, eps: List[EntryPoint], depth: int = 0) -> Optional[Verdict]:
    probes = [ctx.place(service, "exception", ctx.where(service, ep.file, ep.function), rate=20) for ep in eps]
    events = [e for got in ctx.gathered(probes, 3) for e in got if e.get("frames")]
    if not events:
        ctx.progress(f"{service}: the entry points raised nothing while watched")
        return caught(ctx, service, eps, depth)
    sites: Dict[Tuple[str, str, int], List[Event]] = {}
    for e in events:
        inner = innermost_ours(e["frames"])
        if inner is not None:
            sites.setdefault((inner["file"], inner["function"], inner["line"]), []).append(e)
    if not sites:
        return None
    (file, function, line), evs = max(sites.items(), key=lambda kv: len(kv[1]))
    exc_type = evs[0].get("exc_type") or "?"
    ctx.progress(f"{service}: {len(evs)} x {exc_type} raised in {function} ({file}:{line})")
    ctx.hypotheses.append(Hypothesis(f"{exc_type} raised in {function}", service, f"{file}:{function}", score=0.4,
                                     evidence=[e["evidence_id"] for e in evs[:5]]))
    # a call to a service of ours that does not answer (raised by the library or by our client's own raise)
    client = [plain(((innermost_ours(e["frames"]) or {}).get("locals") or {}).get("self")) for e in evs[:5]]
    gone = down_raised(ctx, peer_of(ctx, client), service, file, function, evs)
    if gone is not None:
        return gone
    library_raised = not is_app_file(evs[0]["frames"][-1].get("file") or "")
    if library_raised:
        hop = _next_hop(ctx, service, evs, depth)
        if hop is not None:
            return hop
        return Verdict("likely", service, f"{file}:{function}", f"{exc_type} from a call {function} makes "
                       f"(raised in library code)", evidence=[e["evidence_id"] for e in evs[:5]])
    verdict = _origin(ctx, service, file, function, line, evs)
    if verdict is None:  # nothing here tells failing calls apart: a call out that failed names where to look
        return _next_hop(ctx, service, evs, depth)
    if verdict.kind == "likely" and _FROM_OUTSIDE in verdict.cause:
        hop = _next_hop(ctx, service, evs, depth)
        return hop or _outside(ctx, service, evs, verdict) or verdict
    return verdict




def _outside(ctx: "Investigator", service: str, evs: List[Event], at: Verdict) -> Optional[Verdict]:
    """The failing call out names its peer (a client's `name`/`peer`/... field) and no connected service is
    that peer: the cause is outside our services; the proof is what our boundary function saw."""
    # the client making the call names its peer: `self` of the boundary frame, nothing else
    peer = peer_of(ctx, [plain((e["frames"][-1].get("locals") or {}).get("self")) for e in evs[:5]])
    if peer is None or at.predicate is None:
        return None
    return outside(ctx, peer, service, at.locus, f"answers the calls of {service} with {at.predicate.describe()}; "
                   f"our code passes the failure on", at.predicate, at.evidence,
                   [plain(v) for e in evs[:3] for v in (e["frames"][-1].get("locals") or {}).values()])


def _next_hop(ctx: "Investigator", service: str, evs: List[Event], depth: int) -> Optional[Verdict]:
    """The connected service that serves a path named by a URL in the failing frames' locals."""
    if depth >= 3:
        return None
    paths = paths_in([plain(node) for e in evs[:5] for frame in reversed(e["frames"])
                      for node in (frame.get("locals") or {}).values()])
    hop = ctx.serving(service, paths, "the failing call")
    return errors(ctx, hop[0], hop[1], depth + 1) if hop else None


def _origin(ctx: "Investigator", service: str, file: str, function: str, line: int,
            evs: List[Event]) -> Optional[Verdict]:
    """From the raise site (`evs`: the exception events that end there) to where the bad value is made."""
    frames = evs[0]["frames"]
    src = ctx.text(service, file)
    fn = next((f for f in functions(src) if f.qualname == function), None)
    if fn is None:  # a lambda or a comprehension, or a bare method name from Python < 3.11
        ctx.progress(f"{function}: not a function of {file} the investigator can read")
        return None
    guards = [r for r in raises(src, function) if r[0] == line and r[2]]
    if not guards:
        return _failed_operation(ctx, service, file, function, line, evs, src, fn)
    _, _, guard, gline = guards[0]
    names = names_in(guard)
    feeds = _feeds(src, function, names)
    capture = [o for o in operands(guard) if o not in feeds]  # `resp.status`, not only `resp`
    capture += [n for n in feeds if n in fn.params or assigned_from(src, function, n)]
    where = f"{file}:{gline}"
    bad = ctx.place(service, "snapshot", where, when=guard, capture=capture, rate=20)
    good = ctx.place(service, "snapshot", where, when=f"not ({guard})", capture=capture, rate=20)
    return _decide(ctx, service, file, fn, src, names, feeds, capture, ctx.events(bad, 3), ctx.events(good, 10),
                   frames)


def _feeds(src: str, function: str, names: List[str]) -> List[str]:
    """`names` and the names they are computed from in the function."""
    feeds = list(names)
    for n in names:
        for _, expr in assigned_from(src, function, n):
            feeds += [x for x in names_in(expr) if x not in feeds]
    return feeds


def _failed_operation(ctx: "Investigator", service: str, file: str, function: str, line: int,
                      evs: List[Event], src: str, fn: Any) -> Optional[Verdict]:
    """No `raise` guards it: an operation at `line` failed (a TypeError, a KeyError). The failing frames'
    locals are compared with healthy calls captured at the statement after it (reached only when the
    operation succeeded)."""
    after = next_line(src, function, line)
    stmt = src.splitlines()[line - 1].strip() if 0 < line <= len(src.splitlines()) else ""
    names = [n for n in names_in(stmt.rstrip(":").split("=", 1)[-1].strip())
             if n in fn.params or assigned_from(src, function, n)]
    if after is None or not names:
        ctx.progress(f"{function}: line {line} failed and nothing after it tells healthy calls apart")
        return None
    bad_ev = [{"evidence_id": e["evidence_id"], "locals": f.get("locals") or {}} for e in evs
              for f in e["frames"][-1:] if f.get("function") == function]
    good = ctx.place(service, "snapshot", f"{file}:{after}", rate=20)
    ctx.progress(f"{function}: comparing the locals of failing calls at line {line} with healthy ones")
    return _decide(ctx, service, file, fn, src, names, _feeds(src, function, names), names, bad_ev,
                   ctx.events(good, 10), evs[0]["frames"])


def _decide(ctx: "Investigator", service: str, file: str, fn: Any, src: str, names: List[str], feeds: List[str],
            capture: List[str], bad_ev: List[Event], good_ev: List[Event], frames: List[Event]) -> Optional[Verdict]:
    """What separates failing from healthy calls, and where it is made; see the module docstring."""
    function = fn.qualname
    likely: Optional[Verdict] = None
    for name in capture:
        bad_nodes = values_of(bad_ev, name)
        whole = not all(isinstance(n, dict) and "elements" in n for n in bad_nodes)  # a collection: its items first
        split = separate(bad_nodes, values_of(good_ev, name), nodes=True) if whole else None
        if split is None:
            found = _inside(ctx, service, file, fn, src, name, bad_ev, good_ev, frames)
            if found is not None and found.kind != "likely":
                return found
            likely = likely or found
            split = None if whole or found is not None else separate(bad_nodes, values_of(good_ev, name), nodes=True)
            if split is None:
                continue
        op, value = split
        pred = Predicate(capture=name, op=op, value=value)
        ids = [e["evidence_id"] for e in bad_ev if e.get("evidence_id")]
        ctx.progress(f"{function}: failing calls have {name} {op} {value!r}, healthy ones do not")
        likely = likely or Verdict("likely", service, f"{file}:{function}", f"{function} fails when {name} {op} "
                                   f"{value!r}", pred, evidence=ids)
        base = names_in(name)[:1] or [name]  # `resp.status` is made where `resp` is
        if base[0] in fn.params:
            if name != base[0] and not reads_into(name) and not separate(
                    values_of(bad_ev, base[0]), values_of(good_ev, base[0]), nodes=True):
                # arithmetic on healthy arguments (`n % 7`): this function's own rule decides
                return ctx.conclude("proven", service, f"{file}:{function}", f"{function} fails on its own rule: "
                                    f"{name} {op} {value!r} on failing calls", pred, ids) or likely
            found = from_caller(ctx, service, function, base[0], pred, frames) if base[0] == name else None
            if found is not None:
                return found
            continue
        made = [expr for _, expr in assigned_from(src, function, base[0])]
        if not made:
            continue
        if any(passes_through(e, fn.params) for e in made):  # bound from an argument: made by the caller
            likely = Verdict("likely", service, f"{file}:{function}", f"{function} fails when {name} {op} "
                             f"{value!r}; {base[0]} comes from its arguments", pred, evidence=ids)
            continue
        calls = called_in(src, function, made)
        impure = [c for c in calls if c.split(".")[-1] not in PURE_CALLS]
        if not impure and any(n in fn.params and separate(values_of(bad_ev, n), values_of(good_ev, n), nodes=True)
                              for n in feeds if n not in names and n not in base):
            continue  # computed here from a bad argument: the loop follows that argument next
        if impure:  # returned by a call: the function that returned it is where it is made
            found = probe_producers(ctx, service, file, impure, pred, function, name)
            if found is not None:
                return found
            return Verdict("likely", service, f"{file}:{function}", f"{name} {op} {value!r} {_FROM_OUTSIDE} "
                           f"{function} ({', '.join(impure[:2])})", pred, evidence=ids)
        if any(reads_state(e, local_names(src, function)) for e in made):  # read from an object, a table or a global: made elsewhere
            likely = Verdict("likely", service, f"{file}:{function}", f"{function} fails when {name} {op} "
                             f"{value!r}, read from {made[0][:60]}", pred, evidence=ids)
            continue
        return ctx.conclude("proven", service, f"{file}:{function}",
                            f"{function} computes {name} {op} {value!r} on failing calls", pred, ids) or likely
    return likely


def _inside(ctx: "Investigator", service: str, file: str, fn: Any, src: str, name: str, bad_ev: List[Event],
            good_ev: List[Event], frames: List[Event]) -> Optional[Verdict]:
    """`name` is a collection, and failing calls hold an item of a type healthy calls never hold (a text
    price in one row of `lines`): the collection is followed to where its items are made, and the claim
    about the item is tested where a function of ours returns one."""
    inner = separate_items(values_of(bad_ev, name), values_of(good_ev, name))
    if inner is None:
        return None
    op, value, pos = inner
    where = f"item {pos} of a row of {name}" if pos >= 0 else f"an item of {name}"
    ctx.progress(f"{fn.qualname}: failing calls hold {where} of type {value}, healthy ones never do")
    pred = Predicate(capture=name, op=op, value=value)  # said of the item; tested where one is returned
    ids = [e["evidence_id"] for e in bad_ev if e.get("evidence_id")]
    likely = Verdict("likely", service, f"{file}:{fn.qualname}", f"{fn.qualname} fails when {where} is a "
                     f"{value}", evidence=ids)
    effect = f"ends up as {where} and makes {fn.qualname} fail"
    if name in fn.params:
        return from_caller(ctx, service, fn.qualname, name, pred, frames, effect) or likely
    made = [expr for _, expr in assigned_from(src, fn.qualname, name)]
    calls = [c for c in called_in(src, fn.qualname, made) if c.split(".")[-1] not in PURE_CALLS]
    return (probe_producers(ctx, service, file, calls, pred, fn.qualname, name, effect) if calls else None) or likely


def from_caller(ctx: "Investigator", service: str, function: str, param: str, pred: Predicate,
                frames: List[Event], effect: str = "makes it fail") -> Optional[Verdict]:
    idx = next((i for i in range(len(frames) - 1, -1, -1) if frames[i].get("function") == function), None)
    if not idx:
        return None
    caller = frames[idx - 1]
    cfile, cfunc, cline = caller.get("file") or "", caller.get("function") or "", caller.get("line") or 0
    if not is_app_file(cfile):
        return None
    csrc = ctx.text(service, cfile)
    src = ctx.text(service, frames[idx].get("file") or "")
    params = next((f.params for f in functions(src) if f.qualname == function), ())
    arg = argument_for(csrc, cfunc, cline, function.split(".")[-1], params, param)
    if arg is None:
        ctx.progress(f"{cfunc}: cannot tell what it passes as {param} at line {cline}")
        return None
    made_by = [arg] + [expr for n in names_in(arg) for _, expr in assigned_from(csrc, cfunc, n)]
    producers = called_in(csrc, cfunc, made_by)
    ctx.progress(f"{cfunc} passes {arg} as {param}; made by {', '.join(producers) or 'nothing we can probe'}")
    return probe_producers(ctx, service, cfile, producers, pred, function, param, effect)


def probe_producers(ctx: "Investigator", service: str, near: str, producers: List[str], pred: Predicate,
                    function: str, name: str, effect: str = "makes it fail") -> Optional[Verdict]:
    """Probe every ``return`` of the functions of ours that made the value (a function has several: the
    bad value leaves by one of them); the claim is tested at each, with what that return captured."""
    for call in producers:
        target = ctx.resolve(service, call, near)
        if target is None:
            continue
        tfile, tfunc = target
        placed = [(expr, ctx.place(service, "snapshot", f"{tfile}:{rline}", capture=[expr], rate=20, light=True))
                  for rline, expr in returns(ctx.text(service, tfile), tfunc)[:4]]
        ctx.pause(min(ctx.wait_s, 10.0))
        for expr, alias in placed:
            got = [e for e in ctx.events(alias, 1, timeout=1.0) if (e.get("expressions") or {}).get(expr) is not None]
            claim = Predicate(capture=expr, op=pred.op, value=pred.value)
            if sum(1 for e in got if holds(claim, e)) >= 2:  # seen more than once, not a single odd call
                v = ctx.conclude("proven", service, f"{tfile}:{tfunc}",
                                 f"{tfunc} returns {expr} {pred.op} {pred.value!r}, which reaches {function} as "
                                 f"{name} and {effect}", claim, [e["evidence_id"] for e in got if holds(claim, e)])
                if v is not None:
                    return v
    return None
