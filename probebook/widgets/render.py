"""HTML and text for every panel, rendered in Python once and used twice: as the live widget's
content and as the static fallback that nbconvert and GitHub show.

Everything that came from a service is escaped: captured values are the target's data, never markup.

>>> node_text({"type": "str", "not_captured": "redacted"})
'<redacted>'
>>> node_text({"type": "list", "elements": [{"type": "int", "value": 1}], "size": 40, "truncated": True})
'list[40] (truncated)'
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from typing import Any, Iterable, List, Mapping, Optional, Sequence

from probebook.protocol.capture_tree import children, cut, has_value, size

__all__ = ["CSS", "esc", "table", "badge", "node_text", "node_html", "fmt_seconds", "panel", "json_text", "tone_badge", "short_where", "epoch"]

ID_CSS = """
.pb-id { font-family: var(--jp-code-font-family, monospace); }
.pb-id .pb-id-full { display: none; user-select: all; }
.pb-id:hover .pb-id-short { display: none; }
.pb-id:hover .pb-id-full { display: inline; }
"""

CSS = ID_CSS + """
.pb-panel { font: 12px/1.45 var(--jp-code-font-family, ui-monospace, monospace); color: var(--jp-ui-font-color1, #222); }
.pb-panel table { border-collapse: collapse; margin: 2px 0; }
.pb-panel.pb-panel table th, .pb-panel.pb-panel table td { padding: 2px 8px; border-bottom: 1px solid var(--jp-border-color2, #ddd); text-align: left;
  vertical-align: top; }
.pb-panel.pb-panel table th { font-weight: 600; white-space: nowrap; }
.pb-title { font-weight: 600; margin: 2px 0 4px; }
.pb-note { color: var(--jp-ui-font-color2, #666); }
.pb-mark { display: inline-block; padding: 0 4px; border-radius: 3px; background: #eee; color: #6a3d9a; font-size: 11px; }
.pb-panel details > summary { cursor: pointer; }
.pb-panel ul { list-style: none; margin: 0; padding-left: 16px; }
.pb-panel button { font-size: 11px; margin-right: 4px; cursor: pointer; }
.pb-declined { font-size: 11px; max-width: 170px; }
.pb-last { max-width: 200px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.pb-scroll { max-width: 100%; overflow-x: auto; }
.pb-verdict { border: 1px solid var(--jp-border-color1, #bbb); border-radius: 4px; padding: 4px 8px; margin: 6px 0; }
.pb-verdict th { white-space: nowrap; }
.pb-sql { margin: 2px 0; padding: 4px 6px; background: var(--jp-layout-color2, #f4f4f4); white-space: pre-wrap;
  user-select: all; }
"""

_BAD = {"error", "disabled", "down", "failed", "unhealthy", "refused"}
# inline styles, so a badge keeps its colour where no stylesheet goes (progress lines, GitHub)
_COLOURS = {"pb-ok": ("#dff3e2", "#17612a"), "pb-warn": ("#fff1cc", "#7a5200"), "pb-bad": ("#fbdada", "#8a1111")}
_WARN = {"expired", "removed", "pending", "degraded", "unknown", "waiting", "timed out",
         # the assistant: anything short of a verdict the proof gate let through
         "starting", "running", "stopping", "stopped", "open", "supported", "refuted", "likely", "inconclusive"}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# words a table's status, severity or level column holds (alerts, logs, verdicts)
_TABLE_BAD = _BAD | {"firing", "critical", "fatal", "page", "emergency", "alert", "err", "refuted"}
_TABLE_WARN = {"warning", "warn", "ticket", "pending", "degraded", "unknown", "expired", "suppressed", "inconclusive",
               "likely", "supported", "waiting", "timed out"}
_TABLE_OK = {"ok", "resolved", "healthy", "up", "emitting", "inactive", "proven", "success", "passed", "done"}


def _badge(cls: str, text: str) -> str:
    bg, fg = _COLOURS.get(cls, ("#ececec", "#333"))  # pb-plain: grey
    return (f'<span class="pb-badge {cls}" style="display:inline-block;padding:0 5px;border-radius:3px;'
            f'background:{bg};color:{fg}">{esc(text)}</span>')


def badge(text: str, default: str = "pb-ok") -> str:
    """A status word coloured by what it means (ok, a warning, a failure; else `default`)."""
    words = set(str(text).replace("/", " ").split())
    cls = "pb-bad" if words & _BAD else "pb-warn" if words & _WARN else default
    return _badge(cls, text)


def tone_badge(text: str) -> str:
    """A badge for a value of a table's status, severity or level column: red for firing, critical and
    error, amber for warnings and pending, green for resolved and ok, grey for any other word (info)."""
    words = set(str(text).lower().replace("/", " ").split())
    cls = ("pb-bad" if words & _TABLE_BAD else "pb-warn" if words & _TABLE_WARN else
           "pb-ok" if words & _TABLE_OK else "pb-plain")
    return _badge(cls, text)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], attrs: Optional[List[str]] = None) -> str:
    """A table of cells that are already HTML; `attrs` adds attributes to each row."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        extra = f" {attrs[i]}" if attrs else ""
        body.append(f"<tr{extra}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def panel(title: str, body: str, kind: str) -> str:
    """The outer box every widget shares (one class per widget kind, for styling and tests)."""
    return f'<div class="pb-panel pb-{kind}"><div class="pb-title">{esc(title)}</div>{body}</div>'


def short_where(where: str) -> str:
    """``/srv/app/shop/orders.py:Cart.total`` as ``…/shop/orders.py:Cart.total`` (the whole in its title), as HTML."""
    path, sep, rest = where.rpartition(":")
    parts = path.replace("\\", "/").split("/")
    if not sep or len(parts) <= 3:
        return esc(where)
    return f'<span title="{esc(where)}">…/{esc("/".join(parts[-2:]))}:{esc(rest)}</span>'


def epoch(value: Any) -> Optional[float]:
    """Seconds since the epoch of a datetime or an ISO 8601 text, naive ones read as UTC (as the
    evidence store writes them); None for anything else."""
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, _dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)).timestamp()
    return None


def fmt_seconds(seconds: float) -> str:
    """`2m05s`, `45s`, `1h02m`."""
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


# ---------------------------------------------------------------------- captured values
# the nodes are read through `probebook.protocol.capture_tree`; only the markup is here
def node_text(node: Any, limit: int = 80) -> str:
    """One short line for a captured value (docs/capture.md node format)."""
    if not isinstance(node, Mapping):
        return str(node)[:limit]
    kind = str(node.get("type", "?"))
    if node.get("not_captured") and "size" not in node:
        return f"<{cut(node)}>"
    if has_value(node):
        value = node["value"]
        text = repr(value) if isinstance(value, str) and kind == "str" else str(value)
        if node.get("enum"):
            text = f"{kind}.{node['enum']}"
        text = text if len(text) <= limit else text[: limit - 1] + "…"
        return text + (" (truncated)" if node.get("truncated") else "")
    if "summary" in node:
        return f"<{kind} {node['summary']}>"
    mark = cut(node)
    return f"{kind}[{size(node)}]" + (f" ({mark})" if mark else "")


def _key_text(key: Any) -> str:
    return node_text(key, 40)


def node_html(name: str, node: Any, open_levels: int = 1) -> str:
    """An expandable tree (native <details>, so it also works without JavaScript)."""
    label = f"<b>{esc(name)}</b>"
    if not isinstance(node, Mapping):
        return f"<li>{label} = {esc(node)}</li>"
    kind = esc(node.get("type", "?"))
    mark = cut(node)
    mark_html = f' <span class="pb-mark">{esc(mark)}</span>' if mark else ""
    kids = children(node, _key_text)
    if not kids:
        return f'<li>{label}: <span class="pb-note">{kind}</span> = {esc(node_text(node, 200))}{mark_html}</li>'
    inner = "".join(node_html(k, v, open_levels - 1) for k, v in kids)
    opened = " open" if open_levels > 0 else ""
    return (f"<li><details{opened}><summary>{label}: <span class=\"pb-note\">{esc(node_text(node))}</span>"
            f"{mark_html}</summary><ul>{inner}</ul></details></li>")


def json_text(value: Any) -> str:
    """Pretty JSON for "copy as JSON"."""
    return json.dumps(value, indent=2, default=str, sort_keys=False)
