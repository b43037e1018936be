"""Telling a bad value from a good one: the same variables captured on failing and on healthy calls,
and the claim that separates them (``fee > 0.3`` when every failing call has a larger rate than any
healthy one). Generic: numbers by range, anything else by captured type.

>>> separate([4, 9], [0.0, 0.2, 0.3])
('>', 0.3)
>>> separate([{"type": "str"}], [{"type": "float"}, {"type": "float"}], nodes=True)
('type', 'str')
>>> separate([1, 5], [2, 3]) is None
True
>>> separate(["eur", "usd"], ["EUR", "USD", "GBP"])      # text told apart by its shape
('matches', '^[a-z]{3}$')
"""

from __future__ import annotations

import re
from typing import Any, List, Optional, Sequence, Tuple

from probebook.protocol.capture_tree import plain

__all__ = ["is_number", "separate", "separate_items", "values_of", "seen_values", "shape", "captured"]


def is_number(v: Any) -> bool:
    """A number compared by value: an int or a float, not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def separate(bad: Sequence[Any], good: Sequence[Any], nodes: bool = False) -> Optional[Tuple[str, Any]]:
    """(op, value) true of every `bad` value and of no `good` one; None when nothing separates them.
    With `nodes`, the values are captured nodes, compared by their captured type."""
    if not bad or not good:
        return None
    if nodes:
        bad_plain, good_plain = [plain(b) for b in bad], [plain(g) for g in good]
        if all(is_number(v) for v in bad_plain + good_plain):  # numbers compare by value, whatever int or float
            return separate(bad_plain, good_plain)
        bad_types = {b.get("type") for b in bad if isinstance(b, dict)}
        good_types = {g.get("type") for g in good if isinstance(g, dict)}
        if len(bad_types) == 1 and not bad_types & good_types:
            return "type", next(iter(bad_types))
        bad, good = bad_plain, good_plain
    if all(is_number(b) for b in bad) and all(is_number(g) for g in good):
        if min(bad) > max(good):
            return ">", max(good)
        if max(bad) < min(good):
            return "<", min(good)
        return None
    if len(bad) >= 2 and all(isinstance(v, str) for v in list(bad) + list(good)):
        # the shape first: "lower-case codes fail" explains more than the one code seen failing
        bad_shapes = {shape(b) for b in bad}
        if len(bad_shapes) <= 3 and not bad_shapes & {shape(g) for g in good}:
            return "matches", "|".join(sorted(bad_shapes))
    bad_set = {repr(b) for b in bad}
    if len(bad_set) == 1 and not bad_set & {repr(g) for g in good}:
        return "==", bad[0]
    return None


def _items(node: Any) -> List[Tuple[int, Any]]:
    """(position, node) of the items of a captured list/tuple/set: a sequence item's own items by their
    position in it (a row's columns), a scalar item at position -1."""
    out: List[Tuple[int, Any]] = []
    for item in (node.get("elements") or []) if isinstance(node, dict) else []:
        inner = item.get("elements") if isinstance(item, dict) else None
        if isinstance(inner, list):
            out += [(j, x) for j, x in enumerate(inner) if isinstance(x, dict)]
        elif isinstance(item, dict):
            out.append((-1, item))
    return out


def separate_items(bad: Sequence[Any], good: Sequence[Any]) -> Optional[Tuple[str, str, int]]:
    """For captured collections that `separate` cannot tell apart as wholes: ("type", T, position) when
    every bad collection holds an item (or a row's column at `position`; -1 for the items themselves)
    of type T and no good one does.

    >>> row = lambda p: {"type": "tuple", "elements": [{"type": "str", "value": "sku"}, p]}
    >>> bad = [{"type": "list", "elements": [row({"type": "float", "value": 2.0}), row({"type": "str", "value": "9"})]}]
    >>> good = [{"type": "list", "elements": [row({"type": "float", "value": 1.5})]}] * 2
    >>> separate_items(bad, good)
    ('type', 'str', 1)
    """
    if not bad or not good:
        return None
    bad_sets = [{(j, x.get("type")) for j, x in _items(b)} for b in bad]
    good_seen = {(j, x.get("type")) for g in good for j, x in _items(g)}
    if not good_seen or not all(bad_sets):
        return None
    common = set.intersection(*bad_sets) - good_seen
    if len(common) != 1:
        return None
    j, typ = common.pop()
    return ("type", str(typ), j) if typ else None


_CLASSES = ((str.isupper, "[A-Z]"), (str.islower, "[a-z]"), (str.isdigit, "[0-9]"))


def shape(text: str) -> str:
    """An anchored pattern of the text's character classes (``'eur'`` -> ``^[a-z]{3}$``, ``'A-12'`` ->
    ``^[A-Z]\\-[0-9]{2}$``): what an identifier, a code or a format looks like, whatever its value."""
    out: List[str] = []
    run, n = "", 0
    for ch in text[:64]:
        cls = next((c for test, c in _CLASSES if test(ch)), re.escape(ch))
        if cls == run:
            n += 1
            continue
        if run:
            out.append(run + (f"{{{n}}}" if n > 1 else ""))
        run, n = cls, 1
    if run:
        out.append(run + (f"{{{n}}}" if n > 1 else ""))
    return "^" + "".join(out) + ("$" if len(text) <= 64 else "")


def seen_values(events: Sequence[dict]) -> List[Any]:
    """Every argument and local of the events, as plain values (where to look for a URL or a path)."""
    return [plain(node) for e in events for part in ("arguments", "locals") for node in (e.get(part) or {}).values()]


def captured(event: dict, expr: str) -> Any:
    """The plain value a snapshot captured for the expression `expr` (None when it holds none)."""
    return plain((event.get("expressions") or {}).get(expr))


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
