"""A magic that fails fails its cell for whatever runs the notebook: nbval (`make test` runs the quickstart
with it; runbooks are notebooks tested so), nbclient as `jupyter nbconvert --execute` and papermill run it.
Before, IPython printed the magic's `UsageError` and the runner saw a cell that succeeded. The person
still reads one line, no traceback."""

from __future__ import annotations

import subprocess
import sys

import nbformat

SETUP = "%load_ext probebook\n%config Probebook.evidence_path = ':memory:'"
FAILS = '%probe log nowhere app.py:12 "total={total}"'


def _write(path, cells) -> str:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return str(path)


def _nbval(path, cwd):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", path],
                          capture_output=True, text=True, timeout=180, cwd=str(cwd))


def test_nbval_fails_a_notebook_whose_magic_fails(home, tmp_path):
    good = _write(tmp_path / "good.ipynb", [SETUP, "%services", "%unload_ext probebook"])
    bad = _write(tmp_path / "bad.ipynb", [SETUP, "%services", FAILS, "%unload_ext probebook"])
    ran = _nbval(good, tmp_path)  # the same notebook without the failing cell passes: nbval ran it
    assert ran.returncode == 0 and "3 passed" in ran.stdout, ran.stdout[-2000:] + ran.stderr[-2000:]
    ran = _nbval(bad, tmp_path)
    assert ran.returncode == 1 and "1 failed, 3 passed" in ran.stdout, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "nowhere" in ran.stdout


def test_a_runner_sees_the_error_as_one_line(home, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(_write(tmp_path / "bad.ipynb", [SETUP, FAILS, "print('not reached')"]), as_version=4)
    client = NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
        raise AssertionError("the failing magic did not stop the notebook")
    except CellExecutionError as err:
        assert "nowhere" in str(err)
    errors = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "MagicError", nb.cells[1].outputs
    assert len(errors[0].traceback) == 1 and errors[0].traceback[0].startswith("UsageError: unknown service 'nowhere'"), \
        errors[0].traceback
    assert nb.cells[2].outputs == []  # the run stopped at the failed cell


def test_the_quickstart_compares_its_stored_outputs(home, tmp_path, monkeypatch):
    """`make test` runs the notebooks under plain --nbval: a stored output that no longer matches what the
    cell prints fails the notebook (a service that says "2 of 1 instances", a source listing that changed),
    while ports, paths, versions and ids are sanitized. The unedited copy passes first (positive control)."""
    import json
    import os
    import shutil

    here = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks")
    shutil.copy(os.path.join(here, "nbval-sanitize.cfg"), tmp_path / "sanitize.cfg")
    nb = json.load(open(os.path.join(here, "quickstart.ipynb")))
    connect = next(c for c in nb["cells"] if "".join(c["source"]).startswith("%connect"))
    assert connect["outputs"] and "1 of 1 instances healthy" in "".join(connect["outputs"][0]["text"])
    ignored = [c for c in nb["cells"] if "nbval-ignore-output" in c.get("metadata", {}).get("tags", ())]
    assert ignored and all(c["metadata"].get("nbval_ignore_reason") for c in ignored)  # each says why
    compared = [c for c in nb["cells"] if c["cell_type"] == "code" and c not in ignored and c["outputs"]]
    assert len(compared) >= 6, len(compared)
    monkeypatch.setenv("PROBEBOOK_LAB_DIR", str(tmp_path / "no-lab"))

    def nbval(name):
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                               "--nbval-sanitize-with", "sanitize.cfg", name],
                              capture_output=True, text=True, timeout=300, cwd=str(tmp_path))

    json.dump(nb, open(tmp_path / "same.ipynb", "w"))
    ran = nbval("same.ipynb")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    connect["outputs"][0]["text"] = "".join(connect["outputs"][0]["text"]).replace("1 of 1", "2 of 1")
    json.dump(nb, open(tmp_path / "edited.ipynb", "w"))
    ran = nbval("edited.ipynb")
    assert ran.returncode == 1 and "Cell outputs differ" in ran.stdout and "1 failed" in ran.stdout, \
        ran.stdout[-3000:]
