"""A service of ours that is gone: its process does not answer, so its callers' calls are refused.

Two facts, from two sides, make the claim:

- its agent did not answer when the investigation connected (`Investigation.unreachable`): nothing
  of it can be probed, which is why the claim is a process (``payments process``), not a function;
- most failures a connected caller sees are connections that never got an answer (refused, reset,
  no route), from a client that names that service. A snapshot at the caller's ``except`` (or the
  exception probe's frame, when the failure is raised) captures the error's text after the incident
  began: that is the proof, at our boundary, as for an `outside` verdict.

A caller configured with another address than the one the environment's catalog gives the service
is not claimed: the refusals could be our own configuration's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from probebook.errors import ProbebookError
from probebook.evidence.predicate import Predicate
from probebook.protocol.capture_tree import plain

from ..model import Verdict
from ..wire import URL_HOST

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["down", "down_raised", "NO_ANSWER"]

# the words a socket, urllib, requests, httpx or aiohttp use for a connection that got no answer
NO_ANSWER = (r"(?i)(connection refused|refused the connection|connection reset|reset by peer|no route to host|"
             r"host is unreachable|network is unreachable|name or service not known|name resolution|"
             r"connect(ion)? timed out|cannot connect|remote end closed|connection aborted|econnrefused|econnreset|"
             r"errno (61|111|104|113))")
_NO_ANSWER = re.compile(NO_ANSWER)


def _gone(ctx: "Investigator", peer: Optional[str]) -> Optional[str]:
    """Why `peer`'s agent did not answer, when it is a service of ours the investigation could not reach."""
    if not peer or peer in ctx.services():
        return None
    return ctx.unreachable().get(peer)


def _other_address(ctx: "Investigator", peer: str, values: List[Any]) -> Optional[str]:
    """An address our caller uses for `peer` that is not the one the catalog gives it (None when the
    catalog does not know it, or every address seen is its own)."""
    try:
        known = ctx.tools.inv.telemetry.sources.catalog.get(peer)
    except ProbebookError:
        return None
    if not known:
        return None
    want = urlsplit(known).netloc
    seen = {urlsplit(u).netloc for u in URL_HOST.findall(" ".join(str(v) for v in values))}
    other = sorted(n for n in seen if n and n != want)
    return other[0] if other and want not in seen else None


def _text_field(errs: List[Any]) -> Tuple[str, int]:
    """The field of the caught errors that most often holds a no-answer text, and how often."""
    counts: Dict[str, int] = {}
    for e in errs:
        for k, v in (e.items() if isinstance(e, dict) else []):
            if isinstance(v, str) and _NO_ANSWER.search(v):
                counts[k] = counts.get(k, 0) + 1
    if not counts:
        return "", 0
    best = max(counts, key=lambda k: counts[k])
    return best, counts[best]


def _said(texts: List[Any]) -> str:
    """The words of the commonest no-answer text (``Connection refused``)."""
    found = [m.group(0) for m in (_NO_ANSWER.search(str(t)) for t in texts) if m]
    return max(set(found), key=found.count) if found else "no answer"


def _verdict(ctx: "Investigator", peer: str, why: str, service: str, locus: str, pred: Predicate,
             evidence: List[str], seen: int, of: int, said: str) -> Optional[Verdict]:
    ctx.progress(f"{service}: {seen} of {of} failed calls to {peer} got no answer ({said}), and {peer}'s agent "
                 f"does not answer either ({why[:100]})")
    v = Verdict("proven", peer, f"{peer} process", f"{peer}'s process is not answering: {seen} of {of} failed calls "
                f"from {service} to it got no answer ({said}), and its agent is unreachable too ({why[:100]})", pred,
                evidence=evidence, boundary_service=service, boundary_locus=locus,
                mitigation=f"start {peer} again (or fail over to a healthy instance); then find out why it stopped: "
                           f"its exit status, the OOM killer in the host's kernel log, its last log lines",
                check=f"{peer}'s agent answers again and the boundary probe in {service} no longer shows "
                      f"{pred.describe()}")
    checked = ctx.gate.check(v)
    ctx.progress(f"gate: {checked.kind} {peer} process: {'; '.join(checked.reasons)[:200]}")
    return checked if checked.kind == "proven" else None


def down(ctx: "Investigator", peer: Optional[str], service: str, file: str, fn: str, line: int, var: str,
         errs: List[Any], seen: List[Any]) -> Optional[Verdict]:
    """The caught errors `errs` (fields) at `file:line` name `peer`: is it a service of ours that is gone?"""
    why = _gone(ctx, peer)
    if why is None or peer is None:
        return None
    field, n = _text_field(errs)
    if not field or 2 * n <= len(errs):
        return None
    other = _other_address(ctx, peer, seen)
    if other:
        ctx.progress(f"{service}: its calls to {peer} go to {other}, not where the catalog has {peer}: the refusals "
                     f"may be our configuration's, not {peer}'s")
        return None
    expr = f"{var}.{field}"
    alias = ctx.place(service, "snapshot", f"{file}:{line}", capture=[expr], rate=20)
    got = [e for e in ctx.events(alias, 3) if (e.get("expressions") or {}).get(expr) is not None]
    return _verdict(ctx, peer, why, service, f"{file}:{fn}", Predicate(capture=expr, op="matches", value=NO_ANSWER),
                    [e["evidence_id"] for e in got], n, len(errs), _said([e.get(field) for e in errs
                                                                           if isinstance(e, dict)]))


def down_raised(ctx: "Investigator", peer: Optional[str], service: str, file: str, fn: str,
                evs: List[Dict[str, Any]]) -> Optional[Verdict]:
    """Exception events (`evs`, raised through `file:fn`, the client of ours that names `peer`) whose
    message says the connection got no answer: is `peer` a service of ours that is gone?"""
    why = _gone(ctx, peer)
    if why is None or peer is None:
        return None
    hits = [e for e in evs if _NO_ANSWER.search(str(plain(e.get("message")) or ""))]
    if 2 * len(hits) <= len(evs):
        return None
    seen = [plain(v) for e in evs[:3] for f in e.get("frames") or [] for v in (f.get("locals") or {}).values()]
    other = _other_address(ctx, peer, seen)
    if other:
        ctx.progress(f"{service}: its calls to {peer} go to {other}, not where the catalog has {peer}")
        return None
    return _verdict(ctx, peer, why, service, f"{file}:{fn}", Predicate(field="message", op="matches", value=NO_ANSWER),
                    [e["evidence_id"] for e in hits], len(hits), len(evs),
                    _said([plain(e.get("message")) for e in hits]))
