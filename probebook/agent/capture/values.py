"""Turn live values into bounded, redacted, JSON-ready trees without running any user code.

A captured value is a dict with a `"type"` and, by kind, `"value"`, `"elements"`, `"entries"`,
`"fields"`, `"args"` or `"summary"`; what a limit, redaction or cycle cut says so with
`"not_captured"` (`depth`, `limit`, `redacted`, `cycle`, `error`) or `"truncated": true`
(docs/capture.md). Only builtin containers (through their base type's C methods), instance
`__dict__` entries and slots are read: no `repr`, `__len__`, `__iter__`, `__eq__`, `__hash__` or
property of a user object runs. Types are looked up by `id`, so even a metaclass `__hash__` or
`__eq__` is never called.

>>> from probebook.agent.capture.redaction import Redactor
>>> capture_value({"user": "ada", "password": "hunter2"}, CaptureLimits(), Redactor())["entries"][1]
[{'type': 'str', 'value': 'password'}, {'type': 'str', 'not_captured': 'redacted'}]
>>> safe_repr([1, "two", object()])[:23]
"[1, 'two', <object at 0"
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import itertools
import types
import uuid
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ..errors import SpecError
from .redaction import RedactionRules, Redactor
from ..instrument.locate import code_name
from .safe_access import UnsafeAccess, instance_dict, iter_fields, safe_getattr, type_name

__all__ = ["CaptureLimits", "capture_value", "capture_locals", "capture_stack", "safe_repr", "repr_reads",
           "capture_value_raw", "capture_locals_raw", "field_map_raw", "error_raw", "as_tree",
           "capture_stack_raw", "as_stack"]

_MAX_DEPTH_CEILING = 32  # capture recurses once per level; stay far from the recursion limit
_SCAN_MARGIN = 4096  # a secret straddling the string cut must still be seen by the patterns
_NODE = 40  # approximate JSON size of a node's own keys, for the byte budget
_I64 = 1 << 63
_islice = itertools.islice

# Inside a capture, the tree is written as one flat stream of tokens: _OPEN starts a dict (key,
# value, key, value ...), _LIST a list, _CLOSE ends either; anything else is a plain value (str,
# int, float, bool, None). `as_tree` builds the documented dicts and lists from it, for snapshots
# on the reader's thread. One tuple of plain values is, after its first collection, no longer
# tracked by the garbage collector, so a snapshot waiting in the event ring costs the host's
# collector nothing, where a tree of a few hundred dicts and lists would be walked by its
# collections and promoted into the old generation, bringing full ones.
_OPEN, _LIST, _CLOSE = object(), object(), object()  # not str: no captured value is ever one of these


@dataclass(frozen=True)
class CaptureLimits:
    """How much one capture may read; every cut is marked in the tree.

    >>> CaptureLimits.from_mapping({"max_depth": 3}).max_depth
    3
    """

    max_depth: int = 2  # levels of containers/objects that are expanded
    max_items: int = 100  # elements or entries per collection
    max_string: int = 255  # characters per string, bytes per bytes object
    max_fields: int = 20  # fields per object
    max_bytes: int = 1 << 20  # approximate JSON size of one capture call
    max_frames: int = 20  # stack frames

    def __post_init__(self) -> None:
        for f in fields(self):
            value, ceiling = getattr(self, f.name), _MAX_DEPTH_CEILING if f.name == "max_depth" else None
            if type(value) is not int or value < 1 or (ceiling is not None and value > ceiling):
                allowed = f"an integer from 1 to {ceiling}" if ceiling else "a positive integer"
                raise SpecError(f"limits.{f.name}: must be {allowed}, got {safe_repr(value, 40)}", field=f"limits.{f.name}")

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> "CaptureLimits":
        """Limits from a spec's `limits` object; an unknown key or a bad value raises `SpecError`."""
        allowed = [f.name for f in fields(cls)]
        for key in d:
            if key not in allowed:
                raise SpecError(f"limits.{key}: unknown limit; allowed: {', '.join(allowed)}", field=f"limits.{key}")
        return cls(**dict(d))


