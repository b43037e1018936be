"""Run one scenario against the running lab and check its ground truth end to end:
inject, see the symptom, place the decisive probe and check what it captured, recover, see the
symptom clear. `lab verify ID` and the lab's tests use it.

>>> result = verify(Lab.attach(), find_scenario("wrong-config"))      # doctest: +SKIP
>>> result.symptom_seen, result.proof.proven, result.cleared          # doctest: +SKIP
(True, True, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, List, Optional

from .actions import inject, recover
from .alerts import Firing
from .evidence import ProofResult, place, watch
from .scenarios import Scenario

__all__ = ["Verification", "verify", "matching", "wait_for_alert", "wait_quiet"]


@dataclass
class Verification:
    scenario: str
    symptom_seen: bool = False
    symptom_after_s: Optional[float] = None
    firing: List[str] = field(default_factory=list)
    proof: Optional[ProofResult] = None
    cleared: bool = False
    cleared_after_s: Optional[float] = None
    steps: List[str] = field(default_factory=list)

    def summary(self) -> str:
        proof = self.proof.detail if self.proof else "not checked"
        return (f"{self.scenario}: symptom {'seen' if self.symptom_seen else 'NOT seen'} "
                f"({self.symptom_after_s}s), proof: {proof}, cleared {self.cleared} ({self.cleared_after_s}s); "
                f"firing: {self.firing}")


def matching(firing: List[Firing], scenario: Scenario) -> List[Firing]:
    """The alerts among `firing` that are the scenario's symptom (name, and its labels as a subset)."""
    return [f for f in firing if f.name == scenario.alert
            and all(f.labels.get(k) == v for k, v in scenario.alert_labels.items())]


def wait_for_alert(lab: Any, scenario: Scenario, present: bool, timeout: float) -> Optional[float]:
    """Seconds until the scenario's alert is firing (`present`) or gone; None on timeout."""
    started = time.monotonic()
    while True:
        found = bool(matching(lab.firing(), scenario))
        if found == present:
            return round(time.monotonic() - started, 1)
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.5)


def wait_quiet(lab: Any, timeout: float) -> List[str]:
    """Wait until no alert fires at all; answer what still fires after `timeout` (empty: quiet)."""
    deadline = time.monotonic() + timeout
    while True:
        firing = [f"{f.name}{f.labels}" for f in lab.firing()]
        if not firing or time.monotonic() > deadline:
            return firing
        time.sleep(1.0)


def verify(lab: Any, scenario: Scenario, symptom_timeout: Optional[float] = None, proof_timeout: float = 30.0,
           clear_timeout: float = 45.0, quiet_s: float = 8.0, settle_s: Optional[float] = None) -> Verification:
    """Inject, check, recover; the lab is back at its baseline afterwards, whatever happened.

    The symptom counts only if it fires again between `settle_s` after the injection (default: the
    alert window plus 2 s) and two windows later, so a blip of a restart cannot pass for it. A control must stay quiet for
    `quiet_s` and its probe must capture nothing then."""
    result = Verification(scenario.id)
    truth = scenario.truth
    assert truth is not None
    settle = settle_s if settle_s is not None else _seconds(lab.options.window) + 2.0
    noisy = wait_quiet(lab, clear_timeout)
    if noisy:
        result.firing = noisy
        result.steps.append("the lab was not quiet before the injection")
        return result
    try:
        result.steps += inject(lab, scenario)
        injected = time.monotonic()
        client = lab.agent(truth.evidence.service)  # after the injection: a deploy starts a new agent
        probe_id = place(client, truth.evidence)
        proof = truth.evidence.proof
        if scenario.alert:
            waited = wait_for_alert(lab, scenario, True, symptom_timeout or scenario.within_s)
            result.proof = watch(client, probe_id, proof, proof_timeout)
            time.sleep(max(0.0, injected + settle - time.monotonic()))
            # statistical alerts flicker near their threshold: it must fire again within two more
            # windows (a restart blip, out of the rate window by now, does not come back), not at this very second
            still = wait_for_alert(lab, scenario, True, max(6.0, 2 * _seconds(lab.options.window))) is not None
            result.symptom_seen, result.symptom_after_s = waited is not None and still, waited
            if waited is not None and not still:
                result.steps.append(f"{scenario.alert} fired after {waited}s but was gone {settle:g}s after the injection")
        else:
            result.proof = watch(client, probe_id, proof, quiet_s)
            result.firing = [f"{f.name}{f.labels}" for f in lab.firing()]
            result.symptom_seen = not result.firing  # a control: nothing may fire
        if scenario.alert:
            result.firing = [f"{f.name}{f.labels}" for f in lab.firing()]
        try:
            client.remove_probe(probe_id)
        except Exception:  # the service may be down in this scenario; the probe went with it
            pass
    finally:
        result.steps += recover(lab)
    if scenario.alert:
        waited = wait_for_alert(lab, scenario, False, clear_timeout)
        result.cleared, result.cleared_after_s = waited is not None, waited
    else:
        result.cleared = not lab.firing()
    return result


def _seconds(duration: str) -> float:
    from probebook.protocol.spec import parse_duration

    return parse_duration(duration, "window")
