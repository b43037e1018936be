"""One line of text for a value, for dynamic log lines, without running any user code.

Builtin scalars and containers of them read as their `repr`; other objects as
`<module.Class at 0x...>`, or the one-line summary capture gives their kind (functions, classes,
modules, code); secrets as `[REDACTED]`. Types are recognised as capture recognises them
(`writers.HANDLERS`), so both agree on what an object is.

>>> safe_repr([1, "two", object()])[:23]
"[1, 'two', <object at 0"
"""

from __future__ import annotations

from functools import partial
from typing import Any, List, Optional, Union

from .describe import TEXT_OF, TYPE_QUALNAME, int_text
from .redaction import RedactionRules, Redactor, key_name
from .safe_access import instance_dict, type_name
from .writers import HANDLERS, SCAN_MARGIN, classify, summary, write_enum

__all__ = ["safe_repr", "repr_reads"]

_PAIRS = {id(list), id(tuple)}  # a 2-item one may be a (name, value) pair
_BRACKETS = {id(list): ("[", "]"), id(tuple): ("(", ")"), id(set): ("{", "}"), id(frozenset): ("frozenset({", "})"),
             id(dict): ("{", "}")}
_REPR_SCALARS = {id(float), id(bool), id(type(None))}
_REPR_DEPTH = 3
_FAST_INT = 10**15


def safe_repr(value: Any, max_len: int = 255, redactor: Optional[Union[Redactor, RedactionRules]] = None) -> str:
    """One line for a log: builtin scalars and containers of them as `repr`, other objects as
    `<module.Class at 0x...>` (no user code), secrets as `[REDACTED]`, cut to `max_len` with `...`.

    >>> safe_repr({"n": 1, "password": "hunter2"}, redactor=Redactor())
    "{'n': 1, 'password': [REDACTED]}"
    >>> safe_repr("x" * 300, max_len=10)
    "'xxxxxx..."
    """
    tp = type(value)
    if tp is float or tp is bool or value is None or (tp is int and -_FAST_INT < value < _FAST_INT):
        text = repr(value)  # the common log values: no redaction rules apply to numbers
        return text if len(text) <= max_len else text[: max(0, max_len - 3)] + "..."
    rules = redactor.snapshot() if redactor is not None else None
    out: List[str] = []
    try:
        _render(value, out, rules, 0, [max_len + 1])
        text = "".join(out)
    except Exception:  # a log line must never raise
        text = f"<{type_name(value)} at {id(value):#x}>"
    if len(text) > max_len:
        text = text[: max_len - 3] + "..." if max_len > 3 else text[:max_len]
    return text


def repr_reads(max_len: int) -> int:
    """How much of a `str`/`bytes` `safe_repr(value, max_len)` reads: cut to this, it renders the same.

    >>> s = "y" * 9000
    >>> safe_repr(s[:repr_reads(20)], 20) == safe_repr(s, 20)
    True
    """
    return max_len + 1 + SCAN_MARGIN


def _emit(out: List[str], room: List[int], text: str) -> None:
    out.append(text)
    room[0] -= len(text)


def _render(v: Any, out: List[str], rules: Optional[RedactionRules], depth: int, room: List[int]) -> None:
    tid = id(type(v))
    if tid == id(str):
        secret = rules is not None and rules.is_redacted_value(v[: room[0] + SCAN_MARGIN])
        _emit(out, room, "[REDACTED]" if secret else repr(v[: room[0]]))
    elif tid == id(int):
        _emit(out, room, int_text(v))
    elif tid in _REPR_SCALARS:
        _emit(out, room, repr(v))
    elif tid == id(bytes) or tid == id(bytearray):
        secret = rules is not None and rules.is_redacted_value(bytes(v[: room[0] + SCAN_MARGIN]).decode("latin-1"))
        _emit(out, room, "[REDACTED]" if secret else repr(v[: room[0]]))
    elif tid in _BRACKETS:
        _render_container(v, tid, out, rules, depth, room)
    elif tid in TEXT_OF:
        _emit(out, room, TEXT_OF[tid](v))
    else:
        tp = type(v)
        handler, name, _, learned = HANDLERS.get(tid) or classify(tp)
        describe = handler.args[0] if type(handler) is partial and handler.func is summary else None
        if learned and rules is not None and rules.is_redacted_type(name):
            _emit(out, room, "[REDACTED]")
        elif describe is not None:
            _emit(out, room, f"<{name} {describe(v)}>")
        elif handler is write_enum:
            _emit(out, room, f"{TYPE_QUALNAME.__get__(tp)}.{(instance_dict(v) or {}).get('_name_')}")
        else:
            _emit(out, room, f"<{name} at {id(v):#x}>")


def _names_secret(first: Any, rules: RedactionRules) -> bool:
    name = key_name(first)
    return name is not None and rules.is_redacted_name(name)


def _render_container(v: Any, tid: int, out: List[str], rules: Optional[RedactionRules], depth: int, room: List[int]) -> None:
    size = len(v)  # exact builtin containers only: len() runs no user code
    if size == 0 and (tid == id(set) or tid == id(frozenset)):
        _emit(out, room, f"{type(v).__name__}()")
        return
    opening, closing = _BRACKETS[tid]
    _emit(out, room, opening)
    shown = 0
    if depth < _REPR_DEPTH:
        is_dict = tid == id(dict)
        for item in (dict.items(v) if is_dict else v):
            if room[0] <= 0:
                break
            if shown:
                _emit(out, room, ", ")
            if rules is not None and shown == 1 and size == 2 and tid in _PAIRS and _names_secret(v[0], rules):
                _emit(out, room, "[REDACTED]")  # the value of a ("Authorization", value) pair, as in capture
                shown += 1
                continue
            if is_dict:
                key, item = item
                _render(key, out, rules, depth + 1, room)
                _emit(out, room, ": ")
                name = key_name(key) if rules is not None else None  # bytes keys too, as in capture
                if name is not None and rules.is_redacted_name(name):  # type: ignore[union-attr]
                    _emit(out, room, "[REDACTED]")
                    shown += 1
                    continue
            _render(item, out, rules, depth + 1, room)
            shown += 1
    if shown < size:
        _emit(out, room, ", ..." if shown else "...")
    elif tid == id(tuple) and size == 1:
        _emit(out, room, ",")
    _emit(out, room, closing)
