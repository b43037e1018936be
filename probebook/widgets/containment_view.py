"""The containment panel (`%contain`): each proposed action with why, what it should do and the evidence
it rests on, and an Approve and a Refuse button. Approve runs it (`containment.contain`, in a thread:
the symptom check takes a while), then shows what was done and whether the symptom went; Refuse records
the refusal. Nothing changes a service without the click (or `%contain ID --yes`).

>>> from probebook.assistant.containment import Action, Proposal
>>> p = Proposal(Action("rollback", "orders", to_version="2.7.1"), "undoes deploy", "alerts resolve", ["v1"], "proof", "p1")
>>> 'data-action="approve" data-alias="p1"' in proposals_html([p], {})
True
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from probebook.assistant.containment import ContainmentResult, Proposal

from .base import HtmlPanel
from .publisher import LiveView
from .render import badge, esc, panel

__all__ = ["ContainmentView", "proposals_html"]

_CLASS = {"contained": "pb-ok", "still": "pb-bad", "failed": "pb-bad"}


def proposals_html(proposals: Sequence[Proposal], state: Dict[str, Any]) -> str:
    """One row per proposal; its buttons while undecided, else its state or result."""
    rows = []
    for p in proposals:
        now = state.get(p.id)
        if now is None:
            act = (f'<button data-action="approve" data-alias="{esc(p.id)}">Approve</button> '
                   f'<button data-action="refuse" data-alias="{esc(p.id)}">Refuse</button>')
        elif isinstance(now, ContainmentResult):
            act = badge(now.outcome if now.decision == "approved" else "refused",
                        _CLASS.get(now.outcome, "pb-warn")) + f" {esc(now.headline())}"
        else:
            act = badge(str(now), "pb-warn")
        rests = ", ".join(esc(e) for e in p.rests_on[:6]) + (" ..." if len(p.rests_on) > 6 else "")
        rows.append(f'<tr data-proposal="{esc(p.id)}"><td>{esc(p.id)}</td><td><b>{esc(p.action.describe())}</b><br>'
                    f'{esc(p.why)}<br><i>expected:</i> {esc(p.expected)}<br><i>rests on ({esc(p.basis)}):</i> '
                    f'{rests}</td><td class="pb-act">{act}</td></tr>')
    return "<table class=\"pb-table pb-proposals\">" + "".join(rows) + "</table>"


class ContainmentView(HtmlPanel, LiveView):
    """`proposals` for one verdict; `decide(proposal, approved) -> ContainmentResult` does the work
    (run in a thread of its own per click)."""

    def __init__(self, title: str, proposals: List[Proposal], decide: Callable[[Proposal, bool], ContainmentResult],
                 poke: Optional[Callable[[], None]] = None, why_none: str = "") -> None:
        super().__init__()
        self.title, self.proposals, self._decide = title, proposals, decide
        self.why_none = why_none
        self.state: Dict[str, Any] = {}
        self.threads: List[threading.Thread] = []
        self._poke = poke or (lambda: None)
        self._drawn: Any = None
        self._lock = threading.Lock()
        self.on_action("approve", lambda _a, alias: self.click(alias, True))
        self.on_action("refuse", lambda _a, alias: self.click(alias, False))
        self.refresh()

    def click(self, pid: str, approved: bool) -> Optional[str]:
        """What a button sends: decide proposal `pid` once; answers a notice when it cannot."""
        proposal = next((p for p in self.proposals if p.id == pid), None)
        with self._lock:
            if proposal is None or pid in self.state:
                return f"{pid}: already decided" if proposal else f"no proposal {pid}"
            self.state[pid] = "running" if approved else "refusing"
        thread = threading.Thread(target=self._run, args=(proposal, approved), name=f"probebook-contain-{pid}",
                                  daemon=True)
        self.threads.append(thread)
        thread.start()
        self._poke()
        return None

    def _run(self, proposal: Proposal, approved: bool) -> None:
        try:
            result: Any = self._decide(proposal, approved)
        except Exception as exc:  # noqa: BLE001 - shown on the panel, never raised into the kernel
            result = f"error: {type(exc).__name__}: {exc}"[:300]
        self.state[proposal.id] = result
        self._poke()

    def wait(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        for t in list(self.threads):
            t.join(max(0.0, deadline - time.monotonic()))

    def compute(self, now: float) -> Optional[Dict[str, Any]]:
        signature = tuple((k, id(v)) for k, v in sorted(self.state.items()))
        if signature == self._drawn:
            return None
        self._drawn = signature
        done = bool(self.proposals) and all(isinstance(self.state.get(p.id), ContainmentResult)
                                            for p in self.proposals)
        body = proposals_html(self.proposals, self.state) if self.proposals else \
            f"<p>no action proposed: {esc(self.why_none)}</p>"
        return {"html": panel(self.title, body, "containment"), "final": done or not self.proposals}

    def refresh(self) -> None:
        changes = self.compute(time.time())
        if changes:
            self.apply(changes)

    def text(self) -> str:
        lines = [self.title] + [f"  {p.line()}: {_said(self.state.get(p.id))}" for p in self.proposals]
        return "\n".join(lines if self.proposals else lines + [f"  no action proposed: {self.why_none}"])


def _said(state: Any) -> str:
    if state is None:
        return "waiting for approval"
    return state.headline() if isinstance(state, ContainmentResult) else str(state)
