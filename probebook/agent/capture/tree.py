"""The flat token stream a capture writes at the hit, and the readers that build the documented trees.

Inside a capture, the tree is written as one flat stream of tokens: `OPEN` starts a dict (key,
value, key, value ...), `LIST` a list, `CLOSE` ends either; anything else is a plain value (str,
int, float, bool, None). `as_tree` builds the documented dicts and lists from it, for snapshots
on the reader's thread. One tuple of plain values is, after its first collection, no longer
tracked by the garbage collector, so a snapshot waiting in the event ring costs the host's
collector nothing, where a tree of a few hundred dicts and lists would be walked by its
collections and promoted into the old generation, bringing full ones.

>>> as_tree((OPEN, "type", "list", "elements", LIST, OPEN, "type", "int", "value", 1, CLOSE, CLOSE, CLOSE))
{'type': 'list', 'elements': [{'type': 'int', 'value': 1}]}
>>> as_stack(("handle", "app.py", 12, "app", 3))
[{'function': 'handle', 'file': 'app.py', 'line': 12, 'module': 'app', 'frames_omitted': 3}]
"""

from __future__ import annotations

from typing import Any, List, Mapping, Tuple

__all__ = ["OPEN", "LIST", "CLOSE", "as_tree", "as_stack", "field_map_raw", "error_raw"]

OPEN, LIST, CLOSE = object(), object(), object()  # not str: no captured value is ever one of these


def as_tree(stream: tuple) -> Any:
    """The documented JSON-ready tree (dicts and lists) from a token stream.

    >>> as_tree(error_raw("boom"))
    {'type': 'error', 'error': 'boom'}
    """
    return _parse(stream, 0)[0]


def _parse(t: tuple, i: int) -> Tuple[Any, int]:
    tok = t[i]
    if tok is OPEN:
        d = {}
        i += 1
        while t[i] is not CLOSE:
            key = t[i]
            d[key], i = _parse(t, i + 1)
        return d, i + 1
    if tok is LIST:
        items = []
        i += 1
        while t[i] is not CLOSE:
            value, i = _parse(t, i)
            items.append(value)
        return items, i + 1
    return tok, i + 1


def field_map_raw(streams: Mapping[str, tuple]) -> tuple:
    """Token streams by name as one stream of `{name: node}`.

    >>> as_tree(field_map_raw({"x": (OPEN, "type", "int", "value", 1, CLOSE)}))
    {'x': {'type': 'int', 'value': 1}}
    """
    out: List[Any] = [OPEN]
    for name, stream in streams.items():
        out.append(name)
        out += stream
    out.append(CLOSE)
    return tuple(out)


def error_raw(message: str) -> tuple:
    """The stream of `{"type": "error", "error": message}`, for an expression that failed."""
    return (OPEN, "type", "error", "error", message, CLOSE)


def as_stack(raw: tuple) -> List[dict]:
    """The frames of `capture_stack_raw` (function, file, line, module per frame, then the number
    of frames left off) as dicts."""
    out = [{"function": raw[i], "file": raw[i + 1], "line": raw[i + 2], "module": raw[i + 3]}
           for i in range(0, len(raw) - 1, 4)]
    if raw[-1] and out:
        out[-1]["frames_omitted"] = raw[-1]
    return out
