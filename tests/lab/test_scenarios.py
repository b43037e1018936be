"""Every scenario, end to end on the running lab: its symptom fires (in Alertmanager when Prometheus
runs, else in the lab's own health check), the probe its ground truth names as decisive evidence
captures the value that proves the cause, and `lab recover` clears the symptom."""

from __future__ import annotations

import pytest

from probebook.lab.scenarios import all_scenarios, find_scenario
from probebook.lab.verify import verify

SCENARIOS = sorted(s.id for s in all_scenarios())


def test_the_lab_has_twelve_faults_and_two_controls():
    scenarios = all_scenarios()
    verdicts = [s.truth.verdict for s in scenarios]
    assert verdicts.count("proven") >= 12
    assert verdicts.count("no-fault") == 1 and verdicts.count("outside") == 1


@pytest.mark.parametrize("sid", SCENARIOS)
def test_scenario_symptom_proof_and_recovery(lab, sid):
    scenario = find_scenario(sid)
    result = verify(lab, scenario)
    where = "alertmanager" if lab.manifest["monitoring"]["alertmanager"] else "the lab health check"
    if scenario.alert:
        assert result.symptom_seen, f"{scenario.alert}{scenario.alert_labels} not firing in {where}: {result.summary()}; {result.steps}"
    else:
        assert result.symptom_seen, f"the control fired alerts: {result.firing}"
    assert result.proof is not None and result.proof.proven, f"decisive probe did not prove it: {result.summary()}"
    assert result.cleared, f"lab recover did not clear {scenario.alert}: {result.summary()}"
    # the lab is back at its baseline: versions, config and flags
    for name, entry in lab.manifest["services"].items():
        assert lab.read_json(f"config/{name}.json") == {}
    assert lab.read_json("config/flags.json") == {}
    assert lab.manifest["scenario"] is None

