"""The probe panel: status, health, hits, rate, TTL countdown and last value of each probe, with
remove and extend buttons; live through the `LivePublisher`, static HTML everywhere else.

>>> panel = ProbePanel(board, ["tot"], actions={"remove": inv.remove})    # doctest: +SKIP
>>> panel.rows[0].hits                                                   # doctest: +SKIP
12
>>> panel.plot()          # a metric probe's values over time (plotly)     # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import polars as pl

from probebook.errors import ProbebookError, one_line
from probebook.protocol.kinds import ACTIVE, ENDED, Status

from .base import HtmlPanel
from .probe_board import RATE_WINDOW, ProbeBoard, ProbeRow
from .publisher import LiveView
from .render import badge, esc, fmt_seconds, panel, short_where, table

__all__ = ["ProbePanel"]

_LIVE = ACTIVE | {Status.PENDING, "placed"}  # "placed": asked for, no word from the agent yet
_HEADERS = ["probe", "where", "status", "hits", f"rate ({RATE_WINDOW:g} s)", "TTL", "last value", ""]


class ProbePanel(HtmlPanel, LiveView):
    """Rows of `board` (all probes, or only `aliases`). `actions` maps a button (`remove`,
    `extend`) to a call taking the alias; what it raises is shown in the panel, not raised."""

    def __init__(self, board: ProbeBoard, aliases: Optional[Sequence[str]] = None,
                 actions: Optional[Dict[str, Callable[[str], Any]]] = None,
                 poke: Optional[Callable[[], None]] = None, title: str = "") -> None:
        super().__init__()
        self.board = board
        self.aliases = list(aliases) if aliases is not None else None
        self.title = title or ("probes" if self.aliases is None else "probe " + ", ".join(self.aliases))
        self.notice = ""
        self.rows: List[ProbeRow] = []
        self._signature: Any = None
        self._poke = poke or (lambda: None)
        for name, fn in (actions or {}).items():
            self.on_action(name, self._guarded(name, fn))
        board.poll(force=True)
        self.apply(self.compute(time.time()) or {})

    # ------------------------------------------------------------------ live
    def compute(self, now: float) -> Optional[Dict[str, Any]]:
        self.board.poll(now)
        rows = self.board.rows(self.aliases, now)
        live = any(r.status in _LIVE for r in rows)
        # a live panel says when it was last true ("as of"), so a saved notebook does not claim more
        signature = (tuple((r.alias, r.status, r.health, r.hits, r.rate, round(r.expires_at), r.last, r.reason,
                            r.declined, r.emitted) for r in rows), self.notice, int(now) if live else None)
        self.rows = rows
        if signature == self._signature:
            return None
        self._signature = signature
        # final: every probe it shows has ended; a panel of all probes (`%probe ls`) may get new ones
        final = self.aliases is not None and bool(rows) and all(r.status in ENDED for r in rows)
        return {"html": self._render(rows, now), "final": final}

    def say(self, text: str) -> None:
        """Show `text` under the rows now (from the kernel's thread: a partial placement, say)."""
        self.notice = text
        changes = self.compute(time.time())
        if changes:
            self.apply(changes)

    def _guarded(self, name: str, fn: Callable[[str], Any]) -> Callable[[str, str], None]:
        def run(_action: str, alias: str) -> None:
            try:
                fn(alias)
                self.notice = ""
            except ProbebookError as exc:  # shown where the click was; the kernel is not disturbed
                self.notice = f"{name} {alias}: " + one_line(exc, 300)
            self._poke()
        return run

    # ------------------------------------------------------------------ views
    def _render(self, rows: List[ProbeRow], now: float) -> str:
        cells, attrs = [], []
        for r in rows:
            live = r.status in _LIVE
            until = time.strftime("%H:%M:%S", time.gmtime(r.expires_at)) if r.expires_at else ""
            ttl = (f'<span class="pb-ttl" data-ttl="{max(0.0, r.expires_at - now):.0f}" title="until {until} UTC">'
                   f"{fmt_seconds(r.expires_at - now)}</span>") if r.expires_at and live else "—"
            buttons = "".join(f'<button data-action="{a}" data-alias="{esc(r.alias)}">{a}</button>'
                              for a in ("extend", "remove") if live and a in self._actions)
            status = badge(r.status) + (f' <span class="pb-note">{esc(r.reason)}</span>' if r.reason else "")
            if r.health != "ok":  # said only when it is not: a service that does not answer
                status += f'<div class="pb-health">{badge(r.health)}</div>'
            emitted = f"{r.emitted} emitted" if r.emitted is not None and r.hits - r.emitted > 1 else ""
            note = ", ".join(x for x in (emitted, r.declined) if x)
            rate = f'<span class="pb-rate" data-rate="{r.rate:g}">{r.rate:g}/s</span>' if r.rate is not None else "—"
            cells.append([
                f'<b>{esc(r.alias)}</b> <span class="pb-note">{esc(r.kind)}</span>',
                f"{esc(r.service)} · {short_where(r.where)}", status,
                f'<span class="pb-hits" data-hits="{r.hits}">{r.hits}</span>'
                + (f'<div class="pb-note pb-declined">{esc(note)}</div>' if note else ""), rate, ttl,
                f'<div class="pb-last" title="{esc(r.last)}">{esc(r.last)}</div>', buttons])
            attrs.append(f'data-alias="{esc(r.alias)}" data-status="{esc(r.status)}"')
        body = table(_HEADERS, cells, attrs) if rows else '<div class="pb-note">no probes yet: %probe log ...</div>'
        body = f'<div class="pb-scroll">{body}</div>'
        if self.notice:
            body += f'<div class="pb-note pb-notice">{esc(self.notice)}</div>'
        if any(r.status in _LIVE for r in rows):
            body += (f'<div class="pb-note pb-asof">as of {time.strftime("%H:%M:%S", time.gmtime(now))} UTC, '
                     f"refreshed while the kernel runs</div>")
        return panel(self.title, body, "probes")

    def text(self) -> str:
        lines = [self.title]
        for r in self.rows:
            ttl = fmt_seconds(r.expires_at - time.time()) if r.expires_at else "-"
            lines.append(f"  {r.alias}: {r.kind} {r.service} {r.where} {r.status} ({r.health}) hits={r.hits}"
                         + (f" ({r.declined})" if r.declined else "") + " "
                         f"rate={'-' if r.rate is None else format(r.rate, 'g') + '/s'} ttl={ttl} last={r.last[:60]!r}")
        return "\n".join(lines)

    def frame(self) -> pl.DataFrame:
        """The rows as a polars frame (what the panel shows, as data)."""
        return pl.DataFrame([vars(r) for r in self.rows]) if self.rows else pl.DataFrame()

    def plot(self) -> Any:
        """A plotly figure of this panel's metric probes over time (one line per instance)."""
        from .plots import investigation_marks, metric_figure

        names, units = [], set()
        for rec in list(self.board.inv.records.values()):
            if rec.kind == "metric" and (self.aliases is None or rec.alias in self.aliases):
                metric = rec.spec.get("metric") or {}
                names.append((rec.service, metric.get("name") if isinstance(metric, dict) else str(metric), rec))
                units.add(str(metric.get("unit") or "") if isinstance(metric, dict) else "")
        if not names:
            raise ValueError(f"{self.title}: no metric probe to plot; place one with %probe metric ...")
        frames = [self.board.inv.metric_frame(name).filter(pl.col("service") == service) for service, name, _ in names]
        frame = pl.concat(frames)
        # from the first probe's placement (or the onset, when earlier) to now
        placed = min(rec.placed_at for _, _, rec in names)
        marks = investigation_marks(self.board.inv.store)
        onset = [m[0].timestamp() for m in marks if m[1] == "onset" and hasattr(m[0], "timestamp")]
        start = min([placed] + onset)
        return metric_figure(frame, title=", ".join(n for _, n, _ in names), unit=units.pop() if len(units) == 1 else "",
                             marks=marks, x_range=(start - 1.0, time.time() + 1.0))
