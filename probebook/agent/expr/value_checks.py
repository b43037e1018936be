"""Which values an expression may operate on, so that an operation runs no user code.

An operation runs only when every value it would touch is a builtin value, a subclass of
int/float/str/bytes that inherits the dunders the operation uses (IntEnum, StrEnum), or, where only
identity matters, a plain object whose `__eq__`/`__hash__` are `object`'s. Values are recognised by
the `id` of their exact type, because hashing a type could call a metaclass `__hash__`. The
operators (`operators`) and calls (`calls`) of the language check their operands here first.

>>> import enum
>>> class Level(enum.IntEnum):
...     HIGH = 3
>>> operand(Level.HIGH, ("__add__",), "'+'"), truth([0])
(3, True)
>>> from probebook.agent.expr.work import arm; arm()  # a fresh hit, without redaction rules
>>> deep({"k": [object()]}, HASH, "a set display")  # identity, no user code; the work units of the walk
70
"""

from __future__ import annotations

import collections
import datetime as _dt
import sys
import types
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from probebook.errors import EvaluationError

from ..capture.redaction import key_name
from ..capture.safe_access import MISSING, _lookup_in_mro, mro_of, type_name
from .work import FREE_ITEMS, charge, left, redacted_names, secret_shaped, text_units

__all__ = ["MAX_ITEMS", "MAX_INT_BITS", "NUMBERS", "int_units", "digits_units", "no_redacted_entries", "redacted_pair", "hash_spread", "walk", "EQ", "ORDER", "HASH", "REPR", "STRICT", "ATOMS", "ARITH_ATOMS", "TEXT", "KIND",
           "SEQ", "MAP", "SET", "ITEMS", "RANGE", "fail", "special_atom", "inherits_builtin", "downcast",
           "user_ok", "operand", "deep", "keys_ok", "iterable", "truth", "is_int", "short_repr"]

MAX_ITEMS = 1_000_000  # items or characters one operation may produce or inspect
MAX_INT_BITS = 33_220  # about 10**4 decimal digits
_MAX_NEST = 32
_ITEM_UNITS = 2  # the work units of checking one item in `deep` (a walk is Python, a copy or a scan is C)
_CONTAINER_UNITS = 32  # the work units of visiting one container in `deep`, besides one per item
_KEY_CHECK_UNITS = 8  # the work units of checking one key of a mapping against the redacted names

# the dunders an operation would call on a user value (see `operand` and `deep`)
EQ = ("__eq__", "__ne__")
ORDER = EQ + ("__lt__", "__le__", "__gt__", "__ge__")
HASH = ("__eq__", "__hash__")
REPR = ("__str__", "__repr__")
STRICT = None  # as `dunders`: no user object at all, not even a plain one

_NoneType = type(None)
_ATOM_TYPES = (int, float, complex, bool, str, bytes, bytearray, _NoneType, type, _dt.date, _dt.timedelta, _dt.timezone)
ATOMS = {id(t) for t in _ATOM_TYPES}  # grows by decimal.Decimal once one is seen
ARITH_ATOMS = frozenset(ATOMS)  # the operands of the compiler's plain arithmetic path: never a Decimal
_INTS = {id(int), id(bool)}
NUMBERS = {id(int), id(bool), id(float)}  # atoms whose `+`, `-` and comparisons cost next to nothing
TEXT = {id(str), id(bytes), id(bytearray)}
SEQ, MAP, SET, ITEMS, RANGE = range(5)
_od = collections.OrderedDict()
# id(exact builtin container type) -> its kind
KIND: Dict[int, int] = {
    id(list): SEQ, id(tuple): SEQ, id(type({}.values())): SEQ, id(type(_od.values())): SEQ,
    id(dict): MAP, id(collections.OrderedDict): MAP, id(collections.defaultdict): MAP,
    id(set): SET, id(frozenset): SET, id(type({}.keys())): SET, id(type(_od.keys())): SET,
    id(type({}.items())): ITEMS, id(type(_od.items())): ITEMS, id(range): RANGE,
}
_DOWNCAST: Dict[int, Callable[[Any], Any]] = {
    id(int): int.__int__, id(float): float.__float__, id(str): str.__str__,
    id(bytes): lambda v: bytes.__getitem__(v, slice(None)),
}
_BUILTIN_OWNERS = {id(object), id(int), id(float), id(str), id(bytes)}
_SLOT_TYPES = (types.WrapperDescriptorType, types.MethodDescriptorType)


def fail(message: str) -> EvaluationError:
    """The error an expression stops with; the caller raises it."""
    return EvaluationError(message)


def special_atom(v: Any) -> bool:
    """datetime/time whose tzinfo is C code, and decimal.Decimal: pure C values outside ATOMS."""
    t = type(v)
    if t is _dt.datetime or t is _dt.time:
        tz = v.tzinfo
        zi = sys.modules.get("zoneinfo")
        return tz is None or type(tz) is _dt.timezone or (zi is not None and type(tz) is zi.ZoneInfo)
    dec = sys.modules.get("decimal")
    if dec is not None and t is dec.Decimal:
        ATOMS.add(id(t))
        return True
    return False


