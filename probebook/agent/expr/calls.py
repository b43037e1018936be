"""What an expression may call: a few builtins and the pure methods of builtin types, each guarded.

`CALLS` holds the builtins by name with their arity and keywords; `VALUES` the builtin names an
expression may read as values; `METHODS` the whitelisted methods by name and exact receiver type,
each with the check its arguments must pass first (`value_checks`), so no call runs user code.

>>> CALLS["len"][0]([1, 2]), CALLS["sorted"][0]((3, 1, 2))
(2, [1, 2, 3])
>>> call_method("a,b", "split", (",",))
['a', 'b']
"""

from __future__ import annotations

import builtins
import collections
import sys
from functools import partial
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from ..capture.safe_access import MISSING, _lookup_in_mro, mro_of, type_attr, type_name
from .value_checks import (ATOMS, EQ, HASH, KIND, MAX_INT_BITS, ORDER, REPR, STRICT, TEXT, deep, digits_units,
                           downcast, fail, hash_spread, inherits_builtin, int_units, is_int, iterable, keys_ok, no_redacted_entries,
                           operand, short_repr, truth, walk)
from .operators import decimal_context, decimal_ints, decimal_type
from .work import charge, search_units, secret_shaped, text_units

__all__ = ["CALLS", "VALUES", "METHODS", "call_method", "check_text", "isinstance_"]

_MAX_STR_DIGITS = 5_000
_MAX_INT_DIGITS = int(MAX_INT_BITS * 0.30103)  # the decimal digits of an int of MAX_INT_BITS
_NUMBERS = {id(int), id(bool), id(float), id(complex)}
_LEN = TEXT | set(KIND)
_TYPE_SUBCLASSCHECK = type.__dict__["__subclasscheck__"]


def _plain_class(cls: Any) -> bool:
    """A class whose metaclass keeps type's `__subclasscheck__` (so not ABCs); Enum classes qualify."""
    meta = type(cls)
    return meta is type or (_is_class(cls) and _lookup_in_mro(meta, "__subclasscheck__") is _TYPE_SUBCLASSCHECK)


def _is_class(x: Any) -> bool:
    return any(k is type for k in mro_of(type(x)))


def isinstance_(value: Any, classes: Any) -> bool:
    """`isinstance()` for plain classes, read from the exact type (never `value.__class__`)."""
    if type(classes) is tuple:
        charge(len(classes), "isinstance()")
    for cls in classes if type(classes) is tuple else (classes,):
        if not _plain_class(cls):
            why = (f"{type_attr(cls, '__qualname__')} would run its metaclass __subclasscheck__"
                   if _is_class(cls) else f"{short_repr(cls)} is not a class")
            raise fail(f"isinstance() needs plain classes; {why}")
    return issubclass(type(value), classes)  # never isinstance(): it reads value.__class__ through user code


def _round(x: Any, ndigits: Any = None) -> Any:
    x = operand(x, ("__round__",), "round()")
    if type(x) is decimal_type():  # a Decimal rounds in the expression's context
        if ndigits is None:
            _decimal_int(x, "round()")
        with decimal_context():
            return round(x) if ndigits is None else round(x, _ndigits(ndigits))
    if ndigits is None:
        return round(x)
    _ndigits(ndigits)
    if is_int(x) and ndigits < 0:  # divides by 10**-ndigits
        charge(int_units(x, 10 ** -ndigits), "round()")
    return round(x, ndigits)


def _ndigits(ndigits: Any) -> int:
    if not is_int(ndigits) or abs(ndigits) > 4000:
        raise fail("round() ndigits must be an int between -4000 and 4000")
    return ndigits


def _int(x: Any, base: Any = MISSING) -> int:
    x = operand(x, ("__int__", "__index__", "__trunc__"), "int()")
    if id(type(x)) in TEXT and len(x) > _MAX_STR_DIGITS:
        raise fail(f"int() of text longer than {_MAX_STR_DIGITS} characters is not allowed")
    _decimal_int(x, "int()")
    if base is MISSING:
        return int(x)
    if not is_int(base):
        raise fail("int() base must be an int")
    return int(x, base)


