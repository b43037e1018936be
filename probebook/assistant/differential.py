"""Telling a bad value from a good one: the same variables captured on failing and on healthy calls,
and the claim that separates them (``fee > 0.3`` when every failing call has a larger rate than any
healthy one). Generic: numbers by range, anything else by captured type.

>>> separate([4, 9], [0.0, 0.2, 0.3])
('>', 0.3)
>>> separate([{"type": "str"}], [{"type": "float"}, {"type": "float"}], nodes=True)
('type', 'str')
>>> separate([1, 5], [2, 3]) is None
True
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from probebook.protocol.capture_tree import plain

__all__ = ["separate", "values_of"]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def separate(bad: Sequence[Any], good: Sequence[Any], nodes: bool = False) -> Optional[Tuple[str, Any]]:
    """(op, value) true of every `bad` value and of no `good` one; None when nothing separates them.
    With `nodes`, the values are captured nodes, compared by their captured type."""
    if not bad or not good:
        return None
    if nodes:
        bad_plain, good_plain = [plain(b) for b in bad], [plain(g) for g in good]
        if all(_num(v) for v in bad_plain + good_plain):  # numbers compare by value, whatever int or float
            return separate(bad_plain, good_plain)
        bad_types = {b.get("type") for b in bad if isinstance(b, dict)}
        good_types = {g.get("type") for g in good if isinstance(g, dict)}
        if len(bad_types) == 1 and not bad_types & good_types:
            return "type", next(iter(bad_types))
        bad, good = bad_plain, good_plain
    if all(_num(b) for b in bad) and all(_num(g) for g in good):
        if min(bad) > max(good):
            return ">", max(good)
        if max(bad) < min(good):
            return "<", min(good)
        return None
    bad_set = {repr(b) for b in bad}
    if len(bad_set) == 1 and not bad_set & {repr(g) for g in good}:
        return "==", bad[0]
    return None


def values_of(events: Sequence[dict], name: str) -> List[Any]:
    """The captured node of `name` in each event (expressions, then locals, then arguments)."""
    out = []
    for e in events:
        for part in ("expressions", "locals", "arguments"):
            node = (e.get(part) or {}).get(name)
            if node is not None:
                out.append(node)
                break
    return out
