"""Containment with approval (issue 12, part 1): from a verdict and the change log, the actions that
undo what changed on the guilty service (roll back its last deploy, restore a config value or a flag,
start a process that is gone, free space where the proof shows writes failing for the lack of it; a
change on another service only where its text names what the proof found or it set the setting the proof
names the same way, `changelog.linked` and `changelog.same_setting`), each with the effect expected and
the evidence it rests on. Nothing runs without an explicit approval; every proposal, approval, refusal
and outcome is a line of the hash-chained audit log and an entry on the investigation's timeline; after
an action the symptom is checked again (the alert's own PromQL, and the probe that proved the cause) and
the answer says whether containment worked.

Actions go through a `Remediation`: one object with ``name`` and ``apply(action, by) -> str``. The lab
has one (`probebook.lab.remediation.LabRemediation`); a deployment plugs its own (its deploy tool,
flag service, config store) by writing a class with those two members: the assistant never shells
out on its own.

>>> Action("rollback", "orders", to_version="2.7.1").describe()
'roll orders back to 2.7.1'
>>> Action("flag", "gateway", name="new_flow", value=False).describe()
'set flag new_flow to false'
>>> Action("free_space", "worker").describe()
"free space on worker's full volume"
>>> bool(NO_SPACE.search("OSError(28, 'No space left on device')"))
True
"""

from __future__ import annotations

import getpass
import importlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Union

from probebook.agent.control.audit import AuditLog, read_key
from probebook.errors import AssistantError, ProbebookError, one_line
from probebook.session import Investigation

from .changelog import (CLAIMS, boundary_source, changed, changes_elsewhere, clock, linked, names_key, same_setting,
                        services_of, undoable)
from .journal import Journal
from .model import Alert, Verdict, epoch_of, process_of
from .catch import start_catch
from .symptom import SymptomCheck, alerts_now, check_symptom
from .verify import anchor_lines

__all__ = ["Action", "Proposal", "Remediation", "ContainmentResult", "propose", "contain", "announce",
           "default_audit_path", "RemediationError", "why_no_proposal", "changes_elsewhere", "proposal_id", "load_remediation",
           "checked_remediation", "current_user"]

ACTIONS = ("rollback", "config", "flag", "restart", "free_space")
# what a write that failed for the lack of space says (ENOSPC, EDQUOT), in the proof's own words
NO_SPACE = re.compile(r"No space left on device|ENOSPC|\[Errno 28\]|Disk quota exceeded|EDQUOT")


class RemediationError(AssistantError):
    """An approved action could not be done; its words say what to do."""


@dataclass
class Action:
    """One change to a service. `rollback`: `to_version`; `config`: `values` (a key mapped to None is
    removed: back to the service's default); `flag`: `name` and `value`; `restart`: the service only;
    `free_space`: on the service's volume that is full (`name`: a path on it, where known)."""

    kind: str
    service: str
    to_version: str = ""
    values: Dict[str, Any] = field(default_factory=dict)
    name: str = ""
    value: Any = None

    def __post_init__(self) -> None:
        if self.kind not in ACTIONS:
            raise AssistantError(f"action {self.kind!r} unknown; use one of {', '.join(ACTIONS)}")

    def describe(self) -> str:
        if self.kind == "rollback":
            return f"roll {self.service} back to {self.to_version}"
        if self.kind == "config":
            return f"restore {self.service} config " + ", ".join(
                f"{k}={'(default)' if v is None else json.dumps(v)}" for k, v in sorted(self.values.items()))
        if self.kind == "flag":
            return f"set flag {self.name} to {'(default)' if self.value is None else json.dumps(self.value)}"
        if self.kind == "free_space":
            return f"free space on {self.service}'s full volume" + (f" ({self.name})" if self.name else "")
        return f"restart {self.service}"


