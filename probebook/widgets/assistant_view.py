"""The assistant's live view (`%%assistant`, `%investigate`): the steps as they happen, the hypotheses
with their status, the probes it placed with their event counts, then the verdict card: kind,
service, locus, cause, the predicate in words, the reasons, what to do and how to check it, and the
cited evidence ids with the `%%sql` query that selects them. A Stop button while it runs.

>>> evidence_sql(["snap:shop:i1:4", "snap:shop:i1:9", "exc:shop:i1:2"])
["SELECT * FROM snapshots WHERE evidence_id IN ('snap:shop:i1:4', 'snap:shop:i1:9')", \
"SELECT * FROM exceptions WHERE evidence_id IN ('exc:shop:i1:2')"]
>>> view = AssistantView(AssistantRun(Assistant(inv), "checkout 502s").start(), board)   # doctest: +SKIP
>>> view.run.wait(); view.refresh(); view.verdict.kind                                  # doctest: +SKIP
'proven'
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from probebook.assistant.background import AssistantRun
from probebook.assistant.model import Hypothesis, Verdict
from probebook.evidence.schema import KIND_TABLE, sql_list

from .base import HtmlPanel
from .probe_board import ProbeBoard, ProbeRow
from .publisher import LiveView
from .render import badge, esc, fmt_seconds, panel, short_where, table
from .tables import id_html

__all__ = ["AssistantView", "evidence_sql", "compact_steps"]

_TABLE_OF = {prefix: table for table, prefix in KIND_TABLE.values()}
_SHOWN_STEPS = 15
_SHOWN_IDS = 12
_DIGITS = re.compile(r"\d+(?:\.\d+)?")


def evidence_sql(ids: Sequence[str]) -> List[str]:
    """One ``SELECT`` per evidence table holding the cited `ids` (ids of other sources are left out)."""
    by_table: Dict[str, List[str]] = {}
    for eid in dict.fromkeys(ids):
        table = _TABLE_OF.get(eid.split(":", 1)[0])
        if table is not None:
            by_table.setdefault(table, []).append(eid)
    return [f"SELECT * FROM {t} WHERE evidence_id IN ({sql_list(q)})" for t, q in by_table.items()]


def compact_steps(steps: Sequence[Tuple[float, str]]) -> List[Tuple[float, str, int]]:
    """Consecutive steps that differ only in their numbers ("wait_events: 2 events of snap3", then
    "3 events") collapse into the newest, with how many they were."""
    out: List[Tuple[float, str, int]] = []
    shape = None
    for ts, line in steps:
        this = _DIGITS.sub("#", line)
        if out and this == shape:
            out[-1] = (ts, line, out[-1][2] + 1)
        else:
            out.append((ts, line, 1))
        shape = this
    return out


class AssistantView(HtmlPanel, LiveView):
    """Shows `run` (an `AssistantRun`); `board` gives the probes' event counts. The Stop button and
    `stop()` ask the assistant to stop; `poke` asks the publisher for a refresh now."""

    def __init__(self, run: AssistantRun, board: ProbeBoard, poke: Optional[Callable[[], None]] = None,
                 title: str = "", check_interval: float = 1.0) -> None:
        super().__init__()
        self.run = run
        self.board = board
        self.title = title or f"assistant: {run.title or _first_line(run.text) or 'the alerts firing'}"
        self.check_interval = check_interval
        self.probe_rows: List[ProbeRow] = []
        self.hypotheses: List[Hypothesis] = []
        self._checked = 0.0
        self._signature: Any = None
        self._poke = poke or (lambda: None)
        self.on_action("stop", lambda _action, _alias: self.stop())
        run.on_change(self._poke)
        self.refresh()

    @property
    def verdict(self) -> Optional[Verdict]:
        return self.run.verdict

    def stop(self) -> None:
        self.run.stop()
        self._poke()

    # ------------------------------------------------------------------ live
    def compute(self, now: float) -> Optional[Dict[str, Any]]:
        run = self.run
        done = run.done  # read once: what is drawn below is at least this far along
        aliases = [r.alias for r in run.probes()]
        if aliases:
            self.board.poll(now)
            self.probe_rows = self.board.rows(aliases, now)
        if done or now - self._checked >= self.check_interval:
            self._checked = now
            self.hypotheses = run.hypotheses()
        steps = run.steps()
        signature = (run.state, done, len(steps), int(run.seconds), len(self.hypotheses),
                     tuple((h.statement, h.status) for h in self.hypotheses),
                     tuple((r.alias, r.status, r.hits) for r in self.probe_rows), run.error)
        if signature == self._signature:
            return None
        self._signature = signature
        return {"html": self._render(steps), "final": done}

    def refresh(self) -> None:
        """Draw the current state now, from the calling thread (the kernel's, while a cell waits)."""
        changes = self.compute(time.time())
        if changes:
            self.apply(changes)

    # ------------------------------------------------------------------ views
    def _render(self, steps: List[Tuple[float, str]]) -> str:
        run = self.run
        state = run.state
        head = (f'<div class="pb-run" data-state="{esc(state)}">{badge(state)} {fmt_seconds(run.seconds)}, '
                f"{len(steps)} steps, {len(self.probe_rows)} probes placed")
        if not run.done:
            head += ' <button data-action="stop">Stop</button>' if state != "stopping" else \
                ' <span class="pb-note">stopping: the assistant removes its probes</span>'
        head += "</div>"
        if run.done:  # the answer first; how it got there below, the steps folded
            parts = [head, self._verdict_html(), self._hypotheses_html(), self._probes_html(),
                     self._steps_html(steps, opened=False)]
        else:
            parts = [head, self._steps_html(steps, opened=True), self._hypotheses_html(), self._probes_html()]
        return panel(self.title, "".join(parts), "assistant")

    def _steps_html(self, steps: List[Tuple[float, str]], opened: bool) -> str:
        items = compact_steps(steps)
        hidden = len(items) - _SHOWN_STEPS
        lines = [f'<li><span class="pb-note">+{fmt_seconds(ts - self.run.started_at)}</span> {esc(line)}'
                 + (f' <span class="pb-note">(×{n})</span>' if n > 1 else "") + "</li>"
                 for ts, line, n in items[-_SHOWN_STEPS:]]
        more = f'<li class="pb-note">… {hidden} earlier steps</li>' if hidden > 0 else ""
        body = f'<ul class="pb-steps">{more}{"".join(lines)}</ul>' if lines else \
            '<div class="pb-note">starting…</div>'
        return f"<details{' open' if opened else ''}><summary>steps ({len(steps)})</summary>{body}</details>"

    def _hypotheses_html(self) -> str:
        if not self.hypotheses:
            return ""
        rows = [[badge(h.status), esc(h.statement), " · ".join(x for x in (esc(h.service), short_where(h.locus)) if x),
                 f'<span class="pb-note">{len(h.evidence)}</span>'] for h in self.hypotheses]
        return '<div class="pb-hypotheses">' + table(["status", "hypothesis", "where", "evidence"], rows) + "</div>"

    def _probes_html(self) -> str:
        if not self.probe_rows:
            return ""
        rows = [[f"<b>{esc(r.alias)}</b>", esc(r.kind), short_where(r.where), badge(r.status),
                 f'<span class="pb-hits" data-hits="{r.hits}">{r.hits}</span>'] for r in self.probe_rows]
        attrs = [f'data-alias="{esc(r.alias)}"' for r in self.probe_rows]
        return '<div class="pb-assistant-probes">' + table(["probe", "kind", "where", "status", "events"], rows,
                                                           attrs) + "</div>"

    def _verdict_html(self) -> str:
        v, run = self.run.verdict, self.run
        if v is None:
            return (f'<div class="pb-verdict" data-kind="failed">{badge("failed")} the assistant stopped with an '
                    f'error: {esc(run.error or "no verdict")}</div>')
        where = " · ".join(esc(x) for x in (v.service, v.locus) if x)
        fields: List[Tuple[str, str]] = [("cause", esc(v.cause))]
        if v.predicate is not None:
            fields.append(("predicate", esc(v.predicate.describe())))
        if v.boundary_locus:
            fields.append(("boundary", esc(" · ".join(x for x in (v.boundary_service, v.boundary_locus) if x))))
        fields += [(name, esc(text)) for name, text in (("mitigation", v.mitigation), ("check", v.check)) if text]
        if v.reasons:
            fields.append(("reasons", "<ul>" + "".join(f"<li>{esc(r)}</li>" for r in v.reasons) + "</ul>"))
        if v.evidence:
            ids = ", ".join(f'<code class="pb-eid">{id_html(e)}</code>' for e in v.evidence[:_SHOWN_IDS])
            more = len(v.evidence) - _SHOWN_IDS
            fields.append(("evidence", ids + (f' <span class="pb-note">and {more} more</span>' if more > 0 else "")))
        rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in fields)
        queries = evidence_sql(v.evidence)
        sql = ""
        if queries:
            sql = ('<div class="pb-note">the cited evidence, in a new cell:</div><pre class="pb-sql">'
                   + esc("\n\n".join("%%sql\n" + q for q in queries)) + "</pre>")
        stopped = ' <span class="pb-note">(stopped)</span>' if run.state == "stopped" else ""
        return (f'<div class="pb-verdict" data-kind="{esc(v.kind)}"><div class="pb-title">{badge(v.kind)} '
                f"{where}{stopped}</div><table><tbody>{rows}</tbody></table>{sql}"
                + f'<div class="pb-note">verdict {esc(v.id)}</div></div>')

    def text(self) -> str:
        run = self.run
        lines = [f"{self.title} [{run.state}, {fmt_seconds(run.seconds)}]"]
        lines += [f"  {line}" for _, line, _n in compact_steps(run.steps())[-5:]]
        if run.verdict is not None:
            lines.append(run.verdict.headline())
            lines += [f"  evidence: {', '.join(run.verdict.evidence)}"] if run.verdict.evidence else []
        elif run.error:
            lines.append(f"failed: {run.error}")
        return "\n".join(lines)


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")[:120]
