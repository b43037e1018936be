"""Runbooks are notebooks (notebooks/runbooks/): a parameters cell (tagged ``parameters``, papermill's
convention), the steps as cells, and the decision points as cells tagged ``decision`` that print what
was decided in words. Their metadata says what they are for::

    {"probebook": {"runbook": {"title": "...", "alerts": ["HighErrorRate"], "summary": "..."}}}

`runbooks(folder)` lists them, `pick(folder, alerts)` finds the one for an alert firing, and
`run_runbook(path, parameters)` runs one (its parameters set in a cell after the parameters cell, tagged
``injected-parameters``), answering the decisions it printed; the run is written to `out` for a look.

>>> import tempfile
>>> runbooks(tempfile.mkdtemp())
[]
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from probebook.errors import AssistantError, one_line

__all__ = ["Runbook", "RunbookResult", "runbooks", "pick", "run_runbook", "run_for_alerts", "parameters_cell"]


@dataclass
class Runbook:
    path: str
    title: str
    alerts: List[str] = field(default_factory=list)
    summary: str = ""


@dataclass
class RunbookResult:
    """`decisions`: what the decision cells printed, in order; `failed`: the failing cell's error (one line)."""

    runbook: Runbook
    out: str
    decisions: List[str] = field(default_factory=list)
    failed: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {"runbook": self.runbook.path, "title": self.runbook.title, "out": self.out,
                "decisions": self.decisions, "failed": self.failed}


def runbooks(folder: str) -> List[Runbook]:
    """The runbooks in `folder` (notebooks whose metadata has ``probebook.runbook``), by file name."""
    import nbformat

    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.ipynb"))):
        try:
            meta = nbformat.read(path, as_version=4).metadata.get("probebook", {}).get("runbook")
        except Exception:  # noqa: BLE001 - not a notebook: not a runbook
            continue
        if isinstance(meta, dict):
            out.append(Runbook(path, str(meta.get("title") or os.path.basename(path)),
                               [str(a) for a in meta.get("alerts") or []], str(meta.get("summary") or "")))
    return out


def pick(folder: str, alerts: Sequence[str]) -> Optional[Runbook]:
    """The first runbook of `folder` that covers one of the `alerts` (names), or None."""
    wanted = set(alerts)
    return next((rb for rb in runbooks(folder) if wanted & set(rb.alerts)), None)


def parameters_cell(parameters: Mapping[str, Any]) -> Any:
    """A code cell setting `parameters` (``name = repr(value)``), tagged ``injected-parameters``: what a
    runner puts after a runbook's parameters cell."""
    import nbformat

    lines = ["# injected parameters"] + [f"{name} = {value!r}" for name, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["injected-parameters"]
    return cell


def run_runbook(path: str, parameters: Optional[Mapping[str, Any]] = None, out: Optional[str] = None,
                timeout: int = 300) -> RunbookResult:
    """Run the runbook at `path` with `parameters` (names of its parameters cell); write the run to `out`
    (default: ``NAME-run.ipynb`` in the current folder) and answer its decisions. A cell that fails ends
    the run: `failed` says which error."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    book = next((rb for rb in runbooks(os.path.dirname(os.path.abspath(path))) if os.path.samefile(rb.path, path)),
                None) if os.path.isfile(path) else None
    if book is None:
        raise AssistantError(f"{path}: not a runbook (a notebook with probebook.runbook in its metadata)")
    nb = nbformat.read(path, as_version=4)
    at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", ())), None)
    if parameters:
        if at is None:
            raise AssistantError(f"{path}: no cell tagged 'parameters' to set {', '.join(parameters)} after")
        nb.cells.insert(at + 1, parameters_cell(parameters))
    out = out or os.path.splitext(os.path.basename(path))[0] + "-run.ipynb"
    failed = ""
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": os.path.dirname(os.path.abspath(out))}}).execute()
    except CellExecutionError as exc:
        failed = one_line(str(exc).strip().splitlines()[-1] if str(exc).strip() else exc, 300)
    except Exception as exc:  # noqa: BLE001 - no kernel, a dead kernel, a cell past its timeout
        failed = f"{type(exc).__name__}: {one_line(exc, 280)}"
    nbformat.write(nb, out)
    decisions = ["".join(o.get("text", "") for o in c.get("outputs", []) if o.get("output_type") == "stream").strip()
                 for c in nb.cells if "decision" in c.metadata.get("tags", ())]
    return RunbookResult(book, out, [d for d in decisions if d], failed)


def run_for_alerts(inv: Any, folder: str, alerts: Sequence[Any], parameters: Optional[Mapping[str, Any]] = None,
                   out: Optional[str] = None, timeout: int = 300) -> Optional[RunbookResult]:
    """The runbook strategy: pick the runbook of `folder` that covers one of `alerts` (`Alert`s: the open
    ones), run it with that alert's name and labels (and `parameters`: how it reaches the services), and
    put its decisions on `inv`'s timeline, each with the run's notebook as its reference. A runbook's
    decisions are context for the next step, never a proof: its evidence is in its own run (`out`).
    None when no runbook covers any of the alerts."""
    book = pick(folder, [a.name for a in alerts])
    if book is None:
        return None
    alert = next(a for a in alerts if a.name in book.alerts)
    result = run_runbook(book.path, {"alert": alert.name, "labels": dict(alert.labels), **dict(parameters or {})},
                         out, timeout)
    for decision in result.decisions:
        inv.store.add_timeline(f"runbook {book.title}: {one_line(decision, 300)}", source="runbook", ref=result.out)
    if result.failed:
        inv.store.add_timeline(f"runbook {book.title} stopped: {result.failed}", source="runbook", ref=result.out)
    return result