class Remediation(Protocol):
    """What changes services on the assistant's behalf, after approval. `apply` does `action` and
    answers one line saying what was done, or raises `RemediationError` with what went wrong."""

    name: str

    def apply(self, action: Action, by: str) -> str: ...


def _refresh(remediation: Remediation, inv: Investigation, action: Action) -> str:
    """A remediation may also have ``refresh(inv, action)``: point the investigation at the processes
    the action started (a restart may move a service's agent). Answers what went wrong, or ""."""
    hook = getattr(remediation, "refresh", None)
    if hook is None:
        return ""
    try:
        hook(inv, action)
        return ""
    except ProbebookError as exc:
        return f"{action.service}: not reconnected after the action: {one_line(exc, 160)}"


@dataclass
class Proposal:
    """An action proposed for a verdict. `basis`: ``proof`` (the verdict passed the gate) or
    ``ranking`` (a `likely` verdict: the action rests on a hypothesis not proven)."""

    action: Action
    why: str
    expected: str
    rests_on: List[str]
    basis: str
    id: str = ""
    since: str = "6h"  # the change-log window it was proposed from (contain proposes again to see it is not stale)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return f"{self.id or '-'}: {self.action.describe()} ({self.why}; rests on {self.basis})"


@dataclass
class ContainmentResult:
    """`decision`: ``approved`` or ``refused``; `outcome`: ``contained``, ``still`` (the symptom
    holds after the action), ``partly`` (one alert went, another holds), ``inconclusive``, ``failed``
    (the action raised), ``stale`` (what it would undo changed since it was proposed: nothing done) or
    ``not run``."""

    proposal: Proposal
    decision: str
    outcome: str
    done: str = ""
    check: Optional[SymptomCheck] = None
    id: str = ""  # its row in assistant_actions
    caught: Optional[Verdict] = None  # the verdict proven after a restart freed what the fault held (`catch`)

    def headline(self) -> str:
        what = self.proposal.action.describe()
        if self.decision != "approved":
            return f"not done (refused): {what}"
        if self.outcome in ("failed", "stale"):
            return f"{self.outcome.upper()}: {what}: {self.done}"
        return f"{self.outcome.upper()}: {self.done}" + (f"; {self.check.summary()}" if self.check else "")

    def to_dict(self) -> Dict[str, Any]:
        return {"proposal": self.proposal.to_dict(), "decision": self.decision, "outcome": self.outcome,
                "done": self.done, "check": self.check.to_dict() if self.check else None,
                "headline": self.headline(), "caught": self.caught.to_dict() if self.caught else None}


def load_remediation(spec: str, inv: Investigation) -> Remediation:
    """The remediation ``MODULE:FACTORY`` names: ``FACTORY(inv)``, checked to be one (a one-line
    `AssistantError` when it cannot be loaded or is not)."""
    module, sep, factory = spec.partition(":")
    if not sep or not module or not factory:
        raise AssistantError(f"--remediation {spec!r}: write MODULE:FACTORY, e.g. ops.remediate:make")
    try:
        made = getattr(importlib.import_module(module), factory)(inv)
    except (ImportError, AttributeError) as exc:
        raise AssistantError(f"--remediation {spec}: {type(exc).__name__}: {one_line(exc, 200)}") from None
    return checked_remediation(made, spec)


def checked_remediation(value: Any, what: str) -> Remediation:
    """`value` when it is a `Remediation` (a `name` and an `apply`), else a one-line `AssistantError`."""
    if not callable(getattr(value, "apply", None)) or not getattr(value, "name", ""):
        raise AssistantError(f"--remediation {what}: not a Remediation (it needs .name and .apply(action, by))")
    return value