def inherits_builtin(t: type, name: str) -> bool:
    """True when `t` has no `name` or the one it has is a C slot of object/int/float/str/bytes."""
    impl = _lookup_in_mro(t, name)
    if impl is MISSING or impl is None:
        return True
    it = type(impl)
    return (it is _SLOT_TYPES[0] or it is _SLOT_TYPES[1]) and id(impl.__objclass__) in _BUILTIN_OWNERS


def downcast(t: type) -> Optional[Callable[[Any], Any]]:
    """The conversion of a subclass of int/float/str/bytes to its builtin base, or None."""
    for klass in mro_of(t):
        conv = _DOWNCAST.get(id(klass))
        if conv is not None:
            return conv
    return None


def user_ok(t: type, dunders: Optional[Sequence[str]]) -> bool:
    """A user type is fine for an operation when it inherits every dunder the operation calls."""
    return dunders is not None and all(inherits_builtin(t, d) for d in dunders)


def _refusal(v: Any, what: str, dunders: Optional[Sequence[str]]) -> EvaluationError:
    t = type(v)
    for d in dunders or ():
        if not inherits_builtin(t, d):
            return fail(f"{what} would call {type_name(v)}.{d}; probes do not run user code")
    return fail(f"{what} applies to builtin values; {type_name(v)} is not one")


def operand(v: Any, dunders: Sequence[str], what: str) -> Any:
    """`v` as a builtin value: itself, or an int/float/str/bytes subclass downcast when it inherits `dunders`."""
    t = type(v)
    if id(t) in ATOMS or id(t) in KIND or special_atom(v):
        return v
    conv = downcast(t)
    if conv is None or not user_ok(t, dunders):
        raise _refusal(v, what, dunders)
    return conv(v)


def deep(value: Any, dunders: Optional[Sequence[str]], what: str, keys_only: bool = False) -> int:
    """`walk` without its breakdown: the work units it charged."""
    return walk(value, dunders, what, keys_only)[0]


def walk(value: Any, dunders: Optional[Sequence[str]], what: str, keys_only: bool = False,
         weight: int = 1) -> Tuple[int, int]:
    """Refuse unless every value reachable through builtin containers is safe for `dunders`.

    Charges the hit's work budget (`work`) for what it visits, items and characters of text, before
    visiting each container, and returns (those units, the characters of text among them): about what
    the operation itself will touch. With `weight`, the caller will charge `weight` times the walk for
    the operation (`str()`: 4): the walk stops as soon as that could not be paid."""
    tid = id(type(value))
    compares = dunders is not None and "__eq__" in dunders  # equal, ordered or hashed: a guess can be tested
    if tid in ATOMS:
        chars = len(value) if tid in TEXT else 0
        units = text_units(chars)
        if units:
            charge(units, what)
        if compares and chars:
            secret_shaped(value, what)
        return units, chars
    todo = [(value, 0)]
    budget = MAX_ITEMS
    seen: Dict[int, bool] = {}
    items = chars = 0
    allowed = left()
    red = None if keys_only else redacted_names()
    while todo:
        v, depth = todo.pop()
        t = type(v)
        kind = KIND.get(id(t))
        if kind is None:
            if id(t) in TEXT:
                chars += len(v)
            elif id(t) not in ATOMS and not special_atom(v):
                ok = seen.get(id(t))
                if ok is None:
                    ok = seen[id(t)] = user_ok(t, dunders)
                if not ok:
                    raise _refusal(v, what, dunders)
            continue
        if kind == RANGE:  # ints only, and possibly too long for len()
            continue
        if depth > _MAX_NEST:
            raise fail(f"{what}: containers nest more than {_MAX_NEST} levels deep")
        n = len(v)
        budget -= n
        if budget < 0:
            raise fail(f"{what} would inspect more than {MAX_ITEMS} items")
        items += _ITEM_UNITS * n + _CONTAINER_UNITS
        if red is not None and kind == MAP:  # its names are checked below: charged with the visit
            items += _KEY_CHECK_UNITS * n
        if weight * (items + text_units(chars)) > allowed:
            charge(weight * (items + text_units(chars)), what)  # raises OverBudget before the walk goes on
        if kind == MAP:
            parts: Tuple[Any, ...] = (dict.keys(v),) if keys_only and depth == 0 else (dict.keys(v), dict.values(v))
        else:
            parts = (v,)
        if red is not None:
            _no_redacted_entry(v, kind, red, what)
        for part in parts:
            found = _atom_chars(part)
            if compares and found:  # any text among them (found < 0: not all atoms; their texts are here too)
                for e in part:
                    if id(type(e)) in TEXT:
                        secret_shaped(e, what)
            if found < 0:  # each item is queued and looked at again: it costs more than one unit
                items += n
                if weight * (items + text_units(chars)) > allowed:
                    charge(weight * (items + text_units(chars)), what)
                todo.extend((e, depth + 1) for e in part)
            else:
                chars += found
    units = items + text_units(chars)
    charge(units, what)
    return units, chars


