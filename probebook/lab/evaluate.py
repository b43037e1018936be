"""`probebook lab eval`: the assistant scored blind against the scenarios' ground truth.

For each scenario: wait until the lab is quiet, inject, wait for the symptom, then run the assistant
with only what an on-call engineer gets: the alerts firing (from Alertmanager), the scenario's title
and summary as the reporter's text, and the tools over the lab's services and telemetry. It never
sees the scenario id, its inject steps or its ground truth. Then recover.

Scores, worst first: ``confident-wrong`` (a `proven`/`outside`/`no-fault` verdict that is wrong),
``wrong`` (an unproven answer naming the wrong place), ``abstained`` (`inconclusive`),
``unproven-correct`` (right service and locus, gate not passed), ``proven-correct``.

>>> from probebook.assistant.model import Verdict
>>> truth = _Truth("proven", "accounts", "app/quota.py:Quota.left")
>>> score(truth, Verdict("proven", "accounts", "/srv/r/1.2/app/quota.py:Quota.left"))
'proven-correct'
>>> score(truth, Verdict("proven", "accounts", "/srv/app/limits.py:check"))
'confident-wrong'
>>> score(_Truth("no-fault", "", ""), Verdict("inconclusive"))
'abstained'
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Sequence

from probebook.assistant import Assistant
from probebook.assistant.model import Verdict, parse_locus, process_of
from probebook.assistant.verify import anchor_lines
from probebook.errors import one_line
from probebook.session import Investigation

from .actions import inject, recover
from .endpoints import connect_lab
from .runner import REPO_ROOT
from .scenarios import Scenario
from .verify import wait_for_alert, wait_quiet

__all__ = ["EvalResult", "evaluate", "score", "table", "SCORES"]

SCORES = ("proven-correct", "unproven-correct", "abstained", "wrong", "confident-wrong")
_CLAIMS = ("proven", "outside", "no-fault")


@dataclass(frozen=True)
class _Truth:
    verdict: str
    service: str
    locus: str


@dataclass
class EvalResult:
    scenario: str
    verdict: Dict[str, Any]
    score: str
    seconds: float
    symptom_seen: bool
    probes: int = 0
    tool_calls: int = 0
    truth: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    # with `contain`: the actions proposed and done through the lab's remediation, and what the last check saw
    containment: Dict[str, Any] = field(default_factory=dict)
    # with `lifecycle`: the stages after the verdict, each {"outcome": ..., "why": ...}: fix, verified,
    # shipped, postmortem
    lifecycle: Dict[str, Dict[str, Any]] = field(default_factory=dict)


def _same_locus(truth: str, claimed: str) -> bool:
    """Does the claimed locus name the ground truth's? A path matches by whole components from the end;
    a process locus (``payments process``) by its service, whatever note follows it.

    >>> _same_locus("shop/web.py:Upstream.call", "/srv/x/shop/web.py:Upstream.call")
    True
    >>> _same_locus("payments process (killed)", "payments process"), _same_locus("payments process", "orders process")
    (True, False)
    """
    if process_of(truth) or process_of(claimed):  # a process, whatever note follows it: "(killed)"
        return process_of(truth) == process_of(claimed)
    tpath, tqual = parse_locus(truth)
    cpath, cqual = parse_locus(claimed)
    if not tqual or tqual != cqual:
        return False
    want = [p for p in tpath.split("/") if p]
    have = [p for p in cpath.split("/") if p]
    return not want or have[len(have) - len(want):] == want


def score(truth: Any, v: Verdict) -> str:
    """One of SCORES for verdict `v` against a ground truth (verdict kind, service, locus)."""
    if v.kind == "inconclusive":
        return "abstained"
    if truth.verdict == "proven":
        right = v.service == truth.service and _same_locus(truth.locus, v.locus)
    else:  # outside: the outside system named; no-fault: nothing to name
        right = v.kind == truth.verdict and (truth.verdict != "outside" or v.service == truth.service)
    if v.kind in _CLAIMS:
        return "proven-correct" if right and v.kind == truth.verdict else "confident-wrong"
    return "unproven-correct" if right else "wrong"


def _contain(lab: Any, inv: Investigation, verdict: Verdict, log: Callable[[str], None]) -> Dict[str, Any]:
    """The containments proposed for `verdict`, approved in the order proposed and done to the lab, each
    with its symptom check, until one contains it (an on-call engineer approving the list, one by one).
    Where one contained part of it (`partly`) and none after it all, the last such check is the answer: the
    next starts with that part gone, so a check after it that took nothing more away can only say `still`,
    while one that took more says `partly` again, with the lab as all the actions so far left it."""
    from probebook.assistant.containment import changes_elsewhere, why_no_proposal

    from .remediation import LabRemediation

    assistant = Assistant(inv)
    proposals = assistant.propose(verdict)
    if not proposals:
        return {"outcome": "none proposed", "why": why_no_proposal(verdict.kind, changes_elsewhere(inv, verdict))}
    done: List[str] = []
    caught = None  # a verdict proven after a restart stays proven whatever a later proposal does
    part = None  # an action that contained part of the symptom: the next one starts with that part gone
    for proposal in proposals:
        result = assistant.contain(proposal, LabRemediation(lab), approve=True, verdict=verdict,
                                   audit=lab.path("eval-actions-audit.log"), who="lab-eval", check_timeout=90.0,
                                   progress=lambda line: log(f"   {line}"))
        done.append(proposal.action.describe())
        caught = caught or result.caught
        part = result if result.outcome == "partly" else part
        if result.outcome == "contained":
            break
    shown = result if result.outcome == "contained" or part is None else part
    return {"outcome": shown.outcome, "action": " + ".join(done), "headline": shown.headline(),
            "check": shown.check.to_dict() if shown.check is not None else None,
            "caught": caught.to_dict() if caught is not None else None}


def _validate_fix(lab: Any, inv: Investigation, verdict: Verdict, sc: Scenario, log: Callable[[str], None]) -> Dict[str, Any]:
    """The ground truth's fix in code (`[fix]`), given to the assistant to validate on production's calls."""
    from probebook.assistant.fixcheck import Fix

    truth = sc.truth
    assert truth is not None
    if not truth.fix:
        return {"outcome": "n/a", "why": "the scenario gives no fix in code ([fix] in ground_truth.toml)"}
    if verdict.kind != "proven":
        return {"outcome": "n/a", "why": f"a verdict of {verdict.kind}: nothing proven to fix"}
    service = truth.fix_service or truth.service
    fix = Fix.from_edits(lab.service(service)["release"], [(e.file, e.find, e.replace) for e in truth.fix],
                         python=sys.executable, paths=(REPO_ROOT,))
    result = Assistant(inv).validate_fix(verdict, fix, service=service, progress=lambda line: log(f"   {line}"))
    return {"outcome": "yes" if result.validated else "no", "why": result.summary, "id": result.id}


def _verified(containment: Dict[str, Any], symptom: str = "") -> Dict[str, Any]:
    """Verification after the containment, as its check saw it: the proof's probes placed again with the
    same predicate. `passed`: the alert is gone and the predicate held on none of the calls; `locus idle`:
    the alert is gone and no call reached the probes (the action took that path out of use: a flag off, a
    rollback to code without it), so there was nothing left to verify there; `inconclusive`: the alert is
    gone but the predicate still holds (it may tell the failing calls apart rather than the fault) or too
    few calls came to judge it; `not passed`: the alert still holds. Contained in part (one alert went,
    another holds), the scenario's own `symptom` alert decides: the others may have a cause the scenario
    leaves in place (an outside provider still slow)."""
    probe = (containment.get("check") or {}).get("probe")
    if not probe:
        return {"outcome": "n/a", "why": containment.get("why") or "no probe was placed again after the action"}
    alerts = (containment.get("check") or {}).get("alerts") or []
    own = [a for a in alerts if a.get("alert") == symptom]
    gone = containment.get("outcome") == "contained" or (
        containment.get("outcome") == "partly" and bool(own) and all(a.get("holds") is False for a in own))
    if gone and probe.get("outcome") == "gone":
        outcome = "passed"
    elif gone and probe.get("outcome") == "inconclusive" and not probe.get("seen"):
        outcome = "locus idle"
    elif gone:  # the failure went, the predicate stayed, or too few calls came to judge it
        outcome = "inconclusive"
    else:
        outcome = "not passed"
    return {"outcome": outcome, "why": str(probe.get("headline", ""))}


def _ship_fix(lab: Any, inv: Investigation, verdict: Verdict, sc: Scenario, anchors: Dict[str, str],
              log: Callable[[str], None]) -> Dict[str, Any]:
    """Verification after the fix ships: the release the service ran while the fault was live with the
    scenario's `[fix]` on top, deployed; the scenario's other steps done again (the trigger is back: a flag
    on again, the same traffic); then the proof's probes placed again on the new code with the same
    predicate (`anchors`: their lines' text, read before anything changed), and the alert's query asked
    20 s after the deploy, then again until it no longer holds, for up to 120 s (and the rule's look-back)
    since the deploy: a rule over a window reads the time before the fix, and the restarted service warms
    up (a cache that the fix bounds refills to its bound) before the symptom settles. Where the fix rewrote
    the line the proof was read at and no failure was caught to judge by (a growth), the probe says so and
    the alert's query is the judge."""
    from probebook.assistant.containment import Action as ContainmentAction
    from probebook.assistant.journal import Journal
    from probebook.assistant.symptom import alerts_now, lookback_s
    from probebook.assistant.verify import verify_fix

    from .actions import perform
    from .remediation import LabRemediation
    from .scenarios import Action

    truth = sc.truth
    assert truth is not None
    if not truth.fix:
        return {"outcome": "n/a", "why": "the scenario gives no fix in code"}
    if verdict.kind != "proven" or verdict.predicate is None or not verdict.evidence:
        return {"outcome": "n/a", "why": f"a verdict of {verdict.kind} without a predicate to check on the fix"}
    service = truth.fix_service or truth.service
    deploy = {"service": service, "version": f"{lab.service(service)['version']}-fix", "edits": [], "by": "lab-eval"}
    for step in sc.inject:
        if step.kind == "deploy" and step.fields.get("service") == service:  # the faulty release, rebuilt
            deploy.update(version=f"{step.fields['version']}-fix", edits=list(step.fields.get("edits", [])),
                          **({"code": step.fields["code"]} if step.fields.get("code") else {}))
        else:
            perform(lab, step)
    deploy["edits"] = deploy["edits"] + [{"file": e.file, "find": e.find, "replace": e.replace} for e in truth.fix]
    deploy["summary"] = f"{service} {deploy['version']}: the fix ({truth.mitigation})"
    log(f"   ship: {perform(lab, Action('deploy', deploy, sc.path))}")
    remediation = LabRemediation(lab)  # a restarted service's agent listens on a new port: connect to it
    for name in {service} | {str(st.fields.get("service")) for st in sc.inject if st.kind in ("deploy", "restart")}:
        remediation.refresh(inv, ContainmentAction("restart", name))
    shipped = time.monotonic()
    inv.mark(f"fix shipped: {service} {deploy['version']}")
    probe = verify_fix(inv, verdict, calls=20, timeout=60.0, anchors=anchors, progress=lambda line: log(f"   {line}"))
    time.sleep(max(0.0, shipped + 20.0 - time.monotonic()))  # the alert's rate window holds only the new code
    incident = Journal(inv.store).incident_of(verdict.id) if verdict.id else None
    asked = alerts_now(inv, incident.alerts if incident else [], since=shipped, wait=120.0)  # until it settles
    held = [k[0] for k, v in asked.items() if v]
    quiet = bool(asked) and all(v is False for v in asked.values())
    why = probe.headline() + (f"; {', '.join(held)} still holds" if held else
                              "; the alert's query does not hold" if quiet else "; no alert's query could be asked")
    if held:
        outcome = "NOT fixed"
    elif probe.outcome == "gone":
        outcome = "verified"
    elif probe.by_symptom and quiet:  # the fix rewrote the proof's line and nothing raised: the alert judges,
        # quiet now and again once its rule's look-back has passed (one quiet evaluation is not a fix)
        time.sleep(min(60.0, max([lookback_s(k[1]) for k in asked] + [10.0])))
        later = alerts_now(inv, incident.alerts if incident else [])
        if later and all(v is False for v in later.values()):
            outcome, why = "verified", why + " now and again a look-back later, the fix shipped with its trigger " \
                                              "back (the symptom judges)"
        else:
            outcome, why = "inconclusive", why + "; but it held again a look-back later"
    elif probe.outcome == "still" and quiet:  # the failure went, the predicate stayed: it told the failing calls apart
        outcome, why = "inconclusive", why + ": the predicate may describe the calls that failed, not the fault"
    else:
        outcome = "NOT fixed" if probe.outcome == "still" else "inconclusive"
    inv.mark(f"after the fix: {why}")
    return {"outcome": outcome, "why": why}


def _postmortem(lab: Any, inv: Investigation, sc: Scenario) -> Dict[str, Any]:
    """The investigation saved, its postmortem notebook written and run under plain `pytest --nbval`."""
    from probebook.assistant.postmortem import write_postmortem

    folder = lab.path("eval", sc.id)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    store = inv.store.save_copy(os.path.join(folder, "investigation.duckdb"))
    out = write_postmortem(store, os.path.join(folder, "postmortem.ipynb"))
    ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", out],
                         cwd=folder, capture_output=True, text=True, timeout=600)
    last = (ran.stdout.strip().splitlines() or ["no output"])[-1]
    return {"outcome": "nbval green" if ran.returncode == 0 else "nbval failed", "why": last, "path": out}


def evaluate(lab: Any, scenarios: Sequence[Scenario], budget_s: float = 110.0, wait_s: float = 15.0,
             log: Callable[[str], None] = print, planner: str = "deterministic", llm: Any = None,
             contain: bool = False, lifecycle: bool = False) -> List[EvalResult]:
    """Run every scenario blind against the running `lab`; the lab is back at its baseline after each.
    `contain`: after the verdict, do the containments it proposes, in order, until one contains it
    (approved: this is the lab), and record whether the symptom went. `lifecycle`: the whole lifecycle
    after the verdict: the scenario's fix validated on the calls production made (before containment,
    while the fault is live), the containment and the verification it ends with, the fix shipped and
    verified on the new code, and the postmortem notebook written and run under nbval."""
    contain = contain or lifecycle
    results = []
    for sc in scenarios:
        truth = sc.truth
        assert truth is not None
        log(f"== {sc.id}: waiting for a quiet lab")
        noisy = wait_quiet(lab, 60.0)
        notes = [f"not quiet before the injection: {noisy}"] if noisy else []
        inv = Investigation()
        started = time.monotonic()
        verdict = Verdict("inconclusive", cause="not run")
        seen, elapsed, containment, stages = False, None, {}, {}
        try:
            inject(lab, sc)
            if sc.alert:
                seen = wait_for_alert(lab, sc, True, sc.within_s) is not None
            else:
                time.sleep(8.0)
                seen = True
            connect_lab(inv, lab, lambda name, why: log(f"   {name}: not connected: {why}"))
            started = time.monotonic()
            text = f"{sc.title}. {sc.summary}".strip()
            try:
                verdict = Assistant(inv).investigate(text, budget_s=budget_s, wait_s=wait_s,
                                                     progress=lambda line: log(f"   {line}"),
                                                     **({"planner": planner, "llm": llm} if planner != "deterministic"
                                                        else {}))
            except Exception as exc:  # noqa: BLE001 - one scenario's failure is its score, not the end of the run
                verdict = Verdict("inconclusive", cause=f"the investigation failed: {one_line(exc, 200)}")
            elapsed = round(time.monotonic() - started, 1)
            if lifecycle:
                anchors = _anchors(inv, verdict)
                stages["fix"] = _stage(lambda: _validate_fix(lab, inv, verdict, sc, log))
            if contain:
                containment = _stage(lambda: _contain(lab, inv, verdict, log))
            later = verdict
            if (containment or {}).get("caught"):  # proven after the restart freed what the fault held
                later = Verdict.from_dict(containment["caught"])
                if lifecycle:
                    stages["caught"] = {"outcome": "proven", "why": later.headline()}
                    anchors = _anchors(inv, later)
                    stages["fix"] = _stage(lambda: _validate_fix(lab, inv, later, sc, log))
            if lifecycle:
                stages["verified"] = _verified(containment, sc.alert)
                stages["shipped"] = _stage(lambda: _ship_fix(lab, inv, later, sc, anchors, log))
                stages["postmortem"] = _stage(lambda: _postmortem(lab, inv, sc))
                log("   " + "; ".join(f"{k}: {v['outcome']}" for k, v in stages.items()))
        finally:
            elapsed = elapsed if elapsed is not None else round(time.monotonic() - started, 1)
            probes = inv.probes().height
            calls = inv.sql("SELECT count(*) AS n FROM assistant_findings")["n"][0] \
                if "assistant_findings" in inv.store.tables() else 0
            inv.close()
            recover(lab)
        s = score(truth, verdict)
        log(f"   -> {verdict.headline()} [{s}] in {elapsed}s")
        results.append(EvalResult(sc.id, {"kind": verdict.kind, "service": verdict.service, "locus": verdict.locus,
                                          "cause": verdict.cause, "evidence": verdict.evidence,
                                          "reasons": verdict.reasons}, s, elapsed, seen, probes, int(calls),
                                  {"verdict": truth.verdict, "service": truth.service, "locus": truth.locus}, notes,
                                  containment, stages))
    return results


def _anchors(inv: Investigation, verdict: Verdict) -> Dict[str, str]:
    """The text of the proof's probe lines, read before anything changes (none when it cannot be read:
    shipping the fix then says the probes could not be placed again)."""
    try:
        return anchor_lines(inv, verdict) if verdict.evidence else {}
    except Exception:  # noqa: BLE001 - a stage's input, not the end of the run
        return {}


def _stage(run: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - one stage's failure is its outcome, not the end of the run
        return {"outcome": "error", "why": one_line(exc, 200)}


def table(results: Sequence[EvalResult]) -> str:
    """The table `lab eval` prints (Markdown), with the totals under it."""
    contained = any(r.containment for r in results)  # `lab eval --contain` adds the containment's columns
    whole = any(r.lifecycle for r in results)  # `--lifecycle` adds the stages after the verdict
    lines = ["| scenario | verdict | service | locus | score | seconds | probes | tool calls |"
             + (" containment | symptom after |" if contained else "")
             + (" fix validated | verification | after the fix | postmortem |" if whole else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|---|" if contained else "") + ("---|---|---|---|" if whole else "")]
    for r in results:
        v = r.verdict
        extra = f" {r.containment.get('action', '-')} | {r.containment.get('outcome', '-')} |" if contained else ""
        if whole:
            extra += "".join(f" {r.lifecycle.get(k, {}).get('outcome', '-')} |" for k in ("fix", "verified", "shipped", "postmortem"))
        kind = v["kind"] + (" (proven after the restart)" if r.containment.get("caught") else "")
        lines.append(f"| {r.scenario} | {kind} | {v['service'] or '-'} | {v['locus'].split('/')[-1] or '-'} | "
                     f"{r.score} | {r.seconds:g} | {r.probes} | {r.tool_calls} |" + extra)
    counts = {s: sum(1 for r in results if r.score == s) for s in SCORES}
    p50 = statistics.median([r.seconds for r in results]) if results else 0.0
    lines.append("")
    lines.append(", ".join(f"{s} {n}" for s, n in counts.items()) + f"; time to verdict p50 {p50:g}s")
    return "\n".join(lines)


def to_json(results: Sequence[EvalResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=1, default=str)