def current_user() -> str:
    """Who runs this process, for the audit's `who` (a container's uid may have no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def why_no_proposal(kind: str, elsewhere: Sequence[str] = ()) -> str:
    """What to tell the person when `propose` answered nothing for a verdict of `kind`; `elsewhere`: the
    lines `changes_elsewhere` gave, said as leads, not proposals."""
    if kind in CLAIMS or kind == "outside":
        return ("no change to undo was found on the services the verdict names (fix forward, or act by hand)"
                + ("; changed elsewhere before the fault was first seen, not linked to it: " + "; ".join(elsewhere)
                   if elsewhere else ""))
    return f"a {kind} verdict names no place to contain; investigate further before changing anything"


def default_audit_path(store_path: str, name: str = "actions-audit.log") -> str:
    """`name` beside the evidence file; with the evidence in memory, in the user's state folder
    ($XDG_STATE_HOME/probebook, else ~/.local/state/probebook), which outlives the process."""
    if store_path and store_path != ":memory:":
        return os.path.join(os.path.dirname(os.path.abspath(store_path)), name)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    folder = os.path.join(state, "probebook")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, name)


# ---------------------------------------------------------------------------------------------- propose
def propose(inv: Investigation, verdict: Verdict, since: str = "6h") -> List[Proposal]:
    """The actions that would undo what changed, within `since`, on the service `verdict` names (and
    the service of ours at its boundary), newest change first; a process that is gone is started again
    first. An `inconclusive` verdict names nothing to contain: no proposal (say so to the person, with
    `why_no_proposal`; `changes_elsewhere` lists what changed on other services before the fault)."""
    if verdict.kind not in CLAIMS and not (verdict.kind == "outside" and verdict.boundary_service):
        return []
    basis = "proof" if verdict.kind == "proven" else "ranking"
    services = services_of(verdict)
    rests = ([verdict.id] if verdict.id else []) + list(verdict.evidence)
    symptom = "the alerts that opened the incident resolve"
    if verdict.predicate is not None:
        symptom += f" and the probe at {verdict.locus} no longer sees {verdict.predicate.describe()}"
    out: List[Proposal] = []
    gone = process_of(verdict.locus)
    if gone and gone in services:
        out.append(Proposal(Action("restart", gone), f"{verdict.locus}: the process is not serving",
                            symptom, rests, basis))
    elif verdict.predicate is not None and verdict.kind in CLAIMS and verdict.service and \
            NO_SPACE.search(f"{verdict.predicate.value} {verdict.cause}"):
        out.append(Proposal(Action("free_space", verdict.service), f"the proof shows writes at {verdict.locus} "
                            f"failing for the lack of space ({verdict.predicate.describe()})", symptom, rests, basis))
    elif verdict.after_restart and verdict.service:  # frees what the fault holds; the cause is caught after it
        out.append(Proposal(Action("restart", verdict.service), f"frees what the fault holds in "
                            f"{verdict.service} (the cause cannot run again while it is held); a probe at "
                            f"{verdict.after_restart['where']} then catches the cause in the act",
                            symptom, rests, basis))
    sources = inv.telemetry.sources
    if out and not (sources.git_repo or sources.change_logs):  # what rests on no change log is still proposed
        first, last = {}, {}
    else:  # with none proposed yet, no change source is said (one line): never taken for "nothing changed"
        first, last = changed(inv, since)
    own = any(key[1] in services and undoable(key, row, before, after, first)
              for key, (row, before, after) in last.items())
    # with nothing to undo on the verdict's services: a change elsewhere that names what the proof found
    upstream = linked(inv, verdict, (first, last)) if last and not own else {}
    upstream.update(same_setting(inv, verdict, (first, last)) if last else {})  # the same fault set elsewhere
    reads = boundary_source(inv, verdict) if last else None  # outside: the code of ours that calls it
    by_change: Dict[str, List[tuple]] = {}
    for key, (row, before, after) in last.items():
        if key[0] == "config" and key[1] == verdict.boundary_service and not names_key(reads, key[2]):
            continue  # a setting the code calling the outside system never reads
        if (key[1] in services or str(row.get("evidence_id")) in upstream) and undoable(key, row, before, after, first):
            by_change.setdefault(str(row.get("evidence_id")), []).append((key, row, before))
    for eid, keys in sorted(by_change.items(), key=lambda kv: (kv[0] in upstream, -epoch_of(kv[1][0][1].get("ts")))):
        row = keys[0][1]
        kind, service = keys[0][0][0], keys[0][0][1]
        why = f"undoes {row.get('kind')} at {clock(row.get('ts'))}: {row.get('summary')}"
        if eid in upstream:
            why += f" (on {service}, not {verdict.service}: {upstream[eid]})"
        if kind == "release":
            action = Action("rollback", service, to_version=str(keys[0][2]))
            if first[keys[0][0]] not in (None, keys[0][2]):  # more than one deploy in the window
                why += f" (the release before; {first[keys[0][0]]} ran before the window)"
        elif kind == "flag":
            action = Action("flag", service, name=keys[0][0][2], value=first[keys[0][0]])
        else:
            action = Action("config", service, values={k[2]: first[k] for k, _, _ in keys})
        out.append(Proposal(action, why, symptom, rests + [eid], "ranking" if eid in upstream else basis))
    for p in out:
        p.id, p.since = proposal_id(p.action), since
    return out


def proposal_id(action: Action) -> str:
    """A proposal's id from what it does, so it names the same action however the list changes
    (``rollback-orders-2.7.1``, ``config-payments-timeout``, ``flag-new_flow``, ``restart-payments``)."""
    if action.kind == "rollback":
        parts = [action.service, action.to_version]
    elif action.kind == "config":
        parts = [action.service, *sorted(action.values)]
    elif action.kind == "flag":
        parts = [action.name]
    else:
        parts = [action.service]
    return "-".join([action.kind] + [re.sub(r"[^\w.]+", "_", str(p)) for p in parts])


# ---------------------------------------------------------------------------------------------- contain
Approval = Union[bool, None, Callable[[Proposal], bool]]


def announce(inv: Investigation, proposals: Sequence[Proposal], audit: Union[str, AuditLog, None] = None,
             who: str = "assistant") -> None:
    """Put `proposals` on the audit log and the timeline as proposed, nothing decided (a listing)."""
    log = _log(inv, audit)
    for p in proposals:
        if not _written(log, inv, who, "proposed", p.action.service, _proposed(p), p.id):
            raise AssistantError(f"containment: the audit log {log.path} cannot be written")


def _written(log: AuditLog, inv: Investigation, who: str, step: str, target: str, text: str, ref: str) -> bool:
    """One containment step: its audit line, then (only once that is written) its timeline entry."""
    if log.append(who, f"containment.{step}", target, text) is None:
        return False
    inv.store.add_timeline(f"containment {step}: {text}", source="assistant", ref=ref or None)
    return True


def _log(inv: Investigation, audit: Union[str, AuditLog, None]) -> AuditLog:
    """The audit log at `audit` (default beside the evidence file), keyed (HMAC) like the agents' when
    PROBEBOOK_AUDIT_KEY_FILE names a key."""
    if isinstance(audit, AuditLog):
        return audit
    key_file = os.environ.get("PROBEBOOK_AUDIT_KEY_FILE")
    try:
        key = read_key(key_file) if key_file else None
    except (OSError, ValueError, ProbebookError) as exc:
        raise AssistantError(f"PROBEBOOK_AUDIT_KEY_FILE: {one_line(exc, 200)}") from None
    return AuditLog(audit or default_audit_path(inv.store.path), key=key)


def _proposed(p: Proposal) -> str:
    return f"{p.id} {p.action.describe()} ({p.why}; rests on {p.basis}: {', '.join(p.rests_on[:6])})"


def contain(inv: Investigation, proposal: Proposal, remediation: Optional[Remediation], approve: Approval = None,
            alerts: Sequence[Alert] = (), verdict: Optional[Verdict] = None,
            audit: Union[str, AuditLog, None] = None, who: str = "assistant", check_timeout: float = 120.0,
            calls: int = 20, progress: Optional[Callable[[str], None]] = None) -> ContainmentResult:
    """Do `proposal` through `remediation` only when `approve` is True (or a callable answering True
    for it) and, with `verdict`, only while it is still proposed (else ``stale``: what it undoes changed
    since); then check the symptom: the `alerts`' PromQL (asked once before the action too) until it no
    longer matches them, and, for a verdict with a predicate, its probes placed again (`verify_fix`).
    Every step is audited in `audit` (a path or an `AuditLog`; default beside the evidence file) before
    it is taken, put on the timeline, and the decision kept as a row of `assistant_actions`."""
    say = progress or (lambda line: None)
    journal = Journal(inv.store)
    vid = verdict.id if verdict is not None else ""
    log = _log(inv, audit)
    what = proposal.action.describe()
    target = f"{getattr(remediation, 'name', 'none')}:{proposal.action.service}"
    acted = [False]

    def record(step: str, text: str) -> None:
        # the audit first: an action that cannot be written down does not run
        if not _written(log, inv, who, step, target, text, proposal.id):
            done = "the action WAS done; " if acted[0] else "nothing was done; "
            raise AssistantError(f"containment: the audit log {log.path} cannot be written ({step}): {done}"
                                 f"fix the log and read the service's state")

    result = ContainmentResult(proposal, "refused", "not run")
    proposed = False
    try:
        record("proposed", _proposed(proposal))
        proposed = True
        decided = approve(proposal) if callable(approve) else approve
        if decided is not True or remediation is None:
            why = "not approved" if decided is not True else "approved, but nothing here can change services"
            record("refused", f"{what}: {why}")
            say(f"containment: {what}: {why}; nothing was changed")
            result.done = why
            return result
        result.decision = "approved"
        record("approved", what)
        if verdict is not None and proposal.id not in {p.id for p in propose(inv, verdict, proposal.since)}:
            result.outcome, result.done = "stale", "no longer proposed: what it undoes changed since; nothing done"
            record("stale", f"{what}: {result.done}")
            return result
        # the proof's lines as the service runs them now (the release after the action may move them), and
        # whether each alert's query holds before the action (its going is credited to the action only then)
        anchors = anchor_lines(inv, verdict) if verdict is not None and verdict.predicate is not None else {}
        before = alerts_now(inv, alerts)
        try:
            acted[0] = True  # from here the service may have changed, whatever happens next
            result.done = remediation.apply(proposal.action, by=who)
        except Exception as exc:  # noqa: BLE001 - a remediation of anyone's: its failure is the outcome, said
            result.outcome, result.done = "failed", f"{type(exc).__name__}: {one_line(exc, 300)}"
            record("failed", f"{what}: {result.done}")
            say(f"containment failed: {result.done}")
            return result
        record("done", result.done)
        say(f"containment: {result.done}; checking the symptom")
        stale = _refresh(remediation, inv, proposal.action)
        catching = start_catch(inv, verdict, proposal.action, timeout=check_timeout, progress=say)
        try:
            check = check_symptom(inv, alerts, verdict, timeout=check_timeout, calls=calls, progress=say,
                                  anchors=anchors, before=before)
            if stale:
                check.notes.insert(0, stale)
            result.outcome, result.check = check.outcome, check
            record("checked", check.summary())
        finally:  # its probe is removed whatever the check did
            result.caught = catching.finish() if catching is not None else None
        return result
    finally:
        if proposed:
            _kept(journal, vid, result)


def _kept(journal: Journal, verdict: str, result: ContainmentResult) -> ContainmentResult:
    """The decision as a row of `assistant_actions` (also when a later step raised: the row says how far it got)."""
    result.id = journal.action(verdict, result.proposal.action.kind, result.proposal.action.service,
                               result.decision, result.outcome, result.to_dict())
    return result
