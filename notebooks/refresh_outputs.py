"""Run a notebook and store the outputs that `make test` compares with `pytest --nbval`.

    .venv/bin/python notebooks/refresh_outputs.py [NOTEBOOK ...]   (default: notebooks/quickstart.ipynb)

`make test` runs every notebook here under plain `--nbval`: each cell's output must match the one stored,
after `nbval-sanitize.cfg` replaced what legitimately varies (ports, paths, Python versions, ids). A cell
whose output cannot be stable (a live panel, counts that depend on traffic) carries the tag
`nbval-ignore-output` and says why in its metadata (`nbval_ignore_reason`); it still runs, and still fails
the notebook if it raises. Its output is not stored, which also keeps the file small.

Run this after changing a notebook or what its cells print, read the diff of the stored outputs, and
commit them with the change. The notebook runs as `make test` runs it: a fresh Jupyter home and no
incident lab (the lab section prints that none runs; tests/lab runs those cells on a real one).
"""

from __future__ import annotations

import os
import sys
import tempfile

import nbformat
from nbclient import NotebookClient

IGNORE = "nbval-ignore-output"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # a model id that lives only with its kernel


def refresh(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    missing = [i for i, c in enumerate(nb.cells)
               if IGNORE in c.metadata.get("tags", ()) and not c.metadata.get("nbval_ignore_reason")]
    if missing:
        sys.exit(f"{path}: cells {missing} ignore their output without saying why (metadata nbval_ignore_reason)")
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as no_lab:
        env = {"HOME": home, "PROBEBOOK_LAB_DIR": no_lab, "IPYTHONDIR": os.path.join(home, "ipython"),
               "JUPYTER_CONFIG_DIR": os.path.join(home, "config"), "JUPYTER_DATA_DIR": os.path.join(home, "data"),
               "JUPYTER_RUNTIME_DIR": os.path.join(home, "runtime")}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False,
                           resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}).execute()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    store(nb, path)


def store(nb: nbformat.NotebookNode, path: str) -> None:
    """Write `nb`, run, to `path` with the outputs `--nbval` compares: none for cells tagged IGNORE, no
    widget views (their model ids live only with their kernel). tests/lab/test_runbooks.py stores the
    runbooks' outputs this way, run on the lab with their incidents (PROBEBOOK_UPDATE_RUNBOOKS=1)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if IGNORE in cell.metadata.get("tags", ()):
            cell.outputs = []
            continue
        for out in cell.outputs:
            if "data" in out:
                out.data.pop(WIDGET_VIEW, None)
    nbformat.write(nb, path)
    print(f"{path}: outputs stored")


if __name__ == "__main__":
    for p in sys.argv[1:] or [os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.ipynb")]:
        refresh(p)
