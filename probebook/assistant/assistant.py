"""`Assistant`: one call from an incident to a verdict, over an `Investigation`.

>>> from probebook.session import Investigation
>>> inv = Investigation()
>>> Assistant(inv).investigate("checkout 502s since 10:40").kind
'inconclusive'
>>> inv.close()
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, List, Optional

from probebook.errors import AssistantError, ProbebookError
from probebook.session import Investigation

from .containment import Approval, ContainmentResult, Proposal, Remediation, contain, propose
from .fixcheck import Fix, FixValidation, validate_fix
from .investigator import Investigator
from .journal import Journal
from .llm import LlmConfig, LlmPlanner
from .model import Alert, Incident, Verdict
from .proof import ProofGate
from .runbooks import RunbookResult, run_for_alerts
from .tools import ProbeBudget, ToolBox

__all__ = ["Assistant", "open_alerts"]


class Assistant:
    """The AI SRE bound to one investigation. `budget`: what it may place without asking."""

    def __init__(self, inv: Investigation, budget: Optional[ProbeBudget] = None) -> None:
        self.inv = inv
        self.budget = budget or ProbeBudget()
        self.journal = Journal(inv.store)

    def firing_alerts(self) -> List[Alert]:
        """Alerts open now, from the investigation's Alertmanager (none when it has no source)."""
        return open_alerts(self.inv)

    def investigate(self, text: str = "", alerts: Optional[List[Alert]] = None, title: str = "",
                    budget_s: float = 110.0, progress: Optional[Callable[[str], None]] = None,
                    wait_s: float = 20.0, stop: Optional[threading.Event] = None, planner: Optional[str] = None,
                    llm: Optional[LlmConfig] = None) -> Verdict:
        """Investigate from the reporter's `text` and the `alerts` (default: those firing now); the
        verdict has passed the proof gate and is journaled with every finding. `planner`:
        ``"deterministic"`` (the default) or ``"llm"`` (the default when `llm` is given; `llm` defaults
        to `LlmConfig.from_env()`)."""
        planner = planner or ("llm" if llm is not None else "deterministic")
        if planner not in ("deterministic", "llm"):
            raise AssistantError(f"planner {planner!r} unknown; use 'deterministic' or 'llm'")
        if planner == "llm":
            llm = (llm or LlmConfig.from_env()).validated()  # before the incident opens: a setup mistake
        if alerts is None:
            alerts = self.firing_alerts()
        title = title or (text.strip().splitlines()[0][:120] if text.strip() else
                          ", ".join(a.name for a in alerts) or "an incident")
        incident = self.journal.open_incident(Incident(title, text, list(alerts)))
        tools = ToolBox(self.inv, incident, self.journal, self.budget)
        gate = ProofGate(self.inv.store, incident.opened_at)
        if llm is not None and planner == "llm":
            verdict = LlmPlanner(llm, tools, gate, incident, budget_s, progress, wait_s, stop).run()
        else:
            verdict = Investigator(tools, gate, incident, budget_s, progress, wait_s, stop).run()
        for h in verdict.ranked:
            self.journal.hypothesis(incident, h)
        return self.journal.verdict(incident, verdict)

    def propose(self, verdict: Verdict, since: str = "6h") -> List[Proposal]:
        """The containment actions for `verdict` (`containment.propose`): nothing is changed."""
        return propose(self.inv, verdict, since)

    def contain(self, proposal: Proposal, remediation: Remediation, approve: Approval = None,
                verdict: Optional[Verdict] = None, **kw: Any) -> ContainmentResult:
        """Do `proposal` through `remediation` when `approve` is True (or a callable approving it), audited
        and on the timeline, then check the symptom of `verdict`'s incident (`containment.contain`)."""
        incident = self.journal.incident_of(verdict.id) if verdict is not None and verdict.id else None
        return contain(self.inv, proposal, remediation, approve, alerts=incident.alerts if incident else (),
                       verdict=verdict, **kw)

    def run_runbook(self, folder: str, alerts: Optional[List[Alert]] = None, **kw: Any) -> Optional[RunbookResult]:
        """Pick the runbook of `folder` that covers an alert open now (or one of `alerts`) and run it with
        that alert's name and labels; its decisions go on the timeline (`runbooks.run_for_alerts`)."""
        return run_for_alerts(self.inv, folder, self.firing_alerts() if alerts is None else alerts, **kw)

    def validate_fix(self, verdict: Verdict, fix: Fix, **kw: Any) -> FixValidation:
        """Replay the calls production made of each function `fix` changes, from the running code and from
        the fixed code, in a child process on fresh copies, and judge (`fixcheck.validate_fix`)."""
        return validate_fix(self.inv, verdict, fix, **kw)


def open_alerts(inv: Investigation) -> List[Alert]:
    """Alerts open now, from `inv`'s Alertmanager (none when it has no source)."""
    try:
        frame = inv.telemetry.alerts()
    except ProbebookError:
        return []
    out = []
    for row in frame.to_dicts():
        if row.get("status") == "resolved":
            continue
        labels = row.get("labels")
        labels = json.loads(labels) if isinstance(labels, str) else dict(labels or {})
        started = row.get("started")
        out.append(Alert(str(row.get("name")), {str(k): str(v) for k, v in labels.items()},
                         str(row.get("summary") or ""), started.timestamp() if hasattr(started, "timestamp")
                         else 0.0))
    return out
