"""The per-type writers of a capture: each appends one node to the token stream, within the budget.

`write_value` looks the handler of a value's type up by `id` in `HANDLERS` (so even a metaclass
`__hash__` or `__eq__` is never called) and learns the handler of a type seen for the first time
with `classify`. Only builtin containers (through their base type's C methods), instance
`__dict__` entries and slots are read: no `repr`, `__len__`, `__iter__`, `__eq__`, `__hash__` or
property of a user object runs. Every cut is written as a marker node (docs/capture.md).

>>> from probebook.agent.capture.redaction import Redactor
>>> from probebook.agent.capture.tree import as_tree
>>> from probebook.agent.capture.values import CaptureLimits
>>> b = Budget(CaptureLimits(max_items=2), Redactor().snapshot())
>>> write_value([1, 2, 3], 0, b)
>>> as_tree(tuple(b.out))
{'type': 'list', 'elements': [{'type': 'int', 'value': 1}, {'type': 'int', 'value': 2}], 'size': 3, 'truncated': True}
"""

from __future__ import annotations

import collections
import enum
import itertools
import time
import types
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from probebook.errors import UnsafeAccess

from .describe import (TEXT_OF, TEXT_TYPES, class_name, code_text, function_name, int_text, method_name,
                       module_name)
from .redaction import RedactionRules, key_name
from .safe_access import instance_dict, iter_fields, safe_getattr, type_name
from .tree import CLOSE, LIST, OPEN

if TYPE_CHECKING:
    from .values import CaptureLimits

__all__ = ["Budget", "deadline_for", "SCAN_MARGIN", "HANDLERS", "classify", "summary", "write_value", "write_cut", "write_enum"]

SCAN_MARGIN = 256  # a secret straddling the string cut must still be seen by the patterns
_NODE = 40  # approximate JSON size of a node's own keys, for the byte budget
_TIMED_TEXT = 1024  # a text longer than this is scanned only before the capture's deadline
_CLOCK_EVERY = 64  # nodes between two looks at the clock (a look costs ~0.7 us here; a text's scan up to ~50)
# the deadline is in the thread's CPU time: while another thread holds the GIL (a CPU-bound service, just
# when it is investigated) the host's call waits for that thread, not for the capture
_now = time.thread_time_ns
_I64 = 1 << 63
_islice = itertools.islice


def deadline_for(limits: CaptureLimits) -> int:
    """When a hit's captures, starting now, must stop reading (`limits.max_ms` of this thread's CPU)."""
    return _now() + limits.max_ms * 1_000_000


class Budget:
    """What every node of one capture call shares: limits, bytes left, the containers on the path."""

    __slots__ = ("bytes_left", "path", "max_depth", "max_items", "max_string", "max_fields",
                 "scan", "name_redacted", "value_redacted", "type_redacted", "out", "deadline", "cut", "clock_in")

    def __init__(self, limits: CaptureLimits, rules: RedactionRules, deadline: Optional[int] = None) -> None:
        self.out: List[Any] = []  # the token stream being written
        self.bytes_left = limits.max_bytes
        # past this `thread_time_ns`, nothing more is read: what is left is cut, marked "time"
        self.deadline = deadline if deadline is not None else deadline_for(limits)
        self.cut = "limit"  # why what is left is cut once bytes_left is spent
        self.clock_in = 1  # the first container looks: a shared deadline may have passed already
        self.path: set = set()  # ids of the containers being captured: a repeat is a cycle
        self.max_depth, self.max_items = limits.max_depth, limits.max_items
        self.max_string, self.max_fields = limits.max_string, limits.max_fields
        self.scan = limits.max_string + SCAN_MARGIN
        self.name_redacted = rules.is_redacted_name
        self.value_redacted = rules.is_redacted_value
        self.type_redacted = rules.is_redacted_type


