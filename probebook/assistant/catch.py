"""Catching a cause in the act once containment frees what the fault holds (issue 12, with the gate of #11).

Some faults keep their own cause from running again: a pool drained by a leak stops every caller at the
take, so the leaking path cannot run while the pool is full, and the investigation can only answer
`likely` (the pool full where callers take from it, the leak path read in the source). The verdict then
carries `after_restart`: the probe that would catch the cause (the leaking line, capturing how full the
pool is). When an approved containment restarts that service, `start_catch` places that probe on the new
process at once, before the pool can fill again, and `Catch.finish` waits for the cause to run with its
predicate true (the leak that takes the last connection). What it captured goes through the same proof
gate; a verdict that passes is journaled as this investigation's `proven` answer, citing only evidence
captured after the restart, and put on the timeline. Nothing is claimed when the probe sees nothing.

>>> start_catch(None, None, None) is None  # nothing to catch without a `likely` verdict that says how
True
"""

from __future__ import annotations

import time
from typing import Any, Callable, List, Optional

from probebook.errors import ProbebookError, one_line
from probebook.evidence.predicate import holds
from probebook.session import Investigation

from .journal import Journal
from .model import Verdict
from .proof import ProofGate
from .tools import probe_events, remove_placed

__all__ = ["Catch", "start_catch"]


class Catch:
    """The probe placed after the restart, and the verdict it may prove (`finish`)."""

    def __init__(self, inv: Investigation, verdict: Verdict, rec: Any, deadline: float,
                 say: Callable[[str], None]) -> None:
        self.inv, self.verdict, self.rec, self.deadline, self.say = inv, verdict, rec, deadline, say

    def finish(self) -> Optional[Verdict]:
        """Wait (until the deadline `start_catch` set) for an event with the verdict's predicate true; then
        remove the probe and put what it caught through the gate: the proven verdict, journaled, or None."""
        pred = self.verdict.predicate
        caught: List[dict] = []
        events: List[dict] = []
        try:
            while True:  # its rate (20/s) and TTL bound the events: 5,000 holds them all
                events = probe_events(self.inv, self.rec, limit=5000)
                caught = [e for e in events if pred is not None and holds(pred, e)]
                if caught or time.monotonic() >= self.deadline:
                    break
                time.sleep(0.5)
        except ProbebookError as exc:  # the action was done: what went wrong here is said, never raised
            self.say(f"catch: the probe's events could not be read: {one_line(exc, 160)}")
            return None
        finally:
            remove_placed(self.inv, [self.rec])
        if not caught:
            self.say(f"catch: {len(events)} calls reached {self.verdict.after_restart['where']} after the restart, "
                     f"none with {pred.describe() if pred else 'the predicate'}: the verdict stays likely")
            self.inv.mark(f"catch after restart: nothing caught in {len(events)} calls; the verdict stays likely")
            return None
        cause = self.verdict.after_restart.get("cause") or self.verdict.cause
        proven = Verdict("proven", self.verdict.service, self.verdict.locus,
                         f"{cause} (caught after the restart: {len(caught)} of {len(events)} calls there)", pred,
                         self.verdict.mitigation, self.verdict.check, [e["evidence_id"] for e in caught[:10]])
        try:
            journal = Journal(self.inv.store)
            incident = journal.incident_of(self.verdict.id) if self.verdict.id else None
            checked = ProofGate(self.inv.store, incident.opened_at if incident else 0.0).check(proven)
            if checked.kind != "proven":
                self.say(f"catch: the gate did not let it stand: {'; '.join(checked.reasons)[:200]}")
                return None
            self.say(f"catch: {proven.headline()}")
            if incident is not None:  # the journal puts it on the timeline
                return journal.verdict(incident, proven)
            self.inv.mark(f"proven after the restart: {proven.headline()}")
            return proven
        except ProbebookError as exc:  # as above: said, never raised after the action
            self.say(f"catch: the verdict could not be checked or kept: {one_line(exc, 160)}")
            return None


def start_catch(inv: Optional[Investigation], verdict: Optional[Verdict], action: Any,
                timeout: float = 120.0, progress: Optional[Callable[[str], None]] = None) -> Optional[Catch]:
    """For a `likely` verdict with `after_restart` and an approved restart of its service: place the probe
    on the service now (it runs again) and answer the `Catch`; None when there is nothing to catch."""
    if inv is None or verdict is None or verdict.kind != "likely" or not verdict.after_restart or \
            verdict.predicate is None or getattr(action, "kind", "") != "restart" or action.service != verdict.service:
        return None
    say = progress or (lambda line: None)
    where = verdict.after_restart["where"]
    try:
        rec = inv.probe("snapshot", verdict.service, where, capture=verdict.after_restart.get("capture", ()),
                        rate=20, ttl=timeout + 60, partial=True)
    except ProbebookError as exc:
        say(f"catch: cannot place the probe at {where} after the restart: {one_line(exc, 160)}")
        return None
    say(f"catch: probe {rec.alias} at {where} waits up to {timeout:g}s for {verdict.predicate.describe()}")
    return Catch(inv, verdict, rec, time.monotonic() + timeout, say)
