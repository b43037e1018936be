"""Errors that are caught and answered, not raised: the handler turns a failure into an error response
(or logs it and carries on), so no exception leaves the entry function.

The ``except ... as err`` handlers of the entry functions and of the functions of ours they call are
watched with snapshot probes; the one that runs holds the caught error in its locals. From there:
a path in it names the next service of ours (followed), a peer field names a system that is none of
ours (`outside`, proven at our boundary function with what the peer answered), or the ``try`` body's
calls of ours are watched for the raise itself (the errors strategy again).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from probebook.errors import ProbebookError
from probebook.evidence.predicate import Predicate
from probebook.protocol.capture_tree import plain

from ..codeview import callees, handlers
from ..differential import seen_values
from ..entrypoints import EntryPoint, paths_in
from ..model import Verdict
from ..wire import URL_HOST
from .answered import answered
from .down import down
from .timeouts import timed_out, too_tight

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["caught", "outside", "peer_of", "PEER_FIELDS"]

PEER_FIELDS = ("name", "peer", "service", "target", "host")
_NAME = re.compile(r"^[A-Za-z][\w.:-]{0,80}$")  # a system's name or host, not a summary like "<urllib response>"
Site = Tuple[str, str, int, str, List[str]]


def _sites(ctx: "Investigator", service: str, eps: List[EntryPoint]) -> List[Site]:
    fns: List[Tuple[str, str]] = []
    for ep in eps:
        fns.append((ep.file, ep.function))
        for c in callees(ctx.text(service, ep.file), ep.function):
            target = ctx.resolve(service, c.name, ep.file)
            if target and target not in fns:
                fns.append(target)
    sites: List[Site] = []
    for file, fn in fns[:10]:
        sites += [(file, fn, line, var, tried) for line, var, tried in handlers(ctx.text(service, file), fn)]
    return sites[:6]


def caught(ctx: "Investigator", service: str, eps: List[EntryPoint], depth: int = 0) -> Optional[Verdict]:
    from .errors import errors  # the two strategies hand over to each other

    sites = _sites(ctx, service, eps)
    if not sites or depth > 3:
        return None
    fired = ctx.fired(service, sites)
    if not fired:
        ctx.progress(f"{service}: no error handler ran while watched")
        return None
    candidates = []
    for site, evs in fired:
        errs = [_fields((e.get("locals") or {}).get(site[3])) for e in evs]
        candidates.append((site, evs, errs, _ours(ctx, service, errs)))
    for (file, fn, line, var, _), evs, errs, _ in candidates:  # a service of ours that is gone
        gone = down(ctx, peer_of(ctx, errs), service, file, fn, line, var, errs, seen_values(evs[:3]))
        if gone is not None:
            return gone
    # a handler whose error names a service of ours says most; then one whose error names its peer (our
    # client's error, over the library's it was made from, caught as often one frame down); else the busiest
    (file, fn, line, var, tried), evs, errs, ours = next((c for c in candidates if c[3]), None) or next(
        (c for c in candidates if peer_of(ctx, c[2])), candidates[0])
    ctx.progress(f"{service}: {fn} catches {var} = {str(errs[0])[:120]} ({len(evs)} times)")
    if ours is not None:  # a service of ours answered the error: why it did
        found = answered(ctx, ours[0], ours[1], depth + 1)
        if found is not None:
            return found
    paths = paths_in(seen_values(evs[:5]))
    hop = ctx.serving(service, paths, "the failing call")
    found = errors(ctx, hop[0], hop[1], depth + 1) if hop else None
    if found is not None:
        return found
    if timed_out(errs):  # cut off by our own timeout: too tight, or the other side hanging?
        verdict = too_tight(ctx, service, file, fn, line)
        if verdict is not None:
            return verdict
    verdict = _outside(ctx, service, file, fn, line, var, errs, seen_values(evs[:3]))
    if verdict is not None:
        return verdict
    inner = [t for t in (ctx.resolve(service, name, file) for name in tried) if t]
    if inner:
        nxt = [EntryPoint(service, f, q, 0, f"called in the try of {fn}") for f, q in dict.fromkeys(inner)][:3]
        return errors(ctx, service, nxt, depth + 1)
    return None


def _ours(ctx: "Investigator", service: str, errs: List[Any]) -> Optional[Tuple[str, int]]:
    """The other connected service the caught errors name, and the error status it answered most."""
    named = {str(e[f]) for e in errs if isinstance(e, dict) for f in PEER_FIELDS if isinstance(e.get(f), str)}
    ours = [s for s in ctx.services() if s in named and s != service]
    statuses = [v for values in _statuses(errs).values() for v in values]
    if len(ours) != 1 or not statuses:
        return None
    failed = [v for v in statuses if v >= 500] or statuses  # a server error before a refusal (a decline)
    return ours[0], max(set(failed), key=failed.count)


def _statuses(errs: List[Any]) -> Dict[str, List[int]]:
    """The HTTP error statuses (400-599) in the caught errors' fields, by field name."""
    out: Dict[str, List[int]] = {}
    for e in errs:
        for k, v in (e.items() if isinstance(e, dict) else []):
            if isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 599:
                out.setdefault(k, []).append(v)
    return out


