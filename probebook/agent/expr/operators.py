"""The operators of restricted expressions: arithmetic, comparisons, `in` and `[]`, run on checked operands.

Each operation first checks its operands (`value_checks`): it runs only C code of builtin types,
and refuses results that would grow without bound (huge ints, repeated sequences) before computing
them. The compiler calls the plain `operator` function directly when both operands are atoms and
falls back to these for anything else.

>>> compare("<", 2, 3), binary("*", "ab", 2)
(True, 'abab')
>>> item([10, 20], -1), contains("b", {"a": 1, "b": 2})
(20, True)
"""

from __future__ import annotations

import contextlib
import math
import operator
import sys
from typing import Any, Callable, Dict, Sequence, Tuple

from ..capture.safe_access import MISSING, type_name
from .value_checks import (ATOMS, EQ, HASH, ITEMS, KIND, MAP, MAX_INT_BITS, MAX_ITEMS, ORDER, RANGE, SEQ, SET, TEXT, deep,
                           digits_units, fail, hash_spread, int_units, is_int, keys_ok, operand, redacted_pair, short_repr,
                           special_atom, user_ok)
from ..capture.redaction import key_name
from .work import FREE_TEXT, charge, compared, redacted_names, search_units, secret_shaped, text_units

__all__ = ["BINARY", "UNARY", "COMPARE", "binary", "unary", "compare", "contains", "item"]

_SIZED = TEXT | {id(list), id(tuple)}


def _add(a: Any, b: Any) -> Any:
    if id(type(a)) in TEXT and id(type(b)) in TEXT:
        charge(text_units(len(a) + len(b)), "'+'")
    return a + b


def _mul(a: Any, b: Any) -> Any:
    if is_int(a) and is_int(b):
        if int.bit_length(a) + int.bit_length(b) > MAX_INT_BITS:
            raise fail(f"'*' would produce an int over {MAX_INT_BITS} bits")
        charge(int_units(a, b), "'*'")
    else:
        for seq, n in ((a, b), (b, a)):
            if is_int(n) and id(type(seq)) in _SIZED and n > 0:
                size = len(seq) * n
                if size > MAX_ITEMS:
                    raise fail(f"'*' would produce {size} items; the limit is {MAX_ITEMS}")
                charge(text_units(size) if id(type(seq)) in TEXT else size, "'*'")
    return a * b


def _pow(a: Any, b: Any) -> Any:
    if is_int(a) and is_int(b) and b > 0:
        charge(int.bit_length(b) >> 4, "'**'")  # one squaring per bit of the exponent, even of -1
        if int.bit_length(a) > 1:
            bits = b * math.log2(abs(a))
            if bits > MAX_INT_BITS:
                raise fail(f"'**' would produce an int over {MAX_INT_BITS} bits")
            charge(int(bits * bits) >> 16, "'**'")
    return a ** b


def _floordiv(a: Any, b: Any) -> Any:
    if is_int(a) and is_int(b):
        charge(int_units(a, b), "'//'")
    return a // b


def _lshift(a: Any, b: Any) -> Any:
    if is_int(a) and is_int(b) and b > 0 and a and int.bit_length(a) + b > MAX_INT_BITS:
        raise fail(f"'<<' would produce an int over {MAX_INT_BITS} bits")
    return a << b


def _mod(a: Any, b: Any) -> Any:
    if id(type(a)) in TEXT:
        raise fail("%-formatting is not allowed; use a log template such as 'total={cart.total}'")
    if is_int(a) and is_int(b):
        charge(int_units(a, b), "'%'")
    return a % b


# symbol -> (function, forward dunder, reflected dunder)
BINARY: Dict[str, Tuple[Callable[[Any, Any], Any], str, str]] = {
    "+": (_add, "__add__", "__radd__"), "-": (operator.sub, "__sub__", "__rsub__"),
    "*": (_mul, "__mul__", "__rmul__"), "/": (operator.truediv, "__truediv__", "__rtruediv__"),
    "//": (_floordiv, "__floordiv__", "__rfloordiv__"), "%": (_mod, "__mod__", "__rmod__"),
    "**": (_pow, "__pow__", "__rpow__"), "<<": (_lshift, "__lshift__", "__rlshift__"),
    ">>": (operator.rshift, "__rshift__", "__rrshift__"), "&": (operator.and_, "__and__", "__rand__"),
    "|": (operator.or_, "__or__", "__ror__"), "^": (operator.xor, "__xor__", "__rxor__"),
}
UNARY: Dict[str, Tuple[Callable[[Any], Any], str]] = {
    "-": (operator.neg, "__neg__"), "+": (operator.pos, "__pos__"), "~": (operator.invert, "__invert__"),
}
COMPARE: Dict[str, Tuple[Callable[[Any, Any], Any], str, str]] = {
    "==": (operator.eq, "__eq__", "__eq__"), "!=": (operator.ne, "__ne__", "__ne__"),
    "<": (operator.lt, "__lt__", "__gt__"), "<=": (operator.le, "__le__", "__ge__"),
    ">": (operator.gt, "__gt__", "__lt__"), ">=": (operator.ge, "__ge__", "__le__"),
}