class _Budget:
    """What every node of one capture call shares: limits, bytes left, the containers on the path."""

    __slots__ = ("bytes_left", "path", "max_depth", "max_items", "max_string", "max_fields",
                 "scan", "name_redacted", "value_redacted", "type_redacted", "out")

    def __init__(self, limits: CaptureLimits, rules: RedactionRules) -> None:
        self.out: List[Any] = []  # the token stream being written
        self.bytes_left = limits.max_bytes
        self.path: set = set()  # ids of the containers being captured: a repeat is a cycle
        self.max_depth, self.max_items = limits.max_depth, limits.max_items
        self.max_string, self.max_fields = limits.max_string, limits.max_fields
        self.scan = limits.max_string + _SCAN_MARGIN
        self.name_redacted = rules.is_redacted_name
        self.value_redacted = rules.is_redacted_value
        self.type_redacted = rules.is_redacted_type


def capture_value(value: Any, limits: CaptureLimits, redactor: Redactor, name: Optional[str] = None) -> dict:
    """Capture one value; when `name` is a sensitive identifier the value is not read.

    >>> capture_value(7, CaptureLimits(), Redactor())
    {'type': 'int', 'value': 7}
    """
    return as_tree(capture_value_raw(value, limits, redactor, name))


def capture_value_raw(value: Any, limits: CaptureLimits, redactor: Redactor, name: Optional[str] = None) -> tuple:
    """`capture_value` as a token stream, for `as_tree` later (see `_OPEN`)."""
    b = _Budget(limits, redactor.snapshot())
    if name is not None and b.name_redacted(name):
        _cut(b.out, value, "redacted")
    else:
        _capture(value, 0, b)
    return tuple(b.out)


def capture_locals(f_locals: Mapping[str, Any], limits: CaptureLimits, redactor: Redactor) -> Dict[str, dict]:
    """Capture a frame's locals under one budget; redacted names are marked and their values unread."""
    return as_tree(capture_locals_raw(f_locals, (), limits, redactor)[1])


def capture_locals_raw(f_locals: Mapping[str, Any], arguments: Iterable[str], limits: CaptureLimits,
                       redactor: Redactor) -> Tuple[tuple, tuple]:
    """The `arguments` among `f_locals`, and the other locals, as two token streams of `{name: node}`
    captured under one budget (arguments first)."""
    b = _Budget(limits, redactor.snapshot())
    items = dict.items(f_locals) if issubclass(type(f_locals), dict) else f_locals.items()
    wanted = set(arguments)
    args_out: List[Any] = [_OPEN]
    b.out = args_out
    rest = []
    for item in items:
        if item[0] in wanted:
            _named(item, b)
        else:
            rest.append(item)
    args_out.append(_CLOSE)
    b.out = [_OPEN]
    for item in rest:
        _named(item, b)
    b.out.append(_CLOSE)
    return tuple(args_out), tuple(b.out)


def _named(item: Tuple[str, Any], b: _Budget) -> None:
    """Write `name, node` for one local."""
    name, value = item
    b.out.append(name)
    if b.name_redacted(name):
        _cut(b.out, value, "redacted")
    else:
        _capture(value, 0, b)


def field_map_raw(streams: Mapping[str, tuple]) -> tuple:
    """Token streams by name as one stream of `{name: node}`.

    >>> as_tree(field_map_raw({"x": capture_value_raw(1, CaptureLimits(), Redactor())}))
    {'x': {'type': 'int', 'value': 1}}
    """
    out: List[Any] = [_OPEN]
    for name, stream in streams.items():
        out.append(name)
        out += stream
    out.append(_CLOSE)
    return tuple(out)


def error_raw(message: str) -> tuple:
    """The stream of `{"type": "error", "error": message}`, for an expression that failed."""
    return (_OPEN, "type", "error", "error", message, _CLOSE)


