"""`%contain` and `%postmortem` through a real IPython shell, after `%%assistant` proved the cause on tinyshop
(a service of this process): the panel proposes undoing the config change, the Approve button's click
does it through the notebook's own `Remediation` and the proof's probe sees the cause gone; words
(`--yes`, `--refuse`) do the same for runbooks; mistakes are one line and fail the cell; the postmortem
notebook of the live investigation is written and re-runs on its copy of the evidence."""

from __future__ import annotations

import json
import os
import sys

import nbformat
import pytest

from probebook import kernel_ext
from probebook.agent import Agent
from probebook.kernel_ext.args import MagicError

sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, "assistant")))
import tinyshop  # noqa: E402
from tinyshop_driver import TinyshopConfig, write_changes  # noqa: E402


@pytest.fixture
def proven(shell, run, tmp_path, monkeypatch):
    """tinyshop attached with customers on /pay, its bad config change in the change log, and the verdict
    `%%assistant` proved; answers the kernel's investigation."""
    monkeypatch.setitem(tinyshop.DISCOUNTS, "BROKEN", 15)
    agent = Agent()
    inv = kernel_ext.investigation()
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "agent-audit.jsonl"))
    changes = tmp_path / "changes.jsonl"
    write_changes(changes, ("config", "tinyshop", "discount BROKEN as a percent",
                            {"set": {"BROKEN": 15}, "before": {"BROKEN": 0.15}}))
    inv.telemetry.configure(change_logs=[str(changes)])
    _, stop, thread = tinyshop.start("pay")
    try:
        cell = run("%%assistant --wait 5s --budget 100s --block\nPOST /pay answers 500 for some customers")
        assert cell.error is None, cell.shown
        verdicts = inv.sql("SELECT kind FROM assistant_verdicts").rows()
        assert verdicts == [("proven",)], cell.shown
        yield inv
    finally:
        stop.set()
        thread.join()
        agent.close()