def write_cut(out: List[Any], value: Any, why: str) -> None:
    """Write the marker of a value that is not read: `{"type": ..., "not_captured": why}`."""
    out += (OPEN, "type", type_name(value), "not_captured", why, CLOSE)


def write_value(value: Any, depth: int, b: Budget) -> None:
    """Write the node of `value` at `depth`; a handler that fails leaves an `error` marker instead."""
    out = b.out
    if b.bytes_left <= 0:
        write_cut(out, value, b.cut)
        return
    b.clock_in -= 1
    if not b.clock_in:  # every 64th node, and before each long text's scan
        b.clock_in = _CLOCK_EVERY
        if _now() > b.deadline:
            _out_of_time(out, value, b)
            return
    tp = type(value)
    if tp is str:  # the most common leaves skip the dispatch
        _text(value, b, "str")
        return
    if tp is int:
        if -_I64 <= value < _I64:
            b.bytes_left -= _NODE
            out += (OPEN, "type", "int", "value", value, CLOSE)
            return
    elif tp is float:
        if value - value == 0.0:
            b.bytes_left -= _NODE
            out += (OPEN, "type", "float", "value", value, CLOSE)
            return
    elif tp is bool or value is None:
        b.bytes_left -= _NODE
        out += (OPEN, "type", _SCALAR_NAME[tp], "value", value, CLOSE)
        return
    handler, tname, _, learned = HANDLERS.get(id(tp)) or classify(tp)
    if learned and b.type_redacted(tname):  # globs name user types; builtins are never matched
        out += (OPEN, "type", tname, "not_captured", "redacted", CLOSE)
        return
    mark = len(out)
    try:
        handler(value, depth, b, tname)
    except Exception as exc:  # e.g. a dict resized by another thread: the rest of the capture goes on
        del out[mark:]  # what the handler wrote before failing
        out += (OPEN, "type", type_name(value), "not_captured", "error", "error", type_name(exc), CLOSE)


# --- scalars and text ---------------------------------------------------------------------

def _scalar(value: Any, depth: int, b: Budget, tname: str) -> None:
    b.bytes_left -= _NODE
    b.out += (OPEN, "type", tname, "value", value, CLOSE)


def _int(value: int, depth: int, b: Budget, tname: str) -> None:
    if -_I64 <= value < _I64:
        _scalar(value, depth, b, tname)
    else:
        _text(int_text(value), b, tname, scan=False)  # beyond int64 JSON readers lose digits


def _float(value: float, depth: int, b: Budget, tname: str) -> None:
    _scalar(value if value - value == 0.0 else repr(value), depth, b, tname)  # JSON has no nan/inf


def _out_of_time(out: List[Any], value: Any, b: Budget) -> None:
    b.bytes_left, b.cut = 0, "time"
    write_cut(out, value, "time")


def _text(s: str, b: Budget, tname: str, scan: bool = True) -> None:
    n = len(s)
    limit = b.max_string
    if n > _TIMED_TEXT and _now() > b.deadline:
        _out_of_time(b.out, s, b)
        return
    if scan:
        if b.value_redacted(s if n <= b.scan else s[: b.scan]):
            b.bytes_left -= _NODE
            b.out += (OPEN, "type", tname, "not_captured", "redacted", CLOSE)
            return
        if n > limit:  # the scan past the cut is work too: it counts in the budget (a capture's time)
            b.bytes_left -= min(n, b.scan) - limit
    if n > limit:
        s = s[:limit]
    # JSON escapes non-ASCII as \uXXXX: six characters each
    b.bytes_left -= _NODE + (len(s) if s.isascii() else 6 * len(s))
    if n <= limit:
        b.out += (OPEN, "type", tname, "value", s, CLOSE)
    else:
        b.out += (OPEN, "type", tname, "value", s, "truncated", True, "size", n, CLOSE)