def as_tree(stream: tuple) -> Any:
    """The documented JSON-ready tree (dicts and lists) from a token stream.

    >>> as_tree(capture_value_raw([1, "a"], CaptureLimits(), Redactor()))
    {'type': 'list', 'elements': [{'type': 'int', 'value': 1}, {'type': 'str', 'value': 'a'}], 'size': 2}
    """
    return _parse(stream, 0)[0]


def _parse(t: tuple, i: int) -> Tuple[Any, int]:
    tok = t[i]
    if tok is _OPEN:
        d = {}
        i += 1
        while t[i] is not _CLOSE:
            key = t[i]
            d[key], i = _parse(t, i + 1)
        return d, i + 1
    if tok is _LIST:
        items = []
        i += 1
        while t[i] is not _CLOSE:
            value, i = _parse(t, i)
            items.append(value)
        return items, i + 1
    return tok, i + 1


def capture_stack(frame: Any, limits: CaptureLimits, redactor: Redactor, with_locals_for_top: bool = False) -> List[dict]:
    """Up to `max_frames` frames from `frame` outwards; the last notes how many were left off."""
    out = as_stack(capture_stack_raw(frame, limits))
    if with_locals_for_top and out:
        out[0]["locals"] = capture_locals(frame.f_locals, limits, redactor)
    return out


def capture_stack_raw(frame: Any, limits: CaptureLimits) -> tuple:
    """`capture_stack` as one flat tuple (function, file, line, module per frame, then the number
    of frames left off), for `as_stack` later."""
    out: List[Any] = []
    f = frame
    n = 0
    while f is not None and n < limits.max_frames:
        code, g = f.f_code, f.f_globals
        module = dict.get(g, "__name__") if issubclass(type(g), dict) else None
        out += (code_name(code), code.co_filename, f.f_lineno,
                module if type(module) is str else None)
        f = f.f_back
        n += 1
    omitted = 0
    while f is not None:
        omitted, f = omitted + 1, f.f_back
    out.append(omitted)
    return tuple(out)


def as_stack(raw: tuple) -> List[dict]:
    """The frames of `capture_stack_raw` as dicts."""
    out = [{"function": raw[i], "file": raw[i + 1], "line": raw[i + 2], "module": raw[i + 3]}
           for i in range(0, len(raw) - 1, 4)]
    if raw[-1] and out:
        out[-1]["frames_omitted"] = raw[-1]
    return out


# --- writers: each appends one node to b.out ------------------------------------------------


def _cut(out: List[Any], value: Any, why: str) -> None:
    out += (_OPEN, "type", type_name(value), "not_captured", why, _CLOSE)


def _capture(value: Any, depth: int, b: _Budget) -> None:
    out = b.out
    if b.bytes_left <= 0:
        _cut(out, value, "limit")
        return
    tp = type(value)
    if tp is str:  # the most common leaves skip the dispatch
        _text(value, b, "str")
        return
    if tp is int:
        if -_I64 <= value < _I64:
            b.bytes_left -= _NODE
            out += (_OPEN, "type", "int", "value", value, _CLOSE)
            return
    elif tp is float:
        if value - value == 0.0:
            b.bytes_left -= _NODE
            out += (_OPEN, "type", "float", "value", value, _CLOSE)
            return
    elif tp is bool or value is None:
        b.bytes_left -= _NODE
        out += (_OPEN, "type", _SCALAR_NAME[tp], "value", value, _CLOSE)
        return
    handler, tname, _, learned = _DISPATCH.get(id(tp)) or _classify(tp)
    if learned and b.type_redacted(tname):  # globs name user types; builtins are never matched
        out += (_OPEN, "type", tname, "not_captured", "redacted", _CLOSE)
        return
    mark = len(out)
    try:
        handler(value, depth, b, tname)
    except Exception as exc:  # e.g. a dict resized by another thread: the rest of the capture goes on
        del out[mark:]  # what the handler wrote before failing
        out += (_OPEN, "type", type_name(value), "not_captured", "error", "error", type_name(exc), _CLOSE)


# --- scalars and text ---------------------------------------------------------------------

def _int_text(v: int) -> str:
    # str() of a huge int is quadratic and refused past 4300 digits on 3.11+; hex is neither
    return str(v) if v.bit_length() < 12000 else hex(v)


