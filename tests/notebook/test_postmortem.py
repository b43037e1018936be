"""The postmortem is a notebook that re-runs: written from a real investigation saved to a file (the
assistant proving a defect in a service it has never seen), it passes plain `pytest --nbval` with nothing
running, and fails it once the saved evidence is edited."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import duckdb
import nbformat
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "assistant"))

from tinyshop_driver import investigate_pay_500s  # noqa: E402

from probebook.agent import Agent  # noqa: E402
from probebook.session import Investigation  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An investigation of tinyshop's 500s, proven, saved to a file and closed."""
    folder = tmp_path_factory.mktemp("incident")
    path = str(folder / "incident.duckdb")
    agent = Agent()
    inv = Investigation(path)
    inv.attach("tinyshop", agent, audit_path=str(folder / "audit.jsonl"))
    try:
        verdict = investigate_pay_500s(inv)
    finally:
        inv.close()
    assert verdict.kind == "proven", verdict.reasons
    return path, verdict


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "probebook.cli", "postmortem", *args], capture_output=True,
                          text=True, timeout=300, cwd=str(cwd))


def _nbval(path, cwd):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", path],
                          capture_output=True, text=True, timeout=300, cwd=str(cwd))


def test_the_postmortem_reruns_under_nbval_with_nothing_running_and_fails_once_evidence_is_edited(
        saved, home, tmp_path):
    store, verdict = saved
    shutil.copy(store, tmp_path / "incident.duckdb")
    done = _cli("incident.duckdb", "-o", "postmortem.ipynb", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "postmortem.ipynb"
    nb = nbformat.read(str(tmp_path / "postmortem.ipynb"), 4)
    text = "\n".join(c.source for c in nb.cells)
    assert "# Postmortem: POST /pay answers 500 for some customers" in text
    assert verdict.cause in text and "Investigation.open('incident.duckdb')" in text
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert len(outputs) >= 5 and not [o for o in outputs if o.output_type == "error"]
    shown = json.dumps([o.get("data", {}).get("text/plain", "") for o in outputs])
    assert verdict.evidence[0] in shown and "proven" in shown  # the cited rows, and the gate again

    ran = _nbval("postmortem.ipynb", tmp_path)
    assert ran.returncode == 0 and " passed" in ran.stdout, ran.stdout[-2000:]

    # someone removes the evidence: the re-run no longer matches what the postmortem says
    con = duckdb.connect(str(tmp_path / "incident.duckdb"))
    con.execute("DELETE FROM snapshots WHERE evidence_id IN (SELECT unnest(?))", [verdict.evidence])
    con.close()
    ran = _nbval("postmortem.ipynb", tmp_path)
    # the cited rows are gone, and the gate run again no longer says proven: those two cells fail
    assert ran.returncode != 0 and "2 failed, 4 passed" in ran.stdout and "gate_again(inv," in ran.stdout, \
        ran.stdout[-3000:]


def test_bad_input_is_one_line(tmp_path):
    done = _cli("missing.duckdb", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith(
        "probebook postmortem: error: missing.duckdb: no such file")
    (tmp_path / "notes.duckdb").write_text("not a database")
    done = _cli("notes.duckdb", cwd=tmp_path)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("probebook postmortem: error: postmortem:")


def test_an_output_folder_that_does_not_exist_is_one_line(saved, tmp_path):
    store, _ = saved
    done = _cli(store, "-o", "no-such-folder/pm.ipynb", cwd=tmp_path)
    assert done.returncode == 2 and "no folder 'no-such-folder'" in done.stderr.strip().splitlines()[-1]
