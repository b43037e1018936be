"""A blocked event loop: in an async service, a plain (not ``async``) function called from a coroutine
without ``await`` runs on the loop's own thread, and every other request of the service waits until
it returns. A few milliseconds there are a few milliseconds on every page.

The coroutines of the service are read from its running source; the plain functions of ours they
call are timed with duration probes (those that call out of our code first: a socket, a file, a
sleep); one whose calls take `BLOCKS_MS` or more at the median is claimed, proven by its own
durations, since by construction it ran on the loop's thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple


from ..codeview import callees
from ..model import Verdict
from .latency import timings

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["blocking", "BLOCKS_MS"]

BLOCKS_MS = 10.0  # a call this long at the median holds the whole service's loop that long, each time
_AT_ONCE = 6


def _plain_calls(ctx: "Investigator", service: str, near: List[str]) -> List[Tuple[str, str, bool]]:
    """(file, function, calls out of our code) of each plain function of ours a coroutine calls unawaited;
    those in the files `near` (the entry points') first, then those that call out of our code."""
    out: List[Tuple[str, str, bool]] = []
    for file in ctx.app_files(service):
        for f in ctx.parsed(service, file):  # an unreadable file parses to nothing
            if not f.is_async:
                continue
            for c in callees(ctx.text(service, file), f.qualname):
                target = None if c.awaited else ctx.resolve(service, c.name, file)
                if target is None or any(t[:2] == target for t in out):
                    continue
                info = ctx.info(service, *target)
                if info is None or info.is_async or info.is_generator:  # a generator's time spans its resumes
                    continue
                out.append((target[0], target[1], bool(ctx.calls_out(service, *target))))
    return sorted(out, key=lambda t: (t[0] not in near, not t[2]))


def blocking(ctx: "Investigator", service: str, near: List[str]) -> Optional[Verdict]:
    """The plain function that holds `service`'s event loop, proven by its durations; None if none does.
    `near`: the files of the incident's entry points, searched first."""
    cands = _plain_calls(ctx, service, near)
    if not cands:
        return None
    ctx.progress(f"{service}: async; timing {min(len(cands), 2 * _AT_ONCE)} plain functions its coroutines call "
                 f"on the loop's thread")
    for start in range(0, min(len(cands), 2 * _AT_ONCE), _AT_ONCE):
        batch = cands[start:start + _AT_ONCE]
        probes = {(file, fn): ctx.place(service, "metric", ctx.where(service, file, fn), metric="on_loop_ms", rate=50)
                  for file, fn, _ in batch}
        ctx.pause(min(ctx.wait_s, 10.0))
        timing = timings(ctx, probes)
        found = [(t, file, fn) for (file, fn), t in timing.items() if t.median_ms >= BLOCKS_MS]
        if not found:
            continue
        t, file, fn = max(found, key=lambda f: f[0].total_ms)
        return ctx.conclude("proven", service, f"{file}:{fn}",
                            f"{fn} is a plain function called from a coroutine: it runs on the event loop's thread "
                            f"and holds it {t.median_ms:.1f} ms a call (median of {t.calls}), while every other "
                            f"request of {service} waits", t.claim(), t.evidence)
    ctx.progress(f"{service}: no plain function its coroutines call takes {BLOCKS_MS:g} ms or more")
    return None