def _one_line(cell, expected):
    assert isinstance(cell.error, MagicError) and not cell.result.success, (cell.error, cell.shown)
    lines = [x for x in cell.shown.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("UsageError: ") and expected in lines[0], cell.shown


def test_the_approve_button_contains_it_and_the_probe_sees_the_cause_gone(proven, run, shell):
    view = run("%contain").result.result
    assert 'data-action="approve" data-alias="config-tinyshop-BROKEN"' in view.html and "restore tinyshop config BROKEN=0.15" in view.html
    # approving without a remediation named: the panel says what to do, nothing changed
    view._on_front_end_msg(view, {"action": "approve", "alias": "config-tinyshop-BROKEN"}, [])
    view.wait(30)
    assert "nothing can change services here" in view.text() and tinyshop.DISCOUNTS["BROKEN"] == 15
    shell.user_ns["fix"] = TinyshopConfig()
    view = run("%contain --remediation fix").result.result
    view._on_front_end_msg(view, {"action": "approve", "alias": "config-tinyshop-BROKEN"}, [])  # what the button's click sends
    assert view.click("config-tinyshop-BROKEN", True) == "config-tinyshop-BROKEN: already decided"  # a second click does nothing
    view.wait(120)
    view.refresh()
    assert tinyshop.DISCOUNTS["BROKEN"] == 0.15 and shell.user_ns["fix"].done[0][1].startswith("notebook:")
    assert "CONTAINED: tinyshop discounts set" in view.text(), view.text()
    assert "Approve" not in view.html and "contained" in view.html
    rows = proven.sql("SELECT decision, outcome FROM assistant_actions ORDER BY ts").rows()
    assert rows[-1] == ("approved", "contained")
    audit = os.path.join(os.path.dirname(proven.store.path), "actions-audit.log")
    steps = [json.loads(x)["action"] for x in open(audit, encoding="utf-8")]
    assert steps[-4:] == ["containment.proposed", "containment.approved", "containment.done", "containment.checked"]


def test_words_decide_for_a_runbook_and_mistakes_fail_the_cell(proven, run, shell):
    shell.user_ns.pop("fix", None)
    refused = run("%contain config-tinyshop-BROKEN --refuse")
    assert refused.error is None and refused.stdout.strip() == "not done (refused): restore tinyshop config BROKEN=0.15"
    _one_line(run("%contain config-tinyshop-BROKEN --yes"), "nothing can change services here")  # no remediation named yet
    _one_line(run("%contain p7 --yes --remediation fix"), "no such variable in the notebook")
    shell.user_ns["fix"] = TinyshopConfig()
    _one_line(run("%contain p7 --yes --remediation fix"), "%contain: no proposal p7; proposed: config-tinyshop-BROKEN")
    _one_line(run("%contain --yes"), "--yes and --refuse name the proposal they decide")
    _one_line(run("%contain config-tinyshop-BROKEN"), "say what to do with config-tinyshop-BROKEN: --yes (do it)")
    _one_line(run("%contain --verdict nope"), "no verdict nope; this investigation has verdict:")
    done = run("%contain config-tinyshop-BROKEN --yes --timeout 60s")
    assert done.error is None, done.shown
    assert done.stdout.startswith("CONTAINED: tinyshop discounts set")


def test_postmortem_of_the_live_investigation(proven, run, tmp_path, home, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("%contain config-tinyshop-BROKEN --refuse").error is None  # what was decided is in the postmortem's "What was done"
    cell = run("%postmortem -o pm.ipynb")
    assert cell.error is None, cell.shown
    assert cell.stdout.strip() == "pm.ipynb (its evidence: pm.duckdb)"
    nb = nbformat.read(tmp_path / "pm.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors and any("PROVEN" in json.dumps(c.get("outputs", [])) for c in nb.cells)
    done = next(c for c in nb.cells if c.cell_type == "code" and "assistant_actions" in c.source)
    assert "refused" in json.dumps(done.outputs) and "restore tinyshop config" in json.dumps(done.outputs)
    proven.mark("the kernel keeps writing its own store")  # the copy left it writable
    _one_line(run("%postmortem -o pm.ipynb"), "pm.ipynb exists")
    _one_line(run("%postmortem -o pm.txt"), "write a notebook name ending in .ipynb")


def test_fixcheck_replays_a_fix_and_verify_says_the_cause_is_still_there_until_it_ships(proven, run, tmp_path):
    fixed = tmp_path / "tinyshop_fixed.py"
    with open(tinyshop.__file__, encoding="utf-8") as fh:
        source = fh.read()
    fixed.write_text(source.replace("        return DISCOUNTS.get(code, 0.0)\n",
                                    "        rate = DISCOUNTS.get(code, 0.0)\n        return rate / 100 if rate > 1 else rate\n"))
    root = os.path.dirname(tinyshop.__file__)
    cell = run(f"%fixcheck --root {root} tinyshop.py={fixed} --capture 20s")
    assert cell.error is None, cell.shown
    assert cell.stdout.strip().startswith("fix validated: tinyshop.py:Billing.discount_for: fix validated:"), cell.stdout
    kept = proven.sql("SELECT validated FROM assistant_fix_validations").rows()
    assert kept == [(True,)]
    # a fix that changes nothing the calls take is not validated: the cell fails with one line
    same = tmp_path / "tinyshop_same.py"
    same.write_text(source.replace("def discount_for(self, code):", "def discount_for(self, code):  # reviewed"))
    _one_line(run(f"%fixcheck --root {root} tinyshop.py={same} --capture 0s"), "%fixcheck: fix NOT validated")
    # the fix has not shipped: the proof's probe still sees the cause, and the cell says so
    _one_line(run("%verify --calls 5 --timeout 30s"), "%verify: NOT fixed:")
    tinyshop.DISCOUNTS["BROKEN"] = 0.15  # shipped (the fixture's monkeypatch puts it back)
    done = run("%verify --calls 5 --timeout 30s")
    assert done.error is None and done.stdout.startswith("verified:"), done.shown
    _one_line(run("%fixcheck --root x"), "name the service's code folder and each fixed file")
    _one_line(run(f"%fixcheck --root {root} tinyshop.py"), "tinyshop.py: write PATH_IN_ROOT=FILE_WITH_THE_FIXED_TEXT")
    _one_line(run(f"%fixcheck --root {root} tinyshop.py={tmp_path / 'none.py'}"), "cannot read")