def _scalar(value: Any, depth: int, b: _Budget, tname: str) -> None:
    b.bytes_left -= _NODE
    b.out += (_OPEN, "type", tname, "value", value, _CLOSE)


def _int(value: int, depth: int, b: _Budget, tname: str) -> None:
    if -_I64 <= value < _I64:
        _scalar(value, depth, b, tname)
    else:
        _text(_int_text(value), b, tname, scan=False)  # beyond int64 JSON readers lose digits


def _float(value: float, depth: int, b: _Budget, tname: str) -> None:
    _scalar(value if value - value == 0.0 else repr(value), depth, b, tname)  # JSON has no nan/inf


def _text(s: str, b: _Budget, tname: str, scan: bool = True) -> None:
    n = len(s)
    if scan and b.value_redacted(s if n <= b.scan else s[: b.scan]):
        b.bytes_left -= _NODE
        b.out += (_OPEN, "type", tname, "not_captured", "redacted", _CLOSE)
        return
    limit = b.max_string
    if n > limit:
        s = s[:limit]
    # JSON escapes non-ASCII as \uXXXX: six characters each
    b.bytes_left -= _NODE + (len(s) if s.isascii() else 6 * len(s))
    if n <= limit:
        b.out += (_OPEN, "type", tname, "value", s, _CLOSE)
    else:
        b.out += (_OPEN, "type", tname, "value", s, "truncated", True, "size", n, _CLOSE)


def _bytes(value: Any, depth: int, b: _Budget, tname: str) -> None:
    base = bytes if issubclass(type(value), bytes) else bytearray
    n = base.__len__(value)
    if b.value_redacted(bytes(base.__getitem__(value, slice(0, b.scan))).decode("latin-1")):  # raw buffers
        b.bytes_left -= _NODE
        b.out += (_OPEN, "type", tname, "not_captured", "redacted", _CLOSE)
        return
    head = bytes(base.__getitem__(value, slice(0, b.max_string)))
    b.bytes_left -= _NODE + 4 * len(head)
    b.out += (_OPEN, "type", tname, "value", repr(head))
    if n > len(head):
        b.out += ("truncated", True, "size", n)
    b.out.append(_CLOSE)


def _as_text(to_text: Callable[[Any], str]) -> Callable[..., None]:
    # the text of a date, Decimal or UUID is the stdlib's: no secret pattern to look for
    return lambda value, depth, b, tname: _text(to_text(value), b, tname, scan=False)


def _iso(value: Any) -> str:
    # isoformat() calls tzinfo.utcoffset(): only the stdlib's own tzinfo types are trusted to run
    tz = value.tzinfo
    if tz is None or type(tz) is datetime.timezone or type(tz) is _ZONEINFO:
        return value.isoformat()
    return f"{value.replace(tzinfo=None).isoformat()} [{type_name(tz)}]"


# --- containers and objects ---------------------------------------------------------------

def _enter(value: Any, depth: int, b: _Budget, tname: str, size: Optional[int]) -> bool:
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
        b.out += (_OPEN, "type", tname, "not_captured", why, "size", size, _CLOSE)
    else:
        b.out += (_OPEN, "type", tname, "not_captured", why, _CLOSE)
    return True


def _collection(value: Any, depth: int, b: _Budget, tname: str, size: int, items: Any,
                kind: str = "elements", each: Optional[Callable[[Any, int, _Budget], Any]] = None) -> None:
    if _enter(value, depth, b, tname, size):
        return
    each = each or _capture
    out = b.out
    out += (_OPEN, "type", tname, kind, _LIST)
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
        out += (_CLOSE, "size", size, "truncated", True, _CLOSE)
    else:
        out += (_CLOSE, "size", size, _CLOSE)


def _sequence(base: type) -> Callable[..., None]:
    def handler(value: Any, depth: int, b: _Budget, tname: str) -> None:
        head = base.__getitem__(value, slice(0, b.max_items))  # a plain list/tuple even for subclasses
        _collection(value, depth, b, tname, base.__len__(value), head)
    return handler


