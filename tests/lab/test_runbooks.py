"""The runbooks (notebooks/runbooks/) on the lab, each with an incident of the kind it is for injected: run
under plain `pytest --nbval`, their stored outputs compared (after notebooks/nbval-sanitize.cfg), the
cells whose output follows from the verdict tagged with the reason. Then the assistant picks the runbook
for the alert firing by its metadata and runs it with `approve = True`: the rollback is done, audited,
and the symptom seen gone.

PROBEBOOK_UPDATE_RUNBOOKS=1 runs each on its incident and stores its outputs instead (read the diff)."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from probebook.assistant.runbooks import parameters_cell, pick, run_runbook, runbooks
from probebook.lab.actions import inject, recover
from probebook.lab.runner import Lab
from probebook.lab.scenarios import find_scenario
from probebook.lab.verify import wait_for_alert, wait_quiet

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
FOLDER = os.path.join(ROOT, "notebooks", "runbooks")
SANITIZE = os.path.join(ROOT, "notebooks", "nbval-sanitize.cfg")
sys.path.insert(0, os.path.join(ROOT, "notebooks"))
import refresh_outputs  # noqa: E402

# each runbook with an incident of its kind (the incident is not in the runbook: it works from the alert)
CASES = [("error-rate-after-deploy.ipynb", "bad-deploy"), ("latency-slow-dependency.ipynb", "slow-dependency"),
         ("pool-saturation.ipynb", "pool-exhaustion")]


def _incident(lab, scenario_id):
    assert not wait_quiet(lab, 90), "the lab did not quieten before the test"
    scenario = find_scenario(scenario_id)
    inject(lab, scenario)
    assert wait_for_alert(lab, scenario, True, scenario.within_s) is not None, "the symptom never fired"
    return scenario


def test_every_runbook_says_what_it_covers():
    books = runbooks(FOLDER)
    assert len(books) >= 3 and all(b.alerts and b.title and b.summary for b in books), books
    for b in books:
        nb = nbformat.read(b.path, as_version=4)
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        assert sum("parameters" in t for t in tags) == 1 and any("decision" in t for t in tags), b.path
        ignored = [c for c in nb.cells if "nbval-ignore-output" in c.metadata.get("tags", ())]
        assert all(c.metadata.get("nbval_ignore_reason") for c in ignored), b.path


@pytest.mark.parametrize("name, scenario_id", CASES)
def test_the_runbook_passes_nbval_on_its_incident(lab, tmp_path, jupyter_home, monkeypatch, name, scenario_id):
    monkeypatch.setenv("PROBEBOOK_LAB_DIR", lab.state)
    scenario = _incident(lab, scenario_id)
    try:
        # run where its evidence file may land, never in the checkout; with the alert's labels set as a runner
        # sets them (one incident may fire several alerts of a name)
        copy = tmp_path / name
        nb = nbformat.read(os.path.join(FOLDER, name), as_version=4)
        at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", ()))
        nb.cells.insert(at + 1, parameters_cell({"labels": dict(scenario.alert_labels)}))
        nbformat.write(nb, copy)
        if os.environ.get("PROBEBOOK_UPDATE_RUNBOOKS"):
            nb = nbformat.read(copy, as_version=4)
            NotebookClient(nb, timeout=400, kernel_name="python3", record_timing=False,
                           resources={"metadata": {"path": str(tmp_path)}}).execute()
            nb.cells.pop(at + 1)
            refresh_outputs.store(nb, os.path.join(FOLDER, name))
            return
        ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                              "--nbval-sanitize-with", SANITIZE, "--nbval-cell-timeout", "400", str(copy)],
                             capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert ran.returncode == 0, ran.stdout[-4000:]
        code = [c for c in nbformat.read(copy, as_version=4).cells if c.cell_type == "code"]
        assert " passed" in ran.stdout and f"{len(code)} passed" in ran.stdout, ran.stdout[-1000:]
    finally:
        recover(lab)


def test_the_assistant_picks_the_runbook_for_the_alert_and_runs_it_approved(lab, tmp_path, jupyter_home,
                                                                            monkeypatch):
    scenario = _incident(lab, "bad-deploy")
    try:
        book = pick(FOLDER, [scenario.alert])
        assert book is not None and os.path.basename(book.path) == "error-rate-after-deploy.ipynb"
        monkeypatch.chdir(tmp_path)
        result = run_runbook(book.path, {"lab_dir": lab.state, "approve": True, "labels": dict(scenario.alert_labels)},
                             timeout=400)
        assert not result.failed, result.to_dict()
        assert result.decisions[0].endswith("decision: real: go on"), result.decisions
        assert "live deploy of orders: 2.7.1 -> 2.8.0" in result.decisions[1], result.decisions
        last = result.decisions[-1]
        if "roll orders back" in last:  # the verdict proved orders: its rollback was approved and done
            assert "decision: CONTAINED: rolled back orders 2.8.0 -> 2.7.1" in last, last
            assert Lab.attach(lab.state).service("orders")["version"] == "2.7.1"
        else:  # a verdict that proves nothing proposes nothing: said, nothing changed
            assert "decision: no containment" in last, result.decisions
        ran = nbformat.read(result.out, as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", ()) for c in ran.cells)
    finally:
        recover(lab)
