"""The latency strategy: duration probes on a function and the functions of ours it calls, descending
into the callee that holds most of the time, until no callee of ours holds it.

When the function itself holds the time but calls out of our code (a client library, a socket), the
time may be another service's: the path literals of the functions descended through (the handler
calls its client with `"/search"`), then the URLs in its locals, name the path of the next hop, and
the connected service that serves it is measured the same way. Only a function whose own code holds the
time, with no call out left to blame, is claimed, or (a plain function, not a coroutine) one whose
thread is on the CPU for most of its time: the duration probe's CPU clock says it works, in its code or
in the library calls it makes, rather than waits for a peer, a lock or a disk.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Tuple

from probebook.errors import ProbebookError
from probebook.evidence.predicate import Predicate

from ..codeview import callees, literals, looped, waits
from ..differential import seen_values
from ..entrypoints import EntryPoint, paths_in, symptom_classes
from ..model import Verdict
from .locks import held_by

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["descend", "latency", "slowest_first", "timings", "Timing", "DOMINATES", "EXPLAINS", "WORKS"]

_MEASURED = 6  # callees timed at once (with the function itself, within the live-probe budget)
DOMINATES = 0.6  # a callee holding this share of its caller's time is where to look next
EXPLAINS = 0.5  # a function is claimed only when it holds at least this share of the slow request's time
SLOWEST_FAST_MS = 1.0  # a function whose calls take less than this at the median is never claimed
WORKS = 0.6  # a function whose thread is on the CPU this share of its time is working, not waiting
SHARED = 1.1  # a callee whose total time exceeds its caller's by this much is called from elsewhere too
SATURATES = 0.5  # a function whose calls keep its process's CPU busy this share of the time queues the rest


class Timing(NamedTuple):
    """What a duration probe saw of one function while it was measured."""

    median_ms: float  # a call, wall clock
    total_ms: float  # over the window
    evidence: List[str]
    cpu_share: float  # of its time, its thread was on the CPU (0 when no hit read the CPU clock)
    cpu_median_ms: float
    calls: int
    p90_ms: float = 0.0  # the slow tail, what a latency alert on p95 sees
    busy: float = 0.0  # of the window, the share of one CPU its calls kept busy, per instance

    def saturates(self) -> bool:
        """Its calls keep their process on the CPU most of the time: under a GIL every other request
        of that process waits for them, before and inside its handler."""
        return self.busy >= SATURATES

    def claim(self, cpu: bool = False) -> Predicate:
        """Its calls take at least half the median seen (of wall time, or with `cpu` of CPU time)."""
        return Predicate(field="cpu_ms" if cpu else "value", op=">=",
                         value=round((self.cpu_median_ms if cpu else self.median_ms) / 2, 3), agg="median",
                         min_events=3)


def timings(ctx: "Investigator", probes: Dict[Tuple[str, str], Optional[str]],
            window_s: float = 0.0) -> Dict[Tuple[str, str], Timing]:
    """Per function, what its duration probe saw (3 calls at least) over `window_s` seconds; the probes go.
    A probe's rate limit keeps some calls out of its events: totals, counts and CPU busy are scaled up by
    the calls it made (the agent's counts) over the calls seen, so a busy callee is not understated."""
    out = {}
    made = _calls_made(ctx, [a for a in probes.values() if a])
    for key, alias in probes.items():
        evs = ctx.tools.events_of(alias, limit=2000) if alias else []
        evs = [e for e in evs if isinstance(e.get("value"), (int, float))]
        vals = [e["value"] for e in evs]
        timed = [e for e in evs if isinstance(e.get("cpu_ms"), (int, float))]  # hits whose CPU clock was read
        cpu, wall = [e["cpu_ms"] for e in timed], sum(e["value"] for e in timed)
        if len(vals) >= 3:
            scale = max(1.0, made.get(alias or "", 0) / len(vals))
            instances = len({e.get("instance_id") for e in evs}) or 1
            out[key] = Timing(statistics.median(vals), scale * sum(vals), [e["evidence_id"] for e in evs][:200],
                              sum(cpu) / wall if wall > 0 else 0.0, statistics.median(cpu) if cpu else 0.0,
                              round(scale * len(vals)), sorted(vals)[int(0.9 * (len(vals) - 1))],
                              scale * sum(cpu) / (1000 * window_s * instances) if window_s > 0 else 0.0)
        if alias:
            ctx.call("remove_probe", probe=alias)
    if out:
        ctx.progress("latency: timed " + "; ".join(
            f"{k[1]} {v.calls} calls, median {v.median_ms:.1f} ms, p90 {v.p90_ms:.1f} ms, total {v.total_ms:.0f} ms"
            for k, v in out.items()))
    return out


def _calls_made(ctx: "Investigator", aliases: List[str]) -> Dict[str, int]:
    """Per probe, the calls it timed or left out by its rate limit (the agents' counts); {} when unknown."""
    try:
        frame = ctx.tools.inv.probes()
    except ProbebookError:  # the counts only refine the totals; without them the events stand
        return {}
    if "emitted" not in frame.columns:
        return {}
    return {r["alias"]: int(r["emitted"] or 0) + int(r["rate_limited"] or 0) for r in frame.to_dicts()
            if r["alias"] in aliases}


def slowest_first(ctx: "Investigator", service: str, eps: List[EntryPoint],
                  cpu_only: bool = False) -> List[EntryPoint]:
    """Several slow routes of one service: their handlers timed together, for half the usual window,
    and descended into slowest first by their 90th percentile (a latency alert fires on the tail, and
    the route nearest the cause is usually the slowest; the others are still tried while time is left).
    A handler that ran fewer than 3 times goes last, in the order found."""
    fns = list(dict.fromkeys((ep.file, ep.function) for ep in eps))
    if len(fns) < 2 or ctx.out_of_time():
        return eps
    placed = time.monotonic()
    probes = {fn: ctx.place(service, "metric", ctx.where(service, *fn), metric="route_ms", rate=50) for fn in fns}
    ctx.pause(ctx.wait_s / 2)
    timing = timings(ctx, probes, time.monotonic() - placed)
    # a handler whose calls keep the process on the CPU first: under a GIL every other route waits for it
    # (`cpu_only`: the others keep the order given)
    order = sorted(fns, key=lambda fn: (not (fn in timing and timing[fn].saturates() and ctx.is_plain(service, *fn)),
                                        fns.index(fn) if cpu_only else -(timing[fn].p90_ms if fn in timing else -1.0)))
    ctx.progress("latency: routes by p90 time " + ", ".join(
        f"{fn[1]} {timing[fn].p90_ms:.1f} ms (CPU busy {100 * timing[fn].busy:.0f}%)" if fn in timing
        else f"{fn[1]} (too few calls)" for fn in order))
    return sorted(eps, key=lambda ep: order.index((ep.file, ep.function)))


def latency(ctx: "Investigator", service: str, entry: EntryPoint, depth: int = 0,
            share: float = 1.0, caller_ms: Optional[float] = None) -> Optional[Verdict]:
    """`share`: the part of the slow request's time that `entry` holds (1.0 where the slowness was seen);
    a function is claimed only when it holds at least `EXPLAINS` of it (a fast one explains nothing)."""
    current, chain = entry, [entry]  # the functions descended through, from the entry
    for _ in range(5):
        if ctx.out_of_time():
            return None
        src = ctx.text(service, current.file)
        calls = callees(src, current.function)
        # each called name resolved once, in the order they are called
        target = {n: ctx.resolve(service, n, current.file) for n in dict.fromkeys(c.name for c in calls)}
        resolved = list(dict.fromkeys(t for t in target.values() if t))
        # a generator (a @contextmanager's function) spans the caller's own block: never timed as a callee
        resolved = [t for t in resolved if not getattr(ctx.info(service, *t), "is_generator", False)]
        kids = resolved[:_MEASURED]
        outside = ctx.calls_out(service, current.file, current.function)
        placed = time.monotonic()
        probes = {(current.file, current.function): ctx.place(
            service, "metric", ctx.where(service, current.file, current.function), metric="entry_ms", rate=50)}
        for kfile, kfunc in kids:
            probes[(kfile, kfunc)] = ctx.place(service, "metric", ctx.where(service, kfile, kfunc),
                                               metric="callee_ms", rate=50)
        ctx.pause(ctx.wait_s)
        timing = timings(ctx, probes, time.monotonic() - placed)
        top = timing.get((current.file, current.function))
        if top is None:
            ctx.progress(f"latency: {current.function} ran fewer than 3 times while measured")
            return None
        if caller_ms:  # another service's entry: how much of the caller's wait it explains
            share *= min(1.0, top.median_ms / caller_ms)
            caller_ms = None
            if share < EXPLAINS and _own_alerts(ctx, service):
                # its own latency alert fires: requests wait in it before its handler runs (a queue),
                # so its handler's share of the caller's wait understates it; it is measured on its own
                ctx.progress(f"latency: {current.function} holds {100 * share:.0f}% of the slow request's time, "
                             f"but {service}'s own latency alert fires: descending into it as its own")
                share = 1.0
            elif share < EXPLAINS and top.saturates() and ctx.is_plain(service, current.file, current.function):
                # its calls keep the process on the CPU: every request waits for them, most of it before
                # its own handler runs, so the share of the handler's own time understates it
                ctx.progress(f"latency: {current.function} holds {100 * share:.0f}% of the slow request's time "
                             f"(median {top.median_ms:.1f} ms, p90 {top.p90_ms:.1f} ms), but its calls keep "
                             f"{service} on the CPU {100 * top.busy:.0f}% of the time: requests queue behind them; "
                             f"descending into it as its own")
                share = 1.0
        if share < EXPLAINS:
            ctx.progress(f"latency: {current.function} holds {100 * share:.0f}% of the slow request's time "
                         f"(median {top.median_ms:.1f} ms, p90 {top.p90_ms:.1f} ms, CPU busy {100 * top.busy:.0f}%), "
                         f"too little to explain it")
            return None
        # a callee's share is its total time over the parent's: a call made twice a request counts twice.
        # One whose total exceeds the parent's is called from elsewhere too: followed only when its typical
        # call fits in this function's slow calls (else its time is other callers'), and never unseen
        shared = [k for k, v in timing.items() if k != (current.file, current.function)
                  and v.total_ms > SHARED * top.total_ms and v.median_ms > max(top.p90_ms, top.median_ms)]
        for k in shared:
            ctx.progress(f"latency: {k[1]} is called from elsewhere too (its calls take {timing[k].median_ms:.1f} ms "
                         f"at the median, longer than {current.function}'s slow calls): not followed from here")
        # a shared callee called outside a loop is held to what this function's calls can have spent in it:
        # its typical call at each of the call sites, per call of this function (its total is other callers' too)
        sites = {k: [c.line for c in calls if target[c.name] == k] for k in timing}
        in_loop = looped(src, current.function)

        def held(k: Tuple[str, str]) -> float:
            v = timing[k]
            if v.total_ms <= SHARED * top.total_ms or not sites[k] or set(sites[k]) & in_loop:
                return v.total_ms
            return min(v.total_ms, v.median_ms * len(sites[k]) * top.calls)

        capped = [k for k in timing if k != (current.file, current.function) and k not in shared
                  and held(k) < timing[k].total_ms]
        for k in capped:
            ctx.progress(f"latency: {k[1]} is called from elsewhere too: of its {timing[k].total_ms:.0f} ms, "
                         f"{current.function}'s {top.calls} calls can hold {held(k):.0f} ms (its median at "
                         f"{len(sites[k])} call site(s) a call)")
        kid = max((k for k in timing if k != (current.file, current.function) and k not in shared), key=held,
                  default=None)
        shared += [k for k in capped if k not in shared]  # what a claim here cannot rule out
        if kid is not None and held(kid) >= DOMINATES * top.total_ms:
            (kfile, kfunc), spent = kid, held(kid)
            share *= min(1.0, spent / top.total_ms)
            ctx.progress(f"latency: {kfunc} holds {100 * spent / top.total_ms:.0f}% of {current.function}'s "
                         f"time (median {timing[kid].median_ms:.1f} ms a call); descending")
            current = EntryPoint(service, kfile, kfunc, 0, "holds the time")
            chain.append(current)
            continue
        into = held_by(ctx, service, current.file, current.function, top)
        if into is not None:  # it waits for a lock its other calls hold: what they do holding it is the cause
            ctx.progress(f"latency: {current.function} waits for a lock that its calls hold while in {into[1]}; "
                         f"descending")
            current = EntryPoint(service, into[0], into[1], 0, "fills the lock's holds")
            chain.append(current)
            continue
        # the claim: the function's calls take this long (the descent showed they hold the request's time)
        pred = top.claim()
        locus = f"{current.file}:{current.function}"
        if top.median_ms < SLOWEST_FAST_MS:  # a call this short explains no slow request, whatever the shares say
            return Verdict("likely", service, locus, f"{current.function} holds the time by the probes' shares, but "
                           f"a call takes {top.median_ms:.2f} ms at the median: too short to be the cause", pred,
                           evidence=top.evidence)
        blind = [f"{len(resolved) - len(kids)} of its calls were not measured"] if len(resolved) > len(kids) else []
        blind += [f"{k[1]} is shared with other callers" for k in shared]
        blind += waits(src, current.function)[:2]
        if blind and not outside:  # its time may be in what the probes did not see: not claimed
            return Verdict("likely", service, locus, f"{current.function} holds the time (median "
                           f"{top.median_ms:.1f} ms), but the probes cannot see all of it: {'; '.join(blind)}", pred,
                           evidence=top.evidence)
        if outside and ctx.is_plain(service, current.file, current.function) and top.cpu_share >= WORKS:
            # on the CPU, in its own thread, most of its time: the work itself (its code or the library
            # calls it makes, a regex, a query scan), not a wait for another service or a lock
            return ctx.conclude("proven", service, locus, f"{current.function} holds the time working, not waiting: "
                                f"its thread is on the CPU for {100 * top.cpu_share:.0f}% of it (median "
                                f"{top.cpu_median_ms:.1f} ms of {top.median_ms:.1f} ms a call), in its code or the "
                                f"calls it makes "
                                f"({', '.join(sorted({c.name for c in outside})[:3])})",
                                top.claim(cpu=True), top.evidence)
        if outside:  # the time may be another service's, or a wait on a lock or a disk: not claimed
            hop = _next_hop(ctx, service, chain, [c.line for c in outside], depth, share, top.median_ms)
            if hop is not None:
                return hop
            return Verdict("likely", service, locus, f"{current.function} holds the time (median "
                           f"{top.median_ms:.1f} ms) in its calls out of our code ({', '.join(sorted({c.name for c in outside})[:3])}): "
                           f"work there, or a wait for something else", pred, evidence=top.evidence)
        return ctx.conclude("proven", service, locus, f"{current.function}'s own code holds the time: median "
                            f"{top.median_ms:.1f} ms", pred, top.evidence)
    return None


def _next_hop(ctx: "Investigator", service: str, chain: List[EntryPoint], lines: List[int], depth: int,
              share: float, caller_ms: float) -> Optional[Verdict]:
    """The connected service that serves the path the slow call out goes to: first a path literal of the
    functions descended through, nearest first (`client.call("GET", "/search")` in the handler that
    called the client), then the URLs the slow function's locals hold at its calls out (a snapshot
    there sees every request's call, not only the slow route's)."""
    if depth >= 3:
        return None
    fn = chain[-1]
    values: List[object] = [v for f in reversed(chain) for v in literals(ctx.text(service, f.file), f.function)]
    for line in sorted(set(lines))[:2]:
        alias = ctx.place(service, "snapshot", f"{fn.file}:{line}", rate=20)
        for e in ctx.events(alias, 2, timeout=min(ctx.wait_s, 10.0)):
            values += seen_values([e])
    hop = ctx.serving(service, paths_in(values), f"{fn.function}'s call out")
    if hop is None:
        return None
    held = ctx.loop_held(*hop)  # an async service whose loop a plain call holds: requests wait before the handler
    if held is not None and held.kind != "likely":
        return held
    other, eps = hop
    # its own latency alert names where it is slow: a route it names whose calls keep the process on the
    # CPU goes ahead of the path's (every other route of it waits for that one); else the path's first
    named = [ep for ep in ctx.entries(other, [r for r in _own_alerts(ctx, other) if r]) if ep.receives]
    eps = list(dict.fromkeys(eps[:1] + named))
    if len(eps) > 1:
        eps = slowest_first(ctx, other, eps, cpu_only=True)
    # where the first dead-ends (a function that ran too few times to time), the next of its own alerts' routes
    return descend(ctx, other, eps[:2], depth + 1, share, caller_ms)


def descend(ctx: "Investigator", service: str, eps: List[EntryPoint], depth: int = 0, share: float = 1.0,
            caller_ms: Optional[float] = None) -> Optional[Verdict]:
    """`latency` from each of `eps` in turn while time is left: the first verdict that is not `likely` (a
    `likely` route does not hide the next one); else the first `likely`; else None."""
    found: Optional[Verdict] = None
    for ep in eps:
        verdict = latency(ctx, service, ep, depth, share, caller_ms)
        if verdict is not None and verdict.kind != "likely":
            return verdict
        found = found or verdict
        if ctx.out_of_time():
            break
    return found


def _own_alerts(ctx: "Investigator", service: str) -> List[str]:
    """The routes of the service's own latency alerts that fire ("" for one that names no route): those that
    opened the incident, and those open now (a queue in a callee makes its own alert fire after its
    caller's, which paged first)."""
    from ..assistant import open_alerts

    return [str(a.labels.get("route") or "") for a in list(ctx.incident.alerts) + open_alerts(ctx.tools.inv)
            if a.labels.get("service") == service and "latency" in symptom_classes(f"{a.name} {a.summary}")]