def _unordered(base: type) -> Callable[..., None]:
    def handler(value: Any, depth: int, b: _Budget, tname: str) -> None:
        head = _islice(base.__iter__(value), b.max_items)  # walks the table; nothing is hashed
        _collection(value, depth, b, tname, base.__len__(value), head)
    return handler


def _dict(value: dict, depth: int, b: _Budget, tname: str) -> None:
    # dict.items reads the table directly: no user __iter__/__getitem__, no key hashing
    head = _islice(dict.items(value), b.max_items)
    _collection(value, depth, b, tname, dict.__len__(value), head, "entries", _entry)


def _entry(item: Tuple[Any, Any], depth: int, b: _Budget) -> None:
    """One `[key, value]` pair of a dict."""
    k, v = item
    b.out.append(_LIST)
    if type(k) is str:
        _text(k, b, "str")
        redact = b.name_redacted(k)
    else:
        _capture(k, depth, b)
        redact = issubclass(type(k), str) and b.name_redacted(str.__str__(k))  # e.g. a str-valued Enum key
    if redact:
        _cut(b.out, v, "redacted")
    else:
        _capture(v, depth, b)
    b.out.append(_CLOSE)


def _with_fields(pairs_of: Callable[[Any, int, _Budget], Any]) -> Callable[..., None]:
    """A handler for kinds shown as `fields`; `pairs_of` yields (name, value) and may first write
    more keys and values of the node."""
    def handler(value: Any, depth: int, b: _Budget, tname: str) -> None:
        if _enter(value, depth, b, tname, None):
            return
        out = b.out
        try:
            out += (_OPEN, "type", tname)
            pairs = pairs_of(value, depth, b)
            out += ("fields", _OPEN)
            count, truncated = 0, False
            for fname, fvalue in pairs:
                if count >= b.max_fields or b.bytes_left <= 0:
                    truncated = True
                    break
                out.append(fname)
                if b.name_redacted(fname):
                    _cut(out, fvalue, "redacted")
                else:
                    _capture(fvalue, depth + 1, b)
                count += 1
                b.bytes_left -= len(fname)
            out += (_CLOSE, "truncated", True, _CLOSE) if truncated else (_CLOSE, _CLOSE)
        finally:
            b.path.discard(id(value))
    return handler


def _exception_fields(value: BaseException, depth: int, b: _Budget) -> Any:
    b.out.append("args")
    _capture(_EXC_ARGS.__get__(value), depth + 1, b)
    # BaseException's own members (__suppress_context__ ...) are interpreter state, not data
    return ((k, v) for k, v in iter_fields(value) if not k.startswith("__"))


def _named_tuple_fields(value: tuple, depth: int, b: _Budget) -> Any:
    names = safe_getattr(type(value), "_fields")
    return zip(names, tuple.__getitem__(value, slice(0, len(names))))


_object = _with_fields(lambda value, depth, b: iter_fields(value))
_exception = _with_fields(_exception_fields)
_named_tuple = _with_fields(_named_tuple_fields)


def _enum(value: enum.Enum, depth: int, b: _Budget, tname: str) -> None:
    state = instance_dict(value) or {}
    name = state.get("_name_")
    v = state.get("_value_")
    b.bytes_left -= _NODE
    b.out += (_OPEN, "type", tname, "enum", name if type(name) is str else None)
    if id(type(v)) in _JSON_SCALARS:
        b.out += ("value", v)
    b.out.append(_CLOSE)


def _subclass(base_handler: Callable[..., None], to_base: Optional[Callable[[Any], Any]]) -> Callable[..., None]:
    """Subclasses of builtins: read as the base type (its C methods), named by their own type."""
    def handler(value: Any, depth: int, b: _Budget, tname: str) -> None:
        base_handler(to_base(value) if to_base else value, depth, b, tname)
    return handler


# --- one-line summaries: modules, functions, classes, code ----------------------------------