def _bytes(value: Any, depth: int, b: Budget, tname: str) -> None:
    base = bytes if issubclass(type(value), bytes) else bytearray
    n = base.__len__(value)
    if b.value_redacted(bytes(base.__getitem__(value, slice(0, b.scan))).decode("latin-1")):  # raw buffers
        b.bytes_left -= _NODE
        b.out += (OPEN, "type", tname, "not_captured", "redacted", CLOSE)
        return
    head = bytes(base.__getitem__(value, slice(0, b.max_string)))
    b.bytes_left -= _NODE + 4 * len(head) + min(n, b.scan) - len(head)
    b.out += (OPEN, "type", tname, "value", repr(head))
    if n > len(head):
        b.out += ("truncated", True, "size", n)
    b.out.append(CLOSE)


def _as_text(to_text: Callable[[Any], str], value: Any, depth: int, b: Budget, tname: str) -> None:
    """The handler of dates, Decimal, UUID (`partial(_as_text, to_text)`): the stdlib's text, with no secret
    pattern to look for."""
    _text(to_text(value), b, tname, scan=False)


# --- containers and objects ---------------------------------------------------------------

def _enter(value: Any, depth: int, b: Budget, tname: str, size: Optional[int]) -> bool:
    """True when `value` is not expanded here (its marker is written); else `value` joins the path."""
    b.bytes_left -= _NODE
    if depth >= b.max_depth:
        why = "depth"
    elif id(value) in b.path:
        why = "cycle"
    else:
        b.path.add(id(value))
        return False
    if size is not None:
        b.out += (OPEN, "type", tname, "not_captured", why, "size", size, CLOSE)
    else:
        b.out += (OPEN, "type", tname, "not_captured", why, CLOSE)
    return True


def _collection(value: Any, depth: int, b: Budget, tname: str, size: int, items: Any,
                kind: str = "elements", each: Optional[Callable[[Any, int, Budget], Any]] = None) -> None:
    if _enter(value, depth, b, tname, size):
        return
    each = each or write_value
    out = b.out
    out += (OPEN, "type", tname, kind, LIST)
    count = 0
    try:
        for item in items:
            if b.bytes_left <= 0:
                break
            each(item, depth + 1, b)
            count += 1
    finally:
        b.path.discard(id(value))
    if count < size:
        out += (CLOSE, "size", size, "truncated", True, CLOSE)
    else:
        out += (CLOSE, "size", size, CLOSE)


def _sequence(base: type, value: Any, depth: int, b: Budget, tname: str) -> None:
    """The handler of lists and tuples (`partial(_sequence, list)` in `HANDLERS`): read through `base`'s C
    methods, a plain list/tuple even for subclasses."""
    head = base.__getitem__(value, slice(0, b.max_items))
    size = base.__len__(value)
    name = key_name(base.__getitem__(value, 0)) if size == 2 else None
    if name is not None and b.name_redacted(name):  # a (name, value) pair: ("Authorization", "Basic ...")
        seen = [0]

        def each(item: Any, d: int, bb: Budget) -> None:
            write_cut(bb.out, item, "redacted") if seen[0] else write_value(item, d, bb)
            seen[0] += 1
        _collection(value, depth, b, tname, size, head, each=each)
        return
    _collection(value, depth, b, tname, size, head)


def _unordered(base: type, value: Any, depth: int, b: Budget, tname: str) -> None:
    """The handler of sets and deques: walks `base`'s table; nothing is hashed."""
    head = _islice(base.__iter__(value), b.max_items)
    _collection(value, depth, b, tname, base.__len__(value), head)


def _dict(value: dict, depth: int, b: Budget, tname: str) -> None:
    # dict.items reads the table directly: no user __iter__/__getitem__, no key hashing
    head = _islice(dict.items(value), b.max_items)
    _collection(value, depth, b, tname, dict.__len__(value), head, "entries", _entry)