def _system_name(ctx: "Investigator", peer: str, values: List[Any]) -> str:
    """What the environment calls the outside system our client calls `peer`: the catalog's name for the
    URL the client holds (a URL next to the peer's name first, then any other), else `peer` itself."""
    near: List[str] = []
    other: List[str] = []

    def walk(v: Any, depth: int, close: bool) -> None:
        if depth > 6:
            return
        if isinstance(v, str):
            (near if close else other).extend(URL_HOST.findall(v))
        elif isinstance(v, dict):
            here = close or any(v.get(f) == peer for f in PEER_FIELDS)
            for x in v.values():
                walk(x, depth + 1, here and not isinstance(x, (dict, list)))
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x, depth + 1, False)

    for v in values:
        walk(v, 0, False)
    try:
        sources = ctx.tools.inv.telemetry.sources
    except ProbebookError:
        return peer
    ours = set(ctx.services())
    for urls in (near, other):
        names = {sources.system_at(u) for u in urls} - {None} - ours
        if len(names) == 1:
            return str(names.pop())
    return peer


def _fields(node: Any) -> Any:
    """A caught error as its fields (an exception's attributes: `peer`, `status` ...), else its plain value."""
    if isinstance(node, dict) and isinstance(node.get("fields"), dict):
        return {k: plain(v) for k, v in node["fields"].items()}
    return plain(node)


def peer_of(ctx: "Investigator", values: List[Any]) -> Optional[str]:
    """The one peer the `values` (a client's or a caught error's fields) name, when it is none of our
    connected services; None when they name none, several, or one of ours."""
    peers = list(dict.fromkeys(str(v[f]) for v in values if isinstance(v, dict) for f in PEER_FIELDS
                               if isinstance(v.get(f), str) and _NAME.match(v[f])))
    return peers[0] if len(peers) == 1 and peers[0] not in set(ctx.services()) else None


def outside(ctx: "Investigator", peer: str, service: str, boundary_locus: str, answers: str, pred: Predicate,
            evidence: List[str], seen: List[Any]) -> Optional[Verdict]:
    """The `outside` verdict for the system our client calls `peer` (named as the environment knows it,
    from the URLs among the values `seen` at the boundary), proven at our boundary function; `answers`
    says what it answers. None when the gate refuses it."""
    name = _system_name(ctx, peer, seen)
    called = f"{name} (called {peer!r} in {service}'s code)" if name != peer else peer
    ctx.progress(f"{service}: the failing call goes to {name}, which is none of our services")
    v = Verdict("outside", name, f"outside our services: {name}", f"{called} {answers}", pred, evidence=evidence,
                boundary_service=service, boundary_locus=boundary_locus,
                mitigation=f"nothing to fix in our code: contact the owner of {name}, or fail over to another",
                check=f"the boundary probe shows {pred.describe()} no longer")
    checked = ctx.gate.check(v)
    ctx.progress(f"gate: {checked.kind}: {'; '.join(checked.reasons)[:200]}")
    return checked if checked.kind == "outside" else None


def _outside(ctx: "Investigator", service: str, file: str, fn: str, line: int, var: str,
             errs: List[Any], seen: List[Any]) -> Optional[Verdict]:
    peer = peer_of(ctx, errs)
    if peer is None:
        return None
    statuses = _statuses(errs)
    if not statuses:
        return None
    field = max(statuses, key=lambda k: len(statuses[k]))
    if 2 * len(statuses[field]) <= len(errs):  # most caught errors are no answer at all (timeouts, refusals)
        ctx.progress(f"{service}: {peer} answered an error status to {len(statuses[field])} of {len(errs)} failed "
                     f"calls; the rest got no answer: not enough to blame it")
        return None
    if not any(v >= 500 for v in statuses[field]):  # a 4xx refuses what we sent (a card declined): no outage
        ctx.progress(f"{service}: {peer} refuses calls ({field} {sorted(set(statuses[field]))[:3]}) but fails none: "
                     f"a refusal is an answer, not an outage")
        return None
    floor = 500  # its failures, not its refusals
    expr = f"{var}.{field}"
    alias = ctx.place(service, "snapshot", f"{file}:{line}", capture=[expr], rate=20)
    got = [e for e in ctx.events(alias, 3) if (e.get("expressions") or {}).get(expr) is not None]
    return outside(ctx, peer, service, f"{file}:{fn}", f"answers {service}'s calls with errors ({field} "
                   f"{sorted(set(statuses[field]))[:3]}); {fn} catches them and passes the failure on",
                   Predicate(capture=expr, op=">=", value=floor), [e["evidence_id"] for e in got], seen)
