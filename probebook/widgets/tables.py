"""Tables of evidence rendered for people: what every magic that answers rows shows (`%alerts`,
`%logs`, `%changes`, `%%sql`, the timeline, the assistant's cards and the postmortem notebook).

A frame is shown as HTML made for reading, never as polars' repr: columns ordered what, where, when,
then ids; times relative ("3m ago") with the absolute UTC time on hover; status and severity as
coloured badges; long text wrapped in full; ids shortened, the whole id shown (and selectable in one
click) on hover; numbers rounded alike with the unit their column name says; no dtype row, no quotes;
a row count and "showing N of M"; wide tables scroll inside the output instead of being clipped.

`EvidenceTable` is a `polars.DataFrame` (code that reads `frame = %alerts` keeps working) whose
notebook display is that HTML.

>>> import datetime as dt
>>> f = pl.DataFrame({"evidence_id": ["alert:0123456789abcdef0123"], "status": ["firing"], "n": [3]})
>>> [c for c in ordered(f.columns)]
['status', 'n', 'evidence_id']
>>> number(0.0123456, "duration_s"), number(1234567, "size_bytes"), number(2.5, "latency_ms"), number(0.25, "ratio")
('12.3 ms', '1.18 MiB', '2.50 ms', '25.0 %')
>>> utc = dt.timezone.utc
>>> ago(dt.datetime(2026, 1, 1, 12, 0, tzinfo=utc), now=dt.datetime(2026, 1, 1, 12, 3, 5, tzinfo=utc).timestamp())
'3m ago'
>>> short_id("alert:0123456789abcdef0123"), short_id("snap:orders:vm-5685-149dbe:107")
('alert:0123…ef0123', 'snap:orders:…:107')
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from typing import Any, List, Optional, Sequence

import polars as pl

from .render import ID_CSS, epoch, esc, tone_badge

__all__ = ["EvidenceTable", "frame_html", "ordered", "number", "ago", "short_id", "id_html", "TABLE_CSS"]

TABLE_CSS = """
.pb-table { max-width: 100%; overflow-x: auto; }
.pb-table.pb-table table { border-collapse: collapse; margin: 2px 0; font: 12px/1.45 var(--jp-ui-font-family, sans-serif); }
.pb-table.pb-table table th, .pb-table.pb-table table td { padding: 2px 8px; border-bottom: 1px solid var(--jp-border-color2, #ddd);
  text-align: left; vertical-align: top; }
.pb-table.pb-table table th { font-weight: 600; white-space: nowrap; }
.pb-table.pb-table table td.pb-num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.pb-table.pb-table table td.pb-text { white-space: pre-wrap; overflow-wrap: break-word; min-width: 20ch; max-width: 72ch; }
.pb-table.pb-table table td.pb-long { min-width: 36ch; }
.pb-table.pb-table table td.pb-when, .pb-table.pb-table table td.pb-idc { white-space: nowrap; }
.pb-table .pb-null, .pb-table .pb-count { color: var(--jp-ui-font-color2, #777); }
""" + ID_CSS

# column roles, by name: what happened, where, when, then the ids that cite it
_WHAT = ("alertname", "verdict", "status", "state", "name", "severity", "level", "health", "kind",
         "summary", "message", "text", "exc_type", "error", "value")
_WHERE = ("service", "instance", "instance_id", "job", "route", "where", "function", "file", "line", "series",
          "labels", "host", "target")
_WHEN = ("ts", "time", "at", "started", "ended", "ends", "starts_at", "ends_at", "started_at", "ended_at", "updated_at", "since", "first_seen",
         "last_seen", "placed_at", "removed_at")
_BADGED = {"status", "state", "severity", "level", "health", "verdict"}
_LONG_TEXT = {"summary", "message", "text", "description", "details", "fields", "error", "reason", "query", "labels",
              "annotations", "series"}


_PROVENANCE = ("source", "source_url", "query", "byte_offset", "labels", "fields", "details", "last_seen")


def _is_id(name: str) -> bool:
    return name in ("id", "ref", "fingerprint", "sha", "commit", "seq") or name.endswith(("_id", "_ids", "_ref"))


def _role(name: str) -> int:
    low = name.lower()
    if _is_id(low):
        return 5
    if low in _PROVENANCE:  # where the evidence came from: after when, before the ids
        return 4
    if low in _WHAT:
        return 0
    if low in _WHERE:
        return 2
    if low in _WHEN or low.endswith("_at"):
        return 3
    return 1  # a column we know nothing about: data, after what and before where


def ordered(columns: Sequence[str]) -> List[str]:
    """What, other data, where, when, where it came from, then ids; known "what" columns by importance,
    the rest as they came."""
    def key(item: Any) -> Any:
        i, name = item
        role = _role(name)
        return (role, _WHAT.index(name.lower()) if role == 0 else 0, i)
    return [name for _, name in sorted(enumerate(columns), key=key)]


# ---------------------------------------------------------------------- values
def _round(v: float) -> str:
    """Three significant figures, no exponent below a trillion: 0.0123, 1.23, 12.3, 123, 12,345."""
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    a = abs(v)
    if a >= 1e15:
        return f"{v:.3g}"
    if a >= 1000:
        return f"{v:,.0f}"
    digits = max(0, 2 - int(math.floor(math.log10(a))))
    return f"{v:.{digits}f}"


def number(value: Any, column: str = "") -> str:
    """A number with the unit its column's name says (`_s`/`_seconds`, `_ms`, `_ns`, `_bytes`, ratios)."""
    if isinstance(value, bool):
        return str(value).lower()
    name = column.lower()
    v = float(value)
    if name.endswith(("_seconds", "_s", "_secs")) or name in ("seconds", "duration", "elapsed"):
        return _round(v * 1000) + " ms" if abs(v) < 1 else _round(v) + " s"
    if name.endswith("_ms"):
        return _round(v) + " ms" if abs(v) < 1000 else _round(v / 1000) + " s"
    if name.endswith("_ns"):
        return _round(v / 1e6) + " ms"
    if name.endswith("_bytes") or name == "bytes":
        for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
            if abs(v) >= size:
                return _round(v / size) + " " + unit
        return f"{v:,.0f} B"
    if name.endswith(("_ratio", "ratio", "_share", "share")):
        return _round(v * 100) + " %"
    if name.endswith(("_pct", "_percent", "percent")):
        return _round(v) + " %"
    if isinstance(value, int):
        return str(value) if _is_label_number(name) else f"{value:,}"
    return _round(v)


def _is_label_number(name: str) -> bool:
    """A number that names something (a line, a port, a year, a status code), not an amount: no separators."""
    return name in ("line", "lineno", "port", "pid", "year", "code", "status", "offset", "byte_offset") or \
        name.endswith(("_line", "_port", "_pid", "_code", "_offset"))


def ago(value: Any, now: Optional[float] = None) -> str:
    """`12s ago`, `3m ago`, `2h ago`, `4d ago`, or `in 5m` for a time still to come."""
    t = epoch(value)
    if t is None:
        return str(value)
    delta = (time.time() if now is None else now) - t
    s = abs(delta)
    text = (f"{int(s)}s" if s < 60 else f"{int(s // 60)}m" if s < 3600 else f"{int(s // 3600)}h" if s < 86400
            else f"{int(s // 86400)}d")
    return f"{text} ago" if delta >= -0.5 else f"in {text}"


def _absolute(value: Any) -> str:
    t = epoch(value)
    if t is None:
        return str(value)
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def short_id(text: str, keep: int = 18) -> str:
    """An id short enough for a column, its kind and source kept: `snap:orders:…:107` (an evidence id:
    kind, service, instance, sequence), `alert:0123…ef0123` (a kind and a hash)."""
    if len(text) <= keep + 2:
        return text
    parts = text.split(":")
    if len(parts) >= 4 and len(parts[0]) + len(parts[1]) <= 24:
        return f"{parts[0]}:{parts[1]}:…:{parts[-1]}"
    head, sep, _ = text.partition(":")
    head = (head + sep) if sep and len(head) <= 12 else ""
    return f"{text[:len(head) + 4]}…{text[-6:]}"


def id_html(text: str) -> str:
    """An id shortened (`short_id`), the whole of it shown and selectable on hover."""
    short = short_id(text)
    if short == text:
        return f'<span class="pb-id">{esc(text)}</span>'
    return (f'<span class="pb-id" title="{esc(text)}"><span class="pb-id-short">{esc(short)}</span>'
            f'<span class="pb-id-full">{esc(text)}</span></span>')


def _cell(name: str, value: Any, now: float, clock: bool = False, badged: Sequence[str] = ()) -> str:
    """One cell (`<td>`); `clock`: times as HH:MM:SS.mmm instead of relative."""
    low = name.lower()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td><span class="pb-null">—</span></td>'
    if isinstance(value, (_dt.datetime, _dt.date)):
        if not isinstance(value, _dt.datetime):
            return f'<td class="pb-when">{esc(value.isoformat())}</td>'
        shown = _absolute(value)[11:23] if clock else ago(value, now)
        return f'<td class="pb-when"><span class="pb-ago" title="{esc(_absolute(value))}">{esc(shown)}</span></td>'
    if isinstance(value, _dt.timedelta):
        return f'<td class="pb-num">{esc(number(value.total_seconds(), "_s"))}</td>'
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if _is_id(low):  # a sequence number or an integer id: as it is
            return f'<td class="pb-num">{esc(value)}</td>'
        return f'<td class="pb-num">{esc(number(value, name))}</td>'
    if isinstance(value, (list, dict, tuple)):
        text = json.dumps(value, default=str, ensure_ascii=False)
        return f'<td class="pb-text">{esc(text)}</td>'
    text = str(value)
    if _is_id(low) or (low == "evidence" and ":" in text):
        return f'<td class="pb-idc">{id_html(text)}</td>'
    if (low in _BADGED or low in badged) and text and len(text) <= 40:
        return f"<td>{tone_badge(text)}</td>"
    if low in ("labels", "fields", "annotations") and text.startswith("{"):
        text = _pairs(text)
    if text.startswith(("http://", "https://")) and len(text) > 40:  # a link to the source, not its query
        shown = text.split("/")[2] + "/…"
        return f'<td><a href="{esc(text)}" title="{esc(text)}" target="_blank" rel="noopener">{esc(shown)}</a></td>'
    if len(text) > 80:
        return f'<td class="pb-text pb-long">{esc(text)}</td>'
    wide = low in _LONG_TEXT or len(text) > 40 or "\n" in text
    return f'<td class="pb-text">{esc(text)}</td>' if wide else f"<td>{esc(text)}</td>"


def _pairs(text: str) -> str:
    """A JSON object of labels as `k=v, k=v` (the text as it was when it is not one)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, dict):
        return text
    return ", ".join(f"{k}={v}" for k, v in value.items())


def frame_html(frame: pl.DataFrame, title: str = "", limit: int = 50, reorder: bool = True,
               now: Optional[float] = None, clock: bool = False, badged: Sequence[str] = (),
               newest: bool = False, max_columns: int = 60) -> str:
    """`frame` as a table for reading (see the module); `reorder=False` keeps the columns as given (a
    query's SELECT says what its author wants first); `clock`: times of day, not "3m ago" (a panel
    that is not redrawn every second); `badged`: more columns shown as badges; `newest`: a frame in
    time order shows its last `limit` rows, not its first."""
    now = time.time() if now is None else now
    names = list(frame.columns)
    columns = (ordered(names) if reorder else names)[:max_columns]
    index = [names.index(c) for c in columns]  # by position: a column named `*` or `^a$` is no pattern
    cut = frame.height > limit
    shown = (frame.tail(limit) if newest else frame.head(limit)) if cut else frame
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in shown.iter_rows() if columns else ():
        body.append("<tr>" + "".join(_cell(columns[j], row[i], now, clock, badged) for j, i in enumerate(index))
                    + "</tr>")
    n = f"{frame.height:,} row{'s' if frame.height != 1 else ''}"
    count = (f"showing the {'last' if newest else 'first'} {shown.height:,} of {n}" if cut else n) + (
        f", {len(columns)} of {len(names)} columns" if len(columns) < len(names) else "")
    caption = (f'<div class="pb-title">{esc(title)} <span class="pb-count">{count}</span></div>' if title
               else f'<div class="pb-count">{count}</div>')
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>" if columns else ""
    return f'<style>{TABLE_CSS}</style><div class="pb-table">{caption}{table}</div>'


class EvidenceTable(pl.DataFrame):
    """A polars DataFrame shown as `frame_html` in a notebook (its text form stays polars')."""

    _pb_title = ""
    _pb_reorder = True
    _pb_newest = False

    @classmethod
    def of(cls, frame: pl.DataFrame, title: str = "", reorder: bool = True, newest: bool = False) -> "EvidenceTable":
        """`newest`: the frame is in time order and its last rows matter most (log lines, changes)."""
        table = cls._from_pydf(frame._df)
        table._pb_title, table._pb_reorder, table._pb_newest = title, reorder, newest
        return table

    def _repr_html_(self, **_kwargs: Any) -> str:
        return frame_html(self, self._pb_title, reorder=self._pb_reorder, newest=self._pb_newest)

