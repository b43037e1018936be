"""Calls cut off by our own timeout: is the timeout too tight, or is the other side slow?

A caught error that says the call timed out names no status to blame. The function that catches it
holds the timeout it passed (a local or parameter whose name says ``timeout``). A duration probe on
that function measures how long the calls that were answered in time took. When the timeout is
below twice their median, ordinary answers are being cut off: the timeout is the fault, claimed at
that function with the captured timeout as the proof. When answers are far faster than the timeout,
the timeouts are the other side hanging, and nothing is claimed here.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any, List, Optional

from probebook.evidence.predicate import Predicate, holds

from ..codeview import local_names
from ..differential import captured

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator
    from ..model import Verdict

__all__ = ["timed_out", "too_tight"]

HEADROOM = 2.0  # a timeout under this many times the median answer cuts off ordinary answers


def timed_out(errs: List[Any]) -> bool:
    """Do the caught errors say the call timed out (a field ``timeout``/``timed out``, or a timeout type)?"""
    def says(v: Any) -> bool:
        if isinstance(v, str):
            return "timeout" in v.lower().replace(" ", "") or "timedout" in v.lower().replace(" ", "")
        if isinstance(v, dict):
            return any(says(x) for x in v.values())
        return False
    return bool(errs) and sum(1 for e in errs if says(e)) * 2 > len(errs)


def too_tight(ctx: "Investigator", service: str, file: str, fn: str, line: int) -> Optional["Verdict"]:
    """The timeout `fn` passes is under HEADROOM x the median time of its answered calls: proven at `fn`."""
    names = [n for n in local_names(ctx.text(service, file), fn) if "timeout" in n.lower()]
    if not names:
        ctx.progress(f"{fn}: its calls time out, and it names no timeout of its own")
        return None
    name = names[0]
    snap = ctx.place(service, "snapshot", f"{file}:{line}", capture=[name], rate=20)
    took = ctx.place(service, "metric", ctx.where(service, file, fn), metric="call_ms", rate=100)
    ctx.pause(min(ctx.wait_s, 10.0))
    cut = [e for e in ctx.events(snap, 3, timeout=1.0) if isinstance(captured(e, name), (int, float))]
    if len(cut) < 3:
        return None
    limit = float(captured(cut[0], name))
    durations = [float(e["value"]) / 1000.0 for e in ctx.events(took, 20, timeout=1.0)  # ms -> s
                 if isinstance(e.get("value"), (int, float)) and not e.get("error")]
    answered = [d for d in durations if d < 0.9 * limit]
    if len(answered) < 10 or limit <= 0:
        ctx.progress(f"{fn}: {len(answered)} calls answered in time while watched: too few to judge its timeout")
        return None
    median = statistics.median(answered)
    ctx.progress(f"{fn}: timeout {name}={limit:g}s; answered calls take {median:.3f}s median "
                 f"({len(answered)} of {len(durations)} in time)")
    if limit >= HEADROOM * median:
        ctx.progress(f"{fn}: the timeout leaves room for ordinary answers: the other side hangs, not our limit")
        return None
    bound = round(HEADROOM * median, 4)
    pred = Predicate(capture=name, op="<", value=bound)
    ids = [e["evidence_id"] for e in cut if holds(pred, e)]
    return ctx.conclude("proven", service, f"{file}:{fn}",
                        f"{fn} gives its call {name}={limit:g}s, under {HEADROOM:g}x the {median:.3f}s median of the "
                        f"answers that arrive in time: ordinary answers are cut off and fail as timeouts",
                        pred, ids)