def _summary(describe: Callable[[Any], str]) -> Callable[..., None]:
    def handler(value: Any, depth: int, b: _Budget, tname: str) -> None:
        b.bytes_left -= _NODE + 40
        b.out += (_OPEN, "type", tname, "summary", describe(value)[: b.max_string], _CLOSE)
    handler.describe = describe  # type: ignore[attr-defined]  # safe_repr's text for the same kinds
    return handler


def _class_name(cls: type) -> str:
    mod, qual = _TYPE_MODULE.__get__(cls), _TYPE_QUALNAME.__get__(cls)  # type's C getsets
    return qual if mod == "builtins" or type(mod) is not str else f"{mod}.{qual}"


def _function_name(f: types.FunctionType) -> str:
    mod = f.__module__
    return f"{mod}.{f.__qualname__}" if type(mod) is str else f.__qualname__


def _method_name(m: types.MethodType) -> str:
    func = m.__func__
    return _function_name(func) if type(func) is types.FunctionType else type_name(func)


def _code_text(c: types.CodeType) -> str:
    return f"{code_name(c)} at {c.co_filename}:{c.co_firstlineno}"


def _module_name(m: types.ModuleType) -> str:
    name = dict.get(_MODULE_DICT.__get__(m) or {}, "__name__")
    return name if type(name) is str else "?"


_EXC_ARGS = BaseException.__dict__["args"]
_TYPE_MODULE = type.__dict__["__module__"]
_TYPE_QUALNAME = type.__dict__["__qualname__"]
_MODULE_DICT = types.ModuleType.__dict__["__dict__"]
try:
    from zoneinfo import ZoneInfo as _ZONEINFO
except ImportError:  # builds without zoneinfo
    _ZONEINFO = None
_JSON_SCALARS = {id(int), id(str), id(bool), id(float)}

# exact stdlib value types whose text form is computed by the stdlib alone
_TEXT_TYPES = (complex, datetime.datetime, datetime.time, datetime.date, datetime.timedelta, decimal.Decimal, uuid.UUID)
_TEXT_OF: Dict[int, Callable[[Any], str]] = {
    id(t): f for t, f in zip(_TEXT_TYPES, (repr, _iso, _iso, datetime.date.isoformat, str, str, str))
}
_CLASS_SUMMARY = _summary(_class_name)
_MODULE_SUMMARY = _summary(_module_name)
_QUALNAME = _summary(lambda g: g.__qualname__)

# id(type) -> (handler, type name, type, learned): ids because hashing a type may run a metaclass __hash__;
# holding the type keeps its id from being reused while the entry exists
_DISPATCH: Dict[int, Tuple[Callable[..., None], str, type, bool]] = {
    id(t): (h, _class_name(t), t, False) for t, h in (
        (int, _int), (bool, _scalar), (float, _float), (type(None), _scalar), (bytes, _bytes), (bytearray, _bytes),
        (list, _sequence(list)), (tuple, _sequence(tuple)), (set, _unordered(set)), (frozenset, _unordered(frozenset)),
        (collections.deque, _unordered(collections.deque)), (dict, _dict),
        (type, _CLASS_SUMMARY), (types.ModuleType, _MODULE_SUMMARY),
        (types.FunctionType, _summary(_function_name)), (types.MethodType, _summary(_method_name)),
        (types.BuiltinFunctionType, _summary(lambda f: f.__name__)), (types.CodeType, _summary(_code_text)),
        (types.FrameType, _summary(lambda f: f"{_code_text(f.f_code)} line {f.f_lineno}")),
        (types.TracebackType, _summary(lambda t: f"{_code_text(t.tb_frame.f_code)} line {t.tb_lineno}")),
        (types.GeneratorType, _QUALNAME), (types.CoroutineType, _QUALNAME), (types.AsyncGeneratorType, _QUALNAME),
        *((t, _as_text(_TEXT_OF[id(t)])) for t in _TEXT_TYPES),
        *((t, _summary(type_name)) for t in (
            types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType, memoryview, property,
            types.ClassMethodDescriptorType, types.GetSetDescriptorType, types.MemberDescriptorType, staticmethod,
            classmethod)),
    )
}
_BUILTIN_COUNT = len(_DISPATCH)
_SCALAR_NAME = {bool: _DISPATCH[id(bool)][1], type(None): _DISPATCH[id(type(None))][1]}
_LEARNED_MAX = 2048
_BASES = ((dict, None), (list, None), (tuple, None), (set, None), (frozenset, None), (collections.deque, None),
          (str, str.__str__), (bytes, None), (bytearray, None), (int, int.__index__), (float, float.__float__))


