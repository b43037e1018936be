"""The one reader of the capture tree: the JSON nodes a snapshot, an exception probe or a captured
expression holds (docs/capture.md, "Node format"). The agent writes them; everything on the notebook
side that looks inside one (proof predicates, the snapshot viewer, `SnapshotResult.values`) reads
them through these functions, so the format is interpreted in one place.

>>> exc = {"type": "OSError", "args": {"type": "tuple", "elements": [
...     {"type": "int", "value": 28}, {"type": "str", "value": "No space left on device"}]}}
>>> plain(exc)
"OSError(28, 'No space left on device')"
>>> scalar({"type": "float", "value": 0.25}), scalar({"type": "list", "elements": []})
(0.25, {'type': 'list', 'elements': []})
>>> cut({"type": "str", "not_captured": "redacted"}), size({"type": "dict", "entries": [], "size": 40})
('redacted', 40)
>>> [label for label, _ in children({"type": "Cart", "fields": {"total": {"type": "int", "value": 3}}})]
['total']
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable, List, Mapping, Tuple

__all__ = ["NotCaptured", "is_node", "has_value", "plain", "scalar", "cut", "size", "children"]


class NotCaptured(str, Enum):
    """Why a node holds no value (its ``not_captured`` marker); compares equal to the word itself."""

    DEPTH = "depth"
    CYCLE = "cycle"
    LIMIT = "limit"
    REDACTED = "redacted"
    ERROR = "error"

    __str__ = str.__str__
    __repr__ = str.__repr__
    __format__ = str.__format__
    __hash__ = str.__hash__


def is_node(value: Any) -> bool:
    """A captured node (a mapping with its ``type``) rather than an already plain value."""
    return isinstance(value, Mapping)


def has_value(node: Any) -> bool:
    """The node is a scalar: its ``value`` is the whole of it (an int, a string, an enum member...)."""
    return is_node(node) and "value" in node and "entries" not in node and "elements" not in node


def plain(node: Any) -> Any:
    """A node as a plain value: numbers, text, lists, dicts; an exception as ``Type(arg, ...)`` text,
    a summarised object as its summary, a cut node as None.

    >>> plain({"type": "dict", "entries": [[{"type": "str", "value": "n"}, {"type": "int", "value": 1}]]})
    {'n': 1}
    >>> plain({"type": "URLError", "args": {"type": "tuple", "not_captured": "depth"},
    ...        "fields": {"reason": {"type": "str", "value": "Connection refused"}}})
    "URLError(reason='Connection refused')"
    """
    if not is_node(node):
        return node
    if "value" in node:
        return node["value"]
    if "args" in node:
        args = plain(node["args"])
        if (args is None or None in args) and node.get("fields"):  # args cut by depth: its attributes say it
            kw = {k: plain(v) for k, v in node["fields"].items()}
            return f"{node.get('type')}({', '.join(f'{k}={v!r}' for k, v in kw.items() if v is not None)})"
        return f"{node.get('type')}({', '.join(repr(a) for a in (args or []))})"
    if "elements" in node:
        return [plain(e) for e in node["elements"]]
    if "entries" in node:
        return {str(plain(k)): plain(v) for k, v in node["entries"]}
    if "fields" in node:
        return {k: plain(v) for k, v in node["fields"].items()}
    return node.get("summary")


def scalar(node: Any) -> Any:
    """The plain value of a scalar node; any other node as it is (for a caller that shows the tree)."""
    return node.get("value", node) if is_node(node) else node


def cut(node: Any) -> str:
    """What a cut node says about itself: the ``not_captured`` reason (``"error: KeyError"`` for a
    failed read), ``truncated``, both, or ``""`` for a whole node.

    >>> cut({"type": "list", "elements": [], "size": 500, "truncated": True})
    'truncated'
    """
    if not is_node(node):
        return ""
    parts = []
    if node.get("not_captured"):
        why = str(node["not_captured"])
        if why == NotCaptured.ERROR and node.get("error"):
            why = f"error: {node['error']}"
        parts.append(why)
    if node.get("truncated"):
        parts.append("truncated")
    return ", ".join(parts)


def size(node: Mapping[str, Any]) -> int:
    """How many elements, entries or fields the captured value had (its real ``size`` when cut)."""
    n = node.get("size")
    if n is None:
        n = len(node.get("elements") or node.get("entries") or node.get("fields") or ())
    return int(n)


def children(node: Mapping[str, Any], key_label: Callable[[Any], str] = lambda k: str(plain(k))
             ) -> List[Tuple[str, Any]]:
    """(label, child node) pairs one level down: ``[i]`` for elements, the key (through `key_label`,
    which gets the key's node) for entries, ``args`` then field names for objects and exceptions."""
    if "elements" in node:
        return [(f"[{i}]", child) for i, child in enumerate(node["elements"])]
    if "entries" in node:
        return [(key_label(k), v) for k, v in node["entries"]]
    out: List[Tuple[str, Any]] = []
    if is_node(node.get("args")):
        out.append(("args", node["args"]))
    if is_node(node.get("fields")):
        out.extend(node["fields"].items())
    return out