def _entry(item: Tuple[Any, Any], depth: int, b: Budget) -> None:
    """One `[key, value]` pair of a dict."""
    k, v = item
    b.out.append(LIST)
    if type(k) is str:
        _text(k, b, "str")
        redact = b.name_redacted(k)
    else:
        write_value(k, depth, b)
        text = key_name(k)  # bytes keys too: {b"password": ...}
        redact = (text is not None and b.name_redacted(text)) or (
            issubclass(type(k), str) and b.name_redacted(str.__str__(k)))  # e.g. a str-valued Enum key
    if redact:
        write_cut(b.out, v, "redacted")
    else:
        write_value(v, depth, b)
    b.out.append(CLOSE)


def _with_fields(pairs_of: Callable[[Any, int, Budget], Any], value: Any, depth: int, b: Budget, tname: str) -> None:
    """The handler of kinds shown as `fields` (`partial(_with_fields, pairs_of)`); `pairs_of` yields
    (name, value) and may first write more keys and values of the node."""
    if _enter(value, depth, b, tname, None):
        return
    out = b.out
    try:
        out += (OPEN, "type", tname)
        pairs = pairs_of(value, depth, b)
        out += ("fields", OPEN)
        count, truncated = 0, False
        for fname, fvalue in pairs:
            if count >= b.max_fields or b.bytes_left <= 0:
                truncated = True
                break
            out.append(fname)
            if b.name_redacted(fname):
                write_cut(out, fvalue, "redacted")
            else:
                write_value(fvalue, depth + 1, b)
            count += 1
            b.bytes_left -= len(fname)
        out += (CLOSE, "truncated", True, CLOSE) if truncated else (CLOSE, CLOSE)
    finally:
        b.path.discard(id(value))


def _object_fields(value: Any, depth: int, b: Budget) -> Any:
    return iter_fields(value)


def _exception_fields(value: BaseException, depth: int, b: Budget) -> Any:
    b.out.append("args")
    write_value(_EXC_ARGS.__get__(value), depth + 1, b)
    # BaseException's own members (__suppress_context__ ...) are interpreter state, not data
    return ((k, v) for k, v in iter_fields(value) if not k.startswith("__"))


def _named_tuple_fields(value: tuple, depth: int, b: Budget) -> Any:
    names = safe_getattr(type(value), "_fields")
    return zip(names, tuple.__getitem__(value, slice(0, len(names))))


_object = partial(_with_fields, _object_fields)
_exception = partial(_with_fields, _exception_fields)
_named_tuple = partial(_with_fields, _named_tuple_fields)


def write_enum(value: enum.Enum, depth: int, b: Budget, tname: str) -> None:
    """The handler of Enum members: the member's name, and its value when that is a JSON scalar."""
    state = instance_dict(value) or {}
    name = state.get("_name_")
    v = state.get("_value_")
    b.bytes_left -= _NODE
    b.out += (OPEN, "type", tname, "enum", name if type(name) is str else None)
    if id(type(v)) in _JSON_SCALARS:
        b.out += ("value", v)
    b.out.append(CLOSE)


def _subclass(base_handler: Callable[..., None], to_base: Optional[Callable[[Any], Any]], value: Any, depth: int,
              b: Budget, tname: str) -> None:
    """The handler of subclasses of builtins (`partial(_subclass, base_handler, to_base)`): read as the base
    type (its C methods), named by their own type."""
    base_handler(to_base(value) if to_base else value, depth, b, tname)


# --- one-line summaries: modules, functions, classes, code ----------------------------------

def summary(describe: Callable[[Any], str], value: Any, depth: int, b: Budget, tname: str) -> None:
    """The handler of kinds shown as one line (`partial(summary, describe)`); safe_repr shows the same
    `describe(value)`."""
    b.bytes_left -= _NODE + 40
    b.out += (OPEN, "type", tname, "summary", describe(value)[: b.max_string], CLOSE)


# --- dispatch -----------------------------------------------------------------------------