def _no_redacted_entry(v: Any, kind: int, red: Callable[[str], bool], what: str) -> None:
    """Refuse to read every entry of a mapping (or a `(name, value)` pair) whose name is redacted: its value
    would leave through the result (`str(creds)`, `list(creds.values())`)."""
    if kind == MAP:
        for k in dict.keys(v):
            name = key_name(k)
            if name is not None and red(name):
                raise fail(f"{what} would read the redacted entry {name[:40]!r}; read the other entries by name")
    elif redacted_pair(v, red):
        raise fail(f"{what} would read the value of the redacted pair {key_name(v[0])!r}")


def redacted_pair(v: Any, red: Callable[[str], bool]) -> bool:
    """A `(name, value)` tuple or list whose name is redacted (`("Authorization", "Bearer ...")`)."""
    if (type(v) is tuple or type(v) is list) and len(v) == 2:
        name = key_name(v[0])
        return name is not None and red(name)
    return False


def _atom_chars(values: Any) -> int:
    """The characters of the text among `values` when all are atoms, else -1."""
    if len(values) <= 8:  # a few: a plain loop is cheaper than building the set below
        chars = 0
        for v in values:
            tid = id(type(v))
            if tid in TEXT:
                chars += len(v)
            elif tid not in ATOMS:
                return -1
        return chars
    kinds = _kinds(values)
    if not kinds <= ATOMS:
        return -1
    if kinds.isdisjoint(TEXT):
        return 0
    if kinds <= TEXT:
        return sum(map(len, values))
    chars = 0
    for v in values:
        if id(type(v)) in TEXT:
            chars += len(v)
    return chars


def _kinds(values: Any) -> set:
    """The ids of the exact types among `values`, in C: ids, since hashing a type could run a metaclass
    `__hash__`."""
    return set(map(id, map(type, values)))


def no_redacted_entries(mapping: Any, what: str) -> None:
    """`_no_redacted_entry` for one mapping whose entries an operation would all read (`.values()`)."""
    red = redacted_names()
    if red is not None:
        charge(_KEY_CHECK_UNITS * len(mapping), what)
        _no_redacted_entry(mapping, MAP, red, what)


def hash_spread(values: Any, what: str) -> None:
    """Charge what hashing `values` into a set or dict costs beyond linear: distinct objects with one hash
    (ints that are multiples of 2**61-1, a client can send them as JSON) are compared with each other,
    n**2 for n of them. Text is left out: its hash is salted per process, so a client cannot collide it."""
    n = len(values)
    if n <= FREE_ITEMS:
        return
    if _kinds(values) <= TEXT:
        return
    charge(n, what)  # the two passes below
    hashes = len(set(map(hash, values)))  # the values passed `deep(..., HASH)`: builtin hashes only
    crowd = len(set(map(id, values))) - hashes
    if crowd > FREE_ITEMS:
        charge((crowd * crowd) >> 2, what)


def int_units(a: int, b: int) -> int:
    """The work units of multiplying or dividing ints of these sizes (quadratic in their bits)."""
    return (int.bit_length(a) * int.bit_length(b)) >> 14


def digits_units(bits: int) -> int:
    """The work units of converting an int of `bits` bits to decimal digits or back (`str()`, a Decimal
    operand, `int()` of a Decimal): a quarter of multiplying it by itself."""
    return (bits * bits) >> 16


def keys_ok(mapping: Any, what: str) -> None:
    """A lookup compares the probe with stored keys of equal hash: they must not run a user `__eq__`."""
    if len(mapping) > FREE_ITEMS:
        charge(len(mapping), what)  # the scan below visits every key
    if _atom_chars(mapping) < 0:
        deep(mapping, EQ, what, keys_only=True)


def iterable(v: Any, what: str) -> Any:
    """A builtin container or text to iterate (a user iterable would run `__iter__`), at most MAX_ITEMS long."""
    tid = id(type(v))
    if tid not in KIND and tid not in TEXT:
        raise fail(f"{what} needs a builtin container; {type_name(v)} is not one")
    if len(v) > MAX_ITEMS:
        raise fail(f"{what} would touch {len(v)} items; the limit is {MAX_ITEMS}")
    return v


def truth(v: Any) -> bool:
    """`bool(v)` when that runs no user `__bool__`/`__len__`."""
    t = type(v)
    if id(t) in ATOMS or id(t) in KIND or special_atom(v) or user_ok(t, ("__bool__", "__len__")):
        return bool(v)
    raise fail(f"truth of {type_name(v)} would call its __bool__/__len__; compare explicitly, e.g. `x is not None`")


def is_int(v: Any) -> bool:
    """An exact int or bool."""
    return id(type(v)) in _INTS


def short_repr(v: Any) -> str:
    """A value for an error message: the `repr` of a builtin atom, else `<type>`."""
    text = repr(v) if id(type(v)) in ATOMS else f"<{type_name(v)}>"
    return text if len(text) <= 60 else text[:57] + "..."