def _classify(tp: type) -> Tuple[Callable[..., None], str, type, bool]:
    """The handler for a type seen for the first time; issubclass on builtin bases runs no user code."""
    handler: Callable[..., None] = _object
    if issubclass(tp, type):
        handler = _CLASS_SUMMARY
    elif issubclass(tp, BaseException):
        handler = _exception
    elif issubclass(tp, enum.Enum):
        handler = _enum
    elif issubclass(tp, types.ModuleType):
        handler = _MODULE_SUMMARY
    elif issubclass(tp, tuple) and _has_fields(tp):
        handler = _named_tuple
    else:
        for base, to_base in _BASES:
            if issubclass(tp, base):
                handler = _subclass(_text_handler if base is str else _DISPATCH[id(base)][0], to_base)
                break
    if len(_DISPATCH) > _BUILTIN_COUNT + _LEARNED_MAX:  # classes made at run time must not grow it forever
        for key in list(_DISPATCH)[_BUILTIN_COUNT:]:
            _DISPATCH.pop(key, None)
    entry = _DISPATCH[id(tp)] = (handler, _class_name(tp), tp, True)
    return entry


def _text_handler(value: str, depth: int, b: _Budget, tname: str) -> None:
    return _text(value, b, tname)


def _has_fields(tp: type) -> bool:
    try:
        names = safe_getattr(tp, "_fields")
    except UnsafeAccess:
        return False
    return type(names) is tuple and all(type(n) is str for n in names)


# --- safe_repr ------------------------------------------------------------------------------

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
    return max_len + 1 + _SCAN_MARGIN


def _emit(out: List[str], room: List[int], text: str) -> None:
    out.append(text)
    room[0] -= len(text)


def _render(v: Any, out: List[str], rules: Optional[RedactionRules], depth: int, room: List[int]) -> None:
    tid = id(type(v))
    if tid == id(str):
        secret = rules is not None and rules.is_redacted_value(v[: room[0] + _SCAN_MARGIN])
        _emit(out, room, "[REDACTED]" if secret else repr(v[: room[0]]))
    elif tid == id(int):
        _emit(out, room, _int_text(v))
    elif tid in _REPR_SCALARS:
        _emit(out, room, repr(v))
    elif tid == id(bytes) or tid == id(bytearray):
        secret = rules is not None and rules.is_redacted_value(bytes(v[: room[0] + _SCAN_MARGIN]).decode("latin-1"))
        _emit(out, room, "[REDACTED]" if secret else repr(v[: room[0]]))
    elif tid in _BRACKETS:
        _render_container(v, tid, out, rules, depth, room)
    elif tid in _TEXT_OF:
        _emit(out, room, _TEXT_OF[tid](v))
    else:
        tp = type(v)
        handler, name, _, learned = _DISPATCH.get(tid) or _classify(tp)
        describe = getattr(handler, "describe", None)
        if learned and rules is not None and rules.is_redacted_type(name):
            _emit(out, room, "[REDACTED]")
        elif describe is not None:
            _emit(out, room, f"<{name} {describe(v)}>")
        elif handler is _enum:
            _emit(out, room, f"{_TYPE_QUALNAME.__get__(tp)}.{(instance_dict(v) or {}).get('_name_')}")
        else:
            _emit(out, room, f"<{name} at {id(v):#x}>")


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
            if is_dict:
                key, item = item
                _render(key, out, rules, depth + 1, room)
                _emit(out, room, ": ")
                if rules is not None and type(key) is str and rules.is_redacted_name(key):
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