_EXC_ARGS = BaseException.__dict__["args"]
_JSON_SCALARS = {id(int), id(str), id(bool), id(float)}
_CLASS_SUMMARY = partial(summary, class_name)
_MODULE_SUMMARY = partial(summary, module_name)
_QUALNAME = partial(summary, lambda g: g.__qualname__)

# id(type) -> (handler, type name, type, learned): ids because hashing a type may run a metaclass __hash__;
# holding the type keeps its id from being reused while the entry exists
HANDLERS: Dict[int, Tuple[Callable[..., None], str, type, bool]] = {
    id(t): (h, class_name(t), t, False) for t, h in (
        (int, _int), (bool, _scalar), (float, _float), (type(None), _scalar), (bytes, _bytes), (bytearray, _bytes),
        (list, partial(_sequence, list)), (tuple, partial(_sequence, tuple)), (set, partial(_unordered, set)), (frozenset, partial(_unordered, frozenset)),
        (collections.deque, partial(_unordered, collections.deque)), (dict, _dict),
        (type, _CLASS_SUMMARY), (types.ModuleType, _MODULE_SUMMARY),
        (types.FunctionType, partial(summary, function_name)), (types.MethodType, partial(summary, method_name)),
        (types.BuiltinFunctionType, partial(summary, lambda f: f.__name__)), (types.CodeType, partial(summary, code_text)),
        (types.FrameType, partial(summary, lambda f: f"{code_text(f.f_code)} line {f.f_lineno}")),
        (types.TracebackType, partial(summary, lambda t: f"{code_text(t.tb_frame.f_code)} line {t.tb_lineno}")),
        (types.GeneratorType, _QUALNAME), (types.CoroutineType, _QUALNAME), (types.AsyncGeneratorType, _QUALNAME),
        *((t, partial(_as_text, TEXT_OF[id(t)])) for t in TEXT_TYPES),
        *((t, partial(summary, type_name)) for t in (
            types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType, memoryview, property,
            types.ClassMethodDescriptorType, types.GetSetDescriptorType, types.MemberDescriptorType, staticmethod,
            classmethod)),
    )
}
_BUILTIN_COUNT = len(HANDLERS)
_SCALAR_NAME = {bool: HANDLERS[id(bool)][1], type(None): HANDLERS[id(type(None))][1]}
_LEARNED_MAX = 2048
_BASES = ((dict, None), (list, None), (tuple, None), (set, None), (frozenset, None), (collections.deque, None),
          (str, str.__str__), (bytes, None), (bytearray, None), (int, int.__index__), (float, float.__float__))


def classify(tp: type) -> Tuple[Callable[..., None], str, type, bool]:
    """The `HANDLERS` entry for a type seen for the first time; issubclass on builtin bases runs no user code."""
    handler: Callable[..., None] = _object
    if issubclass(tp, type):
        handler = _CLASS_SUMMARY
    elif issubclass(tp, BaseException):
        handler = _exception
    elif issubclass(tp, enum.Enum):
        handler = write_enum
    elif issubclass(tp, types.ModuleType):
        handler = _MODULE_SUMMARY
    elif issubclass(tp, tuple) and _has_fields(tp):
        handler = _named_tuple
    else:
        for base, to_base in _BASES:
            if issubclass(tp, base):
                handler = partial(_subclass, _text_handler if base is str else HANDLERS[id(base)][0], to_base)
                break
    if len(HANDLERS) > _BUILTIN_COUNT + _LEARNED_MAX:  # classes made at run time must not grow it forever
        for key in list(HANDLERS)[_BUILTIN_COUNT:]:
            HANDLERS.pop(key, None)
    entry = HANDLERS[id(tp)] = (handler, class_name(tp), tp, True)
    return entry


def _text_handler(value: str, depth: int, b: Budget, tname: str) -> None:
    return _text(value, b, tname)


def _has_fields(tp: type) -> bool:
    try:
        names = safe_getattr(tp, "_fields")
    except UnsafeAccess:
        return False
    return type(names) is tuple and all(type(n) is str for n in names)
