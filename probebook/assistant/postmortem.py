"""The postmortem is a notebook: `write_postmortem(store, out)` (`probebook postmortem FILE.duckdb -o
postmortem.ipynb`, `%postmortem`) writes an `.ipynb` whose cells re-run against the saved investigation
(`Investigation.open`): summary, impact, timeline with evidence ids, the root cause with its proof (the
cited rows, and the proof gate run again on them), hypotheses, what was done, follow-ups.

The notebook is executed once as it is written, so it opens with its outputs; `pytest --nbval` on it
re-runs every cell with no service, lab or Prometheus running and compares (the store is read-only, its
queries are ordered). An edited store (a forged or removed evidence row) fails that run.

>>> cells = [c.cell_type for c in notebook_for(":memory:").cells]
>>> cells[:3]
['markdown', 'code', 'markdown']
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from probebook.errors import AssistantError, ProbebookError, one_line
from probebook.evidence.schema import PREFIX_TABLE, sql_list
from probebook.session import Investigation

from .model import Incident, Verdict
from .postmortem_cells import recorded

__all__ = ["write_postmortem", "notebook_for"]


def _md(text: str) -> Any:
    import nbformat

    return nbformat.v4.new_markdown_cell(text.strip())


def _code(source: str, note: str = "") -> Any:
    import nbformat

    cell = nbformat.v4.new_code_cell(source.strip())
    if note:  # nbval compares every output except one tagged with why it cannot be stable
        cell.metadata["tags"] = ["nbval-ignore-output"]
        cell.metadata["nbval_reason"] = note
    return cell


def notebook_for(store: str, verdict_id: Optional[str] = None, store_ref: Optional[str] = None) -> Any:
    """The postmortem notebook (unexecuted) of the investigation saved at `store`. `store_ref`: how its cells
    name the file (default: `store` as given)."""
    import nbformat

    inv = Investigation() if store == ":memory:" else Investigation.open(store)
    try:
        incident, verdict = recorded(inv, verdict_id)
        tables = set(inv.store.tables())
        counts = {t: inv.store.count(t) for t in ("alerts", "metric_series", "probes", "assistant_hypotheses",
                                                  "assistant_actions", "assistant_fix_validations") if t in tables}
    finally:
        inv.close()
    title = incident.title if incident else "an investigation"
    ref = store_ref or store
    cells = [_md(_summary(title, incident, verdict, ref)),
             _code(f"from probebook.assistant.postmortem_cells import cited, fix_replays, gate_again, onset_chart, readable\n"
                   f"from probebook.session import Investigation\n\nreadable()\ninv = Investigation.open({ref!r})")]
    cells += _impact(counts)
    cells += [_md("## Timeline\n\nEvery step of the investigation, with the id of what it rests on (`ref`)."),
              _code('inv.sql("SELECT ts, source, text, ref FROM timeline ORDER BY ts, evidence_id")')]
    cells += _cause(verdict, incident)
    if counts.get("assistant_hypotheses") and incident is not None:
        cells += [_md("## Hypotheses\n\nWhat was tested for this incident, and how it stood at the end."),
                  _code('inv.sql("SELECT evidence_id, status, service, locus, statement FROM assistant_hypotheses '
                        f'WHERE incident = {sql_list([incident.id])} ORDER BY ts, evidence_id")')]
    cells += [_md("## What was done\n\nThe probes placed (read-only; each removed at the end or by its TTL)."),
              _code('inv.sql("SELECT alias, kind, service, location, placed_at FROM probes ORDER BY placed_at, '
                    'alias")')]
    if counts.get("assistant_actions"):
        cells += [_md("Containment: each action proposed and decided (approved or refused, audited), what was done "
                      "and what the symptom check after it saw (the alert's query, the proof's probe again)."),
                  _code('inv.sql("SELECT evidence_id, ts, action, service, decision, outcome, body ->> \'$.headline\' '
                        'AS what FROM assistant_actions ORDER BY ts, evidence_id")')]
    else:
        cells.append(_md("No containment action was taken through probebook in this investigation."))
    if counts.get("assistant_fix_validations"):
        cells += [_md("## Fix validation\n\nEach candidate fix, and whether it held when the calls production made "
                      "were run again from the running code and from the fixed code (a child process on fresh "
                      "copies; never in the service):"),
                  _code('inv.sql("SELECT evidence_id, ts, validated, summary FROM assistant_fix_validations ORDER BY '
                        'ts, evidence_id")'),
                  _md("Call by call: the answer before the fix and after it."),
                  _code("fix_replays(inv)")]
    cells.append(_md(_follow_ups(verdict)))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["probebook"] = {"postmortem_of": ref, "verdict": verdict.id if verdict else None}
    return nb


def _summary(title: str, incident: Optional[Incident], verdict: Optional[Verdict], ref: str) -> str:
    lines = [f"# Postmortem: {title}", ""]
    if incident is not None and incident.text:
        lines += [f"> {one_line(incident.text, 300)}", ""]
    if verdict is None:
        lines += ["No verdict was recorded in this investigation."]
    else:
        lines += [f"**Verdict: {verdict.kind}** on `{verdict.service}` at `{verdict.locus or '-'}`.", "",
                  verdict.cause or "(no cause stated)", ""]
        if verdict.predicate is not None:
            lines += [f"Claim: `{verdict.predicate.describe()}`, shown by {len(verdict.evidence)} events captured "
                      f"in this investigation."]
        if verdict.reasons:
            lines += ["", "The gate said: " + "; ".join(verdict.reasons[:5])]
    lines += ["", f"Every cell below reads the saved investigation `{ref}` (read-only): run it again and it "
                  f"must show the same."]
    return "\n".join(lines)


def _impact(counts: Dict[str, int]) -> List[Any]:
    out = [_md("## Impact\n\nThe alerts that opened or joined the incident, and the metric behind them.")]
    if counts.get("alerts"):
        out.append(_code('inv.sql("SELECT name, service, severity, status, summary, first_seen, last_seen FROM '
                         'alerts ORDER BY first_seen, name")'))
    else:
        out.append(_md("No alert was recorded in this investigation (it started from a report)."))
    if counts.get("metric_series"):
        out.append(_code("onset_chart(inv)", note="a plotly figure: its HTML holds a random element id"))
    return out


def _cause(verdict: Optional[Verdict], incident: Optional[Incident]) -> List[Any]:
    if verdict is None:
        return []
    out = [_md(f"## Root cause\n\n**{verdict.kind}**: {verdict.cause or '(no cause stated)'}\n\n"
               f"The evidence the verdict cites, as it was captured:")]
    tables = sorted({PREFIX_TABLE[e.split(':', 1)[0]] for e in verdict.evidence if e.split(':', 1)[0] in PREFIX_TABLE})
    if tables:
        out.append(_code(f"cited(inv, {verdict.evidence[:200]!r})"))
    if verdict.kind in ("proven", "outside", "no-fault") and incident is not None:
        out += [_md("The proof gate, run again on the saved evidence (it must still say the same):"),
                _code(f"gate_again(inv, {verdict.id!r})")]
    return out


def _follow_ups(verdict: Optional[Verdict]) -> str:
    lines = ["## Follow-ups", ""]
    if verdict is not None and verdict.mitigation:
        lines.append(f"- Mitigation: {verdict.mitigation}")
    if verdict is not None and verdict.check:
        lines.append(f"- Check that the fix holds: {verdict.check}")
    lines.append("- Add a runbook step or an alert for this cause where one was missing.")
    return "\n".join(lines)


def write_postmortem(store: str, out: str, verdict_id: Optional[str] = None, execute: bool = True,
                     timeout: int = 120) -> str:
    """Write the postmortem notebook of the investigation saved at `store` to `out` (executed, so it opens
    with its outputs, unless `execute` is False); returns `out`. A store that cannot be read, or a cell that
    fails when run, is an `AssistantError` in one line (the notebook is written anyway, for a look)."""
    import nbformat

    folder = os.path.dirname(os.path.abspath(out))
    ref = os.path.relpath(os.path.abspath(store), folder) if store != ":memory:" else store
    try:
        nb = notebook_for(store, verdict_id, ref)
    except ProbebookError as exc:
        raise AssistantError(f"postmortem: {one_line(exc)}") from None
    failed = ""
    if execute:
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError

        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
        except CellExecutionError as exc:
            failed = one_line(str(exc).strip().splitlines()[-1] if str(exc).strip() else exc, 300)
        except Exception as exc:  # noqa: BLE001 - no kernel, a dead kernel, a cell past its timeout
            failed = f"{type(exc).__name__}: {one_line(exc, 280)}"
    nbformat.write(nb, out)
    if failed:
        raise AssistantError(f"postmortem: a cell failed when run ({failed}); the notebook is at {out}")
    return out