def _decimal_int(x: Any, what: str) -> None:
    """Refuse making an int of a Decimal whose integer part is over `MAX_INT_BITS` (`1e30000`: 99,658 bits);
    charge the conversion from decimal digits otherwise (quadratic, as `str()` of that int)."""
    if type(x) is decimal_type() and x.is_finite() and x.adjusted() > 0:
        if x.adjusted() >= _MAX_INT_DIGITS:
            raise fail(f"{what} of this Decimal would make an int over {MAX_INT_BITS} bits")
        charge(digits_units((x.adjusted() + 1) * 10 // 3), what)


def _str(x: Any) -> str:
    if is_int(x):
        if int.bit_length(x) > MAX_INT_BITS:
            raise fail(f"str() of an int over {MAX_INT_BITS} bits is not allowed")
        charge(digits_units(int.bit_length(x)), "str()")  # decimal conversion is quadratic
    elif type(x) is not str:  # a repr: separators per item, and up to 10 characters per character of text
        units, chars = walk(x, REPR, "str()", weight=4)
        charge(3 * units + text_units(9 * chars), "str()")
    return str(x)


def _minmax(fn: Callable[..., Any], *args: Any, default: Any = MISSING) -> Any:
    """min()/max() (`fn`) after checking what they compare."""
    what = f"{fn.__name__}()"
    values = iterable(args[0], what) if len(args) == 1 else args
    if len(args) == 1:
        deep(values, ORDER, what)
    else:
        for a in args:
            deep(a, ORDER, what)
    decimal_ints(values, what)
    with decimal_context():
        return fn(*args) if default is MISSING else fn(*args, default=default)


def _sorted(x: Any, reverse: Any = False) -> list:
    n = len(iterable(x, "sorted()"))
    walked = walk(x, ORDER, "sorted()", weight=2 * max(1, n.bit_length()))[0]
    charge((n + walked) * max(1, n.bit_length()), "sorted()")  # each item is compared about log2(n) times
    decimal_ints(x, "sorted()", times=max(1, n.bit_length()))
    with decimal_context():
        return sorted(x, reverse=truth(reverse))


def _sum(x: Any, start: Any = 0) -> Any:
    if id(type(start)) not in _NUMBERS:
        raise fail("sum() start must be a number")
    deep(iterable(x, "sum()"), ("__add__", "__radd__"), "sum()")
    decimal_ints(x, "sum()")
    with decimal_context():  # Decimal items add in the expression's context
        return sum(x, start)


def _abs(x: Any) -> Any:
    x = operand(x, ("__abs__",), "abs()")
    if type(x) is not decimal_type():
        return abs(x)
    with decimal_context():
        return abs(x)


def _over(fn: Callable[[Any], Any], dunders: Optional[Sequence[str]], x: Any = ()) -> Any:
    """fn(x) after checking the iterable and, for `dunders`, its items; charged for the items it builds or
    visits (twice for a set: hashing text reads it)."""
    what = f"{fn.__name__}()"
    charge(len(iterable(x, what)), what)
    if dunders:
        units = deep(x, dunders, what)
        if dunders is HASH:  # hashing reads the items once more; colliding hashes compare pairwise
            charge(units, what)
            hash_spread(x, what)
    return fn(x)


# name -> (implementation, min args, max args, allowed keywords)
CALLS: Dict[str, Tuple[Callable[..., Any], int, int, Tuple[str, ...]]] = {
    "len": (lambda x: len(x if id(type(x)) in _LEN else operand(x, ("__len__",), "len()")), 1, 1, ()),
    "isinstance": (isinstance_, 2, 2, ()),
    "type": (type, 1, 1, ()),
    "bool": (truth, 1, 1, ()),
    "abs": (_abs, 1, 1, ()),
    "round": (_round, 1, 2, ()),
    "int": (_int, 1, 2, ()),
    "float": (lambda x: float(operand(x, ("__float__", "__index__"), "float()")), 1, 1, ()),
    "str": (_str, 1, 1, ()),
    "min": (partial(_minmax, min), 1, 64, ("default",)),
    "max": (partial(_minmax, max), 1, 64, ("default",)),
    "sorted": (_sorted, 1, 1, ("reverse",)),
    "sum": (_sum, 1, 2, ()),
    "any": (partial(_over, any, ("__bool__", "__len__")), 1, 1, ()),
    "all": (partial(_over, all, ("__bool__", "__len__")), 1, 1, ()),
    "list": (partial(_over, list, ()), 0, 1, ()),
    "tuple": (partial(_over, tuple, ()), 0, 1, ()),
    "set": (partial(_over, set, HASH), 0, 1, ()),
    "frozenset": (partial(_over, frozenset, HASH), 0, 1, ()),
}
# builtin names an expression may read as values: the callables above and types for isinstance()
VALUES: Dict[str, Any] = {name: getattr(builtins, name) for name in CALLS}
VALUES.update({t.__name__: t for t in (complex, bytes, bytearray, dict, range)})


def check_text(recv: Any, args: tuple) -> None:
    """The argument check of text methods: builtin values only; charged a search of the receiver."""
    needle = 1
    for a in args:
        if id(type(a)) not in ATOMS:
            deep(a, STRICT, "method argument")
        elif id(type(a)) in TEXT:
            needle = max(needle, len(a))
    if id(type(recv)) in TEXT:
        charge(search_units(len(recv), needle), "method")
        secret_shaped(recv, "method")


def _check_split(recv: Any, args: tuple) -> None:
    """A split also builds a string per part: at most one per character, or per separator found."""
    check_text(recv, args)
    sep = args[0] if args else None
    parts = recv.count(sep) + 1 if id(type(sep)) in TEXT and len(sep) else len(recv) // 2 + 1
    charge(parts, "split()")


def _check_join(recv: Any, args: tuple) -> None:
    for a in args:  # items must be builtin too: bytes.join reads any buffer, even a Python __buffer__
        walked = deep(iterable(a, "join()"), STRICT, "join()")
        charge(walked + text_units(len(recv) * len(a)), "join()")


def _check_key(recv: Any, args: tuple) -> None:
    if args:
        deep(args[0], HASH, "dict.get()")
    keys_ok(recv, "dict.get()")


def _check_items(recv: Any, args: tuple) -> None:
    deep(recv, EQ, "method")
    check_text(recv, args)


def _check_sets(recv: Any, args: tuple) -> None:
    deep(recv, HASH, "set method")
    hash_spread(recv, "set method")
    for a in args:
        deep(iterable(a, "set method"), HASH, "set method")
        hash_spread(a, "set method")


def _check_values(recv: Any, args: tuple) -> None:
    no_redacted_entries(recv, "values()/items()")


def _none(recv: Any, args: tuple) -> None:
    return None


_Method = Tuple[Callable[..., Any], Callable[[Any, tuple], None]]
_TEXT_METHODS = ("startswith endswith lower upper strip lstrip rstrip split rsplit count find rfind "
                 "isdigit isalpha isalnum isspace islower isupper partition rpartition splitlines").split()
_SPLITS = ("split", "rsplit", "splitlines")
_METHOD_LIST = [(t, m, _check_split if m in _SPLITS else check_text) for t in (str, bytes, bytearray)
                for m in _TEXT_METHODS]
_METHOD_LIST += [(t, "join", _check_join) for t in (str, bytes, bytearray)]
_METHOD_LIST += [(str, m, check_text) for m in ("casefold", "title", "isidentifier")] + [(bytes, "hex", check_text)]
_METHOD_LIST += [(t, m, _none if m == "keys" else _check_values) for t in (dict, collections.OrderedDict,
                                                                          collections.defaultdict)
                 for m in ("keys", "values", "items")]
_METHOD_LIST += [(t, m, _check_items) for t in (list, tuple) for m in ("count", "index")]
_METHOD_LIST += [(t, m, _check_sets) for t in (set, frozenset) for m in ("issubset", "issuperset", "isdisjoint")]
_METHOD_LIST += [(int, "bit_length", _none), (float, "is_integer", _none)]
# method name -> {id(exact receiver type): (unbound method, argument check)}
METHODS: Dict[str, Dict[int, _Method]] = {}
for _t, _m, _check in _METHOD_LIST:
    METHODS.setdefault(_m, {})[id(_t)] = (getattr(_t, _m), _check)
METHODS["get"] = {id(t): (dict.get, _check_key) for t in (dict, collections.OrderedDict, collections.defaultdict)}
del _t, _m, _check


def call_method(obj: Any, name: str, args: tuple) -> Any:
    """`obj.name(*args)` for the whitelisted pure methods of builtin types."""
    table = METHODS[name]
    entry = table.get(id(type(obj)))
    if entry is None:
        conv = downcast(type(obj))
        if conv is not None and inherits_builtin(type(obj), name):
            obj = conv(obj)
            entry = table.get(id(type(obj)))
    if entry is None:
        raise fail(f"{type_name(obj)}.{name}() is not an allowed method; methods apply to builtin values only")
    fn, check = entry
    check(obj, args)
    return fn(obj, *args)
