"""The snapshot viewer: stack frames, an expandable tree of expressions, arguments and locals,
markers where capture cut or redacted a value, and "copy as JSON".

>>> viewer = SnapshotViewer(inv.snapshot("shop", "cart.py:42", ["cart.total"]))   # doctest: +SKIP
>>> viewer.result.values                                                          # doctest: +SKIP
[{'cart.total': 41.5}]
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, List

from probebook.session import SnapshotResult

from .base import HtmlPanel
from .render import esc, json_text, node_html, node_text, panel

__all__ = ["SnapshotViewer"]

_SECTIONS = ("expressions", "arguments", "locals")
_SHORT = {"expressions": "expr", "arguments": "arg", "locals": "local"}


class SnapshotViewer(HtmlPanel):
    """Shows a `SnapshotResult` (static: a snapshot does not change once taken)."""

    def __init__(self, result: SnapshotResult) -> None:
        super().__init__()
        self.result = result
        self.copy_json = [json_text(self._record(i)) for i in range(len(result.snapshots))]
        self.html = self._render()

    @property
    def values(self) -> List[Dict[str, Any]]:
        return self.result.values

    def to_json(self, index: int = 0) -> str:
        """What "copy as JSON" copies for snapshot `index`."""
        return self.copy_json[index]

    def _record(self, i: int) -> Dict[str, Any]:
        eids = self.result.evidence_ids
        return {"evidence_id": eids[i] if i < len(eids) else None, "service": self.result.service,
                **self.result.snapshots[i]}

    def _title(self) -> str:
        r = self.result
        got = len(r.snapshots)
        head = f"snapshot {r.alias} at {r.where} on {r.service}"
        if r.timed_out:
            return f"{head}: {got} arrived before the wait ended (the probe was removed)"
        return f"{head}: {got} snapshot{'s' if got != 1 else ''}"

    def _render(self) -> str:
        parts = []
        for i, snap in enumerate(self.result.snapshots):
            when = datetime.datetime.fromtimestamp(float(snap.get("ts") or 0)).isoformat(sep=" ", timespec="milliseconds")
            eid = self.result.evidence_ids[i] if i < len(self.result.evidence_ids) else ""
            head = (f'<div><b>#{i + 1}</b> {esc(snap.get("function", ""))} at {esc(snap.get("file", ""))}:'
                    f'{esc(snap.get("line", ""))} <span class="pb-note">{esc(when)} · thread '
                    f'{esc(snap.get("thread", ""))} · {esc(eid)}</span> <button data-copy="{i}">copy as JSON</button></div>')
            sections = []
            for name in _SECTIONS:
                values = snap.get(name) or {}
                if values:
                    items = "".join(node_html(k, v) for k, v in values.items())
                    sections.append(f"<details open><summary>{name} ({len(values)})</summary><ul>{items}</ul></details>")
            sections.append(self._stack_html(snap.get("stack") or []))
            parts.append(f'<div class="pb-snapshot">{head}{"".join(sections)}</div>')
        if not parts:
            parts.append('<div class="pb-note">no snapshot arrived: is the line reached? is --when ever true?</div>')
        return panel(self._title(), "".join(parts), "snapshot")

    @staticmethod
    def _stack_html(stack: List[Dict[str, Any]]) -> str:
        frames = "".join(f"<li>{esc(f.get('function', ''))} <span class=\"pb-note\">{esc(f.get('file', ''))}:"
                         f"{esc(f.get('line', ''))}</span></li>" for f in stack)
        omitted = stack[-1].get("frames_omitted") if stack else 0
        more = f'<li class="pb-note">{int(omitted)} more frames not captured</li>' if omitted else ""
        return f"<details><summary>stack ({len(stack)} frames)</summary><ol>{frames}{more}</ol></details>"

    def text(self) -> str:
        lines = [self._title()]
        for i, snap in enumerate(self.result.snapshots):
            lines.append(f"#{i + 1} {snap.get('function', '')} at {snap.get('file', '')}:{snap.get('line', '')}")
            for name in _SECTIONS:
                for key, node in (snap.get(name) or {}).items():
                    lines.append(f"  {_SHORT[name]:<5} {key} = {node_text(node)}")
        return "\n".join(lines)