def binary(sym: str, a: Any, b: Any) -> Any:
    """`a <sym> b` for any operands, refused when it would run user code or grow without bound."""
    fn, fwd, rev = BINARY[sym]
    a, b = operand(a, (fwd, rev), f"'{sym}'"), operand(b, (fwd, rev), f"'{sym}'")
    if type(a) is decimal_type() or type(b) is decimal_type():
        return decimal_op(sym, fn, a, b)
    kinds = (KIND.get(id(type(a))), KIND.get(id(type(b))))
    if MAP in kinds or SET in kinds or ITEMS in kinds:  # set and dict algebra hashes and compares items
        for v, kind in zip((a, b), kinds):
            deep(v, HASH, f"'{sym}'")
            if kind is not None:
                hash_spread(v, f"'{sym}'")
    elif kinds[0] == SEQ and kinds[1] == SEQ:  # concatenation copies both
        charge(len(a) + len(b), f"'{sym}'")
    return fn(a, b)


def unary(sym: str, a: Any) -> Any:
    """`<sym>a` for `-`, `+`, `~`, refused when it would run user code."""
    fn, dunder = UNARY[sym]
    a = operand(a, (dunder,), f"unary '{sym}'")
    return decimal_op(sym, lambda x, _: fn(x), a, None) if type(a) is decimal_type() else fn(a)


_SMALL_DECIMAL = 128  # bytes: sys.getsizeof of a Decimal of up to 38 digits on 3.9-3.13 (104 to 120)
_POW_DIGITS = 100  # a Decimal power costs about the cube of its operands' digits: 1,000 took 35 ms, 3,000 0.9 s


class _NoDecimal:
    """What `decimal_type()` answers while decimal is not imported: a type no value has."""


def decimal_type() -> Any:
    """decimal.Decimal once the service has imported decimal, else `_NoDecimal`."""
    dec = sys.modules.get("decimal")
    return dec.Decimal if dec is not None else _NoDecimal


_CONTEXT: Dict[int, Any] = {}  # id(decimal module) -> the fixed context (localcontext enters a copy of it)


def decimal_context() -> Any:
    """The context Decimal arithmetic of an expression runs in: a fixed copy of Python's stock defaults (28
    digits, half-even, the default traps), never the service thread's context nor a `DefaultContext` the
    service changed, so an expression neither sets that context's flags nor inherits a precision that would
    make it slow. Nothing to enter while decimal is not imported (no Decimal can exist)."""
    dec = sys.modules.get("decimal")
    if dec is None:
        return contextlib.nullcontext()
    ctx = _CONTEXT.get(id(dec))
    if ctx is None:
        ctx = _CONTEXT[id(dec)] = dec.Context(prec=28, rounding=dec.ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999,
                                              traps=[dec.InvalidOperation, dec.DivisionByZero, dec.Overflow],
                                              flags=[], capitals=1, clamp=0)
    return dec.localcontext(ctx)


def _int_like(v: Any) -> bool:
    """An int or a subclass of int (IntEnum, a Count(int)): a Decimal operation converts it."""
    return issubclass(type(v), int)  # type(v): never v.__class__, which could be a property


def _has_decimal(values: Any) -> bool:
    return id(decimal_type()) in set(map(id, map(type, values)))


def decimal_ints(values: Any, what: str, times: int = 1, seen: bool = False) -> None:
    """When a Decimal is among `values` (a builtin container; `seen`: one is known to meet them), charge
    converting each int over 1,024 bits among them to decimal digits, `times` over (a sort compares each
    item about log2(n) times): comparing or adding a Decimal and an int converts the int first, 1.35 s for
    one of 10**6 bits."""
    if not seen and not _has_decimal(values):
        return
    units = 0
    for v in values:
        if _int_like(v) and int.bit_length(v) > 1024:
            units += digits_units(int.bit_length(v))
    if units:
        charge(units * times, what)


def decimal_digits(v: Any, what: str) -> int:
    """The digits of a Decimal's coefficient (or of an int made a Decimal), its reading charged first."""
    if _int_like(v):
        charge(digits_units(int.bit_length(v)), what)  # made a Decimal: converted to decimal digits, as str()
        return int(int.bit_length(v) * 0.30103) + 1  # at most one digit too many
    if type(v) is not decimal_type():
        return 0
    charge(max(0, sys.getsizeof(v) - _SMALL_DECIMAL) >> 2, what)  # its size grows with the digits, which
    return len(v.as_tuple().digits)  # as_tuple() copies; up to 38 digits are free


