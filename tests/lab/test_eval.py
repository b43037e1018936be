"""`probebook lab eval` on a scenario folder it has never seen (the public format, written here), against
the session's running lab: blind, scored, written as JSON; a wrong claim of proof would fail it. With
`--lifecycle`, the stages after the verdict: the scenario's fix replayed on the calls production made, the
containment the verdict proposes done and the symptom checked (the proof's probe placed again), and the
postmortem notebook written and run under plain nbval."""

import json
import os
import shutil
import subprocess
import sys

from probebook.lab.evaluate import SCORES
from probebook.lab.runner import Lab
from probebook.lab.scenarios import BUILTIN_DIR


def test_eval_scores_a_users_scenario_folder_through_the_lifecycle(lab, tmp_path, jupyter_home):
    folder = tmp_path / "my-scenarios"
    # a user's incident: the coupon deploy under another name, its files copied as a user would write them
    shutil.copytree(os.path.join(BUILTIN_DIR, "bad-deploy"), folder / "coupons-go-negative")
    out = tmp_path / "eval.json"
    done = subprocess.run([sys.executable, "-m", "probebook.cli", "lab", "eval", "--state-dir", lab.state,
                           "--scenarios", str(folder), "--json", str(out), "--budget", "90", "--lifecycle"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| coupons-go-negative |" in done.stdout  # the table a person reads
    results = json.loads(out.read_text())
    assert [r["scenario"] for r in results] == ["coupons-go-negative"]  # only the user's folder, not the 14
    r = results[0]
    assert set(r["verdict"]) >= {"kind", "service", "locus", "cause", "evidence"}
    assert r["score"] in SCORES and r["seconds"] > 0
    assert r["score"] != "confident-wrong", r
    if r["verdict"]["kind"] == "proven":  # a proof cites what it rests on
        assert r["verdict"]["evidence"]
    # the first action proposed was done to the lab and the symptom checked after it
    assert "| containment | symptom after | fix validated | verification | after the fix | postmortem |" in done.stdout
    if r["verdict"]["kind"] == "proven" and r["verdict"]["service"] == "orders":
        assert r["containment"]["action"] == "roll orders back to 2.7.1", r["containment"]
        assert r["containment"]["outcome"] == "contained", r["containment"]
    else:
        assert r["containment"]["outcome"] in ("none proposed", "contained", "partly", "still", "inconclusive"), r
    stages = r["lifecycle"]
    assert set(stages) == {"fix", "verified", "shipped", "postmortem"} and all(s.get("why") for s in stages.values()), stages
    if r["verdict"]["kind"] == "proven":  # the folder's [fix] was replayed (or it says why it could not be)
        assert stages["fix"]["outcome"] in ("yes", "no") and stages["fix"]["id"].startswith("fixval:"), stages
        # the fix (a right one) shipped on the faulty release and checked on the new code: never "NOT fixed"
        assert stages["shipped"]["outcome"] in ("verified", "inconclusive"), stages["shipped"]
    # the postmortem is written next to the saved investigation and passes plain nbval with nothing running
    assert stages["postmortem"]["outcome"] == "nbval green", stages["postmortem"]
    assert os.path.isfile(os.path.join(lab.state, "eval", "coupons-go-negative", "investigation.duckdb"))
    assert not Lab.attach(lab.state).manifest.get("scenario")  # recovered: the lab is back at its baseline


def test_a_partial_containment_passes_verification_only_when_the_scenarios_own_alert_is_gone():
    """The eval's reading of a containment that took part of the symptom away: the scenario's own alert
    decides, and only when each of its queries answered that it no longer holds; one that could not be
    asked is not gone. A probe that saw the fault still there never passes."""
    from probebook.lab.evaluate import _verified

    def containment(outcome, rows, probe="gone"):
        return {"outcome": outcome, "check": {"alerts": rows, "probe": {"outcome": probe, "seen": 20,
                                                                        "headline": f"{probe}: ..."}}}

    own_gone = [{"alert": "RetryAmplification", "holds": False}, {"alert": "HighLatency", "holds": True}]
    assert _verified(containment("partly", own_gone), "RetryAmplification")["outcome"] == "passed"
    assert _verified(containment("partly", own_gone), "HighLatency")["outcome"] == "not passed"
    unasked = [{"alert": "RetryAmplification", "holds": None}, {"alert": "HighLatency", "holds": True}]
    assert _verified(containment("partly", unasked), "RetryAmplification")["outcome"] == "not passed"
    assert _verified(containment("partly", own_gone, probe="still"), "RetryAmplification")["outcome"] == \
        "inconclusive"
    assert _verified(containment("still", own_gone), "RetryAmplification")["outcome"] == "not passed"
    assert _verified(containment("contained", [{"alert": "X", "holds": False}]), "Y")["outcome"] == "passed"
