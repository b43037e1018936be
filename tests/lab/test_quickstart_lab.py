"""The quickstart's last cells on the session's lab with an incident injected, as `make demo` leaves it:
they find the running lab, connect its services and telemetry, and `%investigate` from the alerts
that fire ends in a verdict the notebook shows. (`make test` runs the whole quickstart with no lab
running: those cells then say how to start one.)"""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

from probebook.lab.actions import inject, recover
from probebook.lab.scenarios import find_scenario
from probebook.lab.verify import wait_for_alert, wait_quiet

QUICKSTART = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks", "quickstart.ipynb")


def _lab_cells(tmp_path):
    """The quickstart's cells from its lab section on, as a notebook of their own."""
    nb = nbformat.read(QUICKSTART, as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## The lab's incident" in c.source)
    part = nbformat.v4.new_notebook(cells=nb.cells[start:], metadata=nb.metadata)
    path = tmp_path / "lab-part.ipynb"
    nbformat.write(part, path)
    return part, path


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", "") if o.output_type == "stream" else str((o.get("data") or {}).get("text/plain", "")))
    return "\n".join(out)


def test_the_quickstart_investigates_the_running_labs_incident(lab, tmp_path, monkeypatch, jupyter_home):
    assert not wait_quiet(lab, 90), "the lab did not quieten before the test"
    scenario = find_scenario("disk-full")
    inject(lab, scenario)
    try:
        assert wait_for_alert(lab, scenario, True, scenario.within_s) is not None, "the symptom never fired"
        monkeypatch.setenv("PROBEBOOK_LAB_DIR", lab.state)
        part, path = _lab_cells(tmp_path)
        NotebookClient(part, timeout=240, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        code = [c for c in part.cells if c.cell_type == "code"]
        connected = _text(code[0])
        assert "connected:" in connected and all(s in connected for s in ("gateway", "orders", "worker")), connected
        verdict = _text(code[-1])
        assert any(k in verdict for k in ("proven", "likely", "inconclusive", "no-fault", "outside")), verdict
        assert "evidence" in verdict
        assert (tmp_path / "lab-part.evidence.duckdb").exists() or any(tmp_path.glob("*.duckdb")), \
            "the investigation's evidence file, kept beside the notebook"
    finally:
        recover(lab)