def decimal_op(sym: str, fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    """An operation with a Decimal operand, in `decimal_context()`; a power of more than `_POW_DIGITS` digits
    is refused before it runs."""
    what = f"'{sym}'"
    digits = max(decimal_digits(a, what), decimal_digits(b, what))
    if sym == "**" and digits > _POW_DIGITS:
        raise fail(f"'**' with a Decimal of {digits} digits is not allowed (at most {_POW_DIGITS}): its cost grows "
                   f"with the cube of the digits")
    with decimal_context():
        return fn(a, b)


def _eq_ready(v: Any, dunders: Sequence[str], what: str) -> None:
    t = type(v)
    if not (id(t) in ATOMS or id(t) in KIND or special_atom(v) or user_ok(t, dunders)):
        raise fail(f"{what} would call {type_name(v)}.__eq__; compare a field (a.id == b.id) or use `is`")


def compare(sym: str, a: Any, b: Any) -> Any:
    """One comparison of `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`; user `__eq__` is never called."""
    if sym == "in":
        return contains(a, b)
    if sym == "not in":
        return not contains(a, b)
    fn, fwd, rev = COMPARE[sym]
    what = f"'{sym}'"
    if sym == "==" or sym == "!=":  # objects that inherit object.__eq__ compare by identity, as in Python
        _eq_ready(a, EQ, what)
        _eq_ready(b, EQ, what)
        dunders: Sequence[str] = EQ
    else:
        a, b = operand(a, (fwd, rev), what), operand(b, (fwd, rev), what)
        dunders = ORDER
    if type(a) is decimal_type() or type(b) is decimal_type():  # an int compared is made a Decimal first
        return decimal_op(sym, fn, a, b)
    if id(type(a)) in KIND and id(type(b)) in KIND:  # container against container compares items
        deep(a, dunders, what)
        deep(b, dunders, what)
        if KIND[id(type(a))] in (MAP, SET) and KIND[id(type(b))] in (MAP, SET):  # looked up in each other
            hash_spread(a, what)
            hash_spread(b, what)
    elif id(type(a)) in TEXT and id(type(b)) in TEXT:
        charge(text_units(min(len(a), len(b))), what)
        compared(a, what)  # a guess compared with a secret answers a bit each hit
        compared(b, what)
    return fn(a, b)


def contains(x: Any, c: Any) -> bool:
    """`x in c` for builtin containers and text."""
    t = type(c)
    kind = KIND.get(id(t))
    if kind is None:
        if id(t) in TEXT:
            x = x if type(x) is str and t is str else operand(x, (), "'in'")
            charge(search_units(len(c), len(x) if id(type(x)) in TEXT else 1), "'in'")
            secret_shaped(c, "'in'")
            return x in c
        if id(t) in ATOMS or special_atom(c):
            raise fail(f"'in' needs a builtin container or text on the right; {type_name(c)} is not one")
        return contains(x, operand(c, ("__contains__", "__iter__"), "'in'"))
    if kind == MAP or kind == SET:
        deep(x, HASH, "'in'")
        keys_ok(c, "'in'")
    else:
        deep(x, HASH + EQ if kind == ITEMS else EQ, "'in'")
        deep(c, EQ, "'in'")
        if type(x) is decimal_type():  # compared with each item: each big int among them converted
            decimal_ints(c, "'in'", seen=True)
        elif kind != RANGE and _int_like(x) and int.bit_length(x) > 1024 and _has_decimal(c):
            decimal_ints((x,), "'in'", times=len(c), seen=True)  # converted once per Decimal it meets
    return x in c


def item(obj: Any, key: Any) -> Any:
    """`obj[key]` on builtin sequences (int or slice keys) and dicts (never `__missing__`)."""
    t = type(obj)
    kind = KIND.get(id(t))
    if kind == MAP:
        if id(type(key)) not in ATOMS or (id(type(key)) in TEXT and len(key) > FREE_TEXT):
            deep(key, HASH, "[]")  # hashing a long text reads it once; a secret-shaped key is a guess
        elif id(type(key)) in TEXT:
            compared(key, "[]")
        keys_ok(obj, "[]")
        value = dict.get(obj, key, MISSING)
        if value is MISSING:
            raise fail(f"key {short_repr(key)} not found")
        return value
    if kind is not None or id(t) in TEXT:
        if type(key) is slice:
            for part in (key.start, key.stop, key.step):
                if part is not None and not is_int(part):
                    raise fail(f"slice bounds must be ints or None, not {type_name(part)}")
            if kind != RANGE:  # the slice is a copy
                size = len(range(*key.indices(len(obj))))
                charge(text_units(size) if id(t) in TEXT else size, "[]")
        elif not is_int(key):
            raise fail(f"index of {type_name(obj)} must be an int or a slice, not {type_name(key)}")
        if id(t) in TEXT:
            secret_shaped(obj, "[]")
        elif len(obj) == 2 and id(type(obj[0])) in TEXT and (type(key) is slice or key in (1, -1)):
            red = redacted_names()  # the value of a (name, value) pair
            if red is not None and redacted_pair(obj, red):
                raise fail(f"reads the value of the redacted pair {key_name(obj[0])!r}")
        return obj[key]
    if id(t) in ATOMS or special_atom(obj):
        raise fail(f"[] applies to builtin containers and text; {type_name(obj)} is not one")
    return item(operand(obj, ("__getitem__",), "[]"), key)
