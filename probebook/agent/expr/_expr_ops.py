"""Runtime guards behind restricted expressions: operators, builtins and methods that run no user code.

An operation runs only when every value it would touch is a builtin value, a subclass of
int/float/str/bytes that inherits the dunders the operation uses (IntEnum, StrEnum), or, where only
identity matters, a plain object whose `__eq__`/`__hash__` are `object`'s. Values are recognised by
the `id` of their exact type, because hashing a type could call a metaclass `__hash__`.

>>> compare("<", 2, 3), binary("*", "ab", 2)
(True, 'abab')
"""

from __future__ import annotations

import builtins
import collections
import datetime as _dt
import math
import operator
import sys
import types
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from ..errors import EvaluationError
from ..capture.safe_access import MISSING, _lookup_in_mro, type_name

MAX_ITEMS = 1_000_000  # items or characters one operation may produce or inspect
MAX_INT_BITS = 33_220  # about 10**4 decimal digits
_MAX_STR_DIGITS = 5_000
_MAX_NEST = 32

EQ = ("__eq__", "__ne__")
ORDER = EQ + ("__lt__", "__le__", "__gt__", "__ge__")
HASH = ("__eq__", "__hash__")
REPR = ("__str__", "__repr__")
STRICT = None  # as `dunders`: no user object at all, not even a plain one

_NoneType = type(None)
_ATOM_TYPES = (int, float, complex, bool, str, bytes, bytearray, _NoneType, type, _dt.date, _dt.timedelta, _dt.timezone)
ATOMS = {id(t) for t in _ATOM_TYPES}  # grows by decimal.Decimal once one is seen
_INTS = {id(int), id(bool)}
_NUMBERS = {id(int), id(bool), id(float), id(complex)}
_TEXT = {id(str), id(bytes), id(bytearray)}
SEQ, MAP, SET, ITEMS, RANGE = range(5)
_od = collections.OrderedDict()
KIND: Dict[int, int] = {
    id(list): SEQ, id(tuple): SEQ, id(type({}.values())): SEQ, id(type(_od.values())): SEQ,
    id(dict): MAP, id(collections.OrderedDict): MAP, id(collections.defaultdict): MAP,
    id(set): SET, id(frozenset): SET, id(type({}.keys())): SET, id(type(_od.keys())): SET,
    id(type({}.items())): ITEMS, id(type(_od.items())): ITEMS, id(range): RANGE,
}
_SIZED = _TEXT | {id(list), id(tuple)}
_LEN = _TEXT | set(KIND)
_DOWNCAST: Dict[int, Callable[[Any], Any]] = {
    id(int): int.__int__, id(float): float.__float__, id(str): str.__str__,
    id(bytes): lambda v: bytes.__getitem__(v, slice(None)),
}
_BUILTIN_OWNERS = {id(object), id(int), id(float), id(str), id(bytes)}
_SLOT_TYPES = (types.WrapperDescriptorType, types.MethodDescriptorType)
_type_getattribute = type.__getattribute__
_TYPE_SUBCLASSCHECK = type.__dict__["__subclasscheck__"]


def _fail(message: str) -> EvaluationError:
    return EvaluationError(message)


def _special_atom(v: Any) -> bool:
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


def _inherits_builtin(t: type, name: str) -> bool:
    impl = _lookup_in_mro(t, name)
    if impl is MISSING or impl is None:
        return True
    it = type(impl)
    return (it is _SLOT_TYPES[0] or it is _SLOT_TYPES[1]) and id(impl.__objclass__) in _BUILTIN_OWNERS


def _downcast(t: type) -> Optional[Callable[[Any], Any]]:
    for klass in _type_getattribute(t, "__mro__"):
        conv = _DOWNCAST.get(id(klass))
        if conv is not None:
            return conv
    return None


def _user_ok(t: type, dunders: Optional[Sequence[str]]) -> bool:
    return dunders is not None and all(_inherits_builtin(t, d) for d in dunders)


def _refusal(v: Any, what: str, dunders: Optional[Sequence[str]]) -> EvaluationError:
    t = type(v)
    for d in dunders or ():
        if not _inherits_builtin(t, d):
            return _fail(f"{what} would call {type_name(v)}.{d}; probes do not run user code")
    return _fail(f"{what} applies to builtin values; {type_name(v)} is not one")


def operand(v: Any, dunders: Sequence[str], what: str) -> Any:
    """`v` as a builtin value: itself, or an int/float/str/bytes subclass downcast when it inherits `dunders`."""
    t = type(v)
    if id(t) in ATOMS or id(t) in KIND or _special_atom(v):
        return v
    conv = _downcast(t)
    if conv is None or not _user_ok(t, dunders):
        raise _refusal(v, what, dunders)
    return conv(v)


def deep(value: Any, dunders: Optional[Sequence[str]], what: str, keys_only: bool = False) -> None:
    """Refuse unless every value reachable through builtin containers is safe for `dunders`."""
    if id(type(value)) in ATOMS:
        return
    todo = [(value, 0)]
    budget = MAX_ITEMS
    seen: Dict[int, bool] = {}
    while todo:
        v, depth = todo.pop()
        t = type(v)
        kind = KIND.get(id(t))
        if kind is None:
            if id(t) not in ATOMS and not _special_atom(v):
                ok = seen.get(id(t))
                if ok is None:
                    ok = seen[id(t)] = _user_ok(t, dunders)
                if not ok:
                    raise _refusal(v, what, dunders)
            continue
        if kind == RANGE:  # ints only, and possibly too long for len()
            continue
        if depth > _MAX_NEST:
            raise _fail(f"{what}: containers nest more than {_MAX_NEST} levels deep")
        budget -= len(v)
        if budget < 0:
            raise _fail(f"{what} would inspect more than {MAX_ITEMS} items")
        if kind == MAP:
            parts: Tuple[Any, ...] = (dict.keys(v),) if keys_only and depth == 0 else (dict.keys(v), dict.values(v))
        else:
            parts = (v,)
        for part in parts:
            if not _all_atoms(part):
                todo.extend((e, depth + 1) for e in part)


def _all_atoms(values: Any) -> bool:
    for v in values:  # a plain loop beats map() chains here, small or large
        if id(type(v)) not in ATOMS:
            return False
    return True


def keys_ok(mapping: Any, what: str) -> None:
    """A lookup compares the probe with stored keys of equal hash: they must not run a user `__eq__`."""
    if not _all_atoms(mapping):
        deep(mapping, EQ, what, keys_only=True)


def iterable(v: Any, what: str) -> Any:
    """A builtin container or text to iterate (a user iterable would run `__iter__`), at most MAX_ITEMS long."""
    tid = id(type(v))
    if tid not in KIND and tid not in _TEXT:
        raise _fail(f"{what} needs a builtin container; {type_name(v)} is not one")
    if len(v) > MAX_ITEMS:
        raise _fail(f"{what} would touch {len(v)} items; the limit is {MAX_ITEMS}")
    return v


def truth(v: Any) -> bool:
    """`bool(v)` when that runs no user `__bool__`/`__len__`."""
    t = type(v)
    if id(t) in ATOMS or id(t) in KIND or _special_atom(v) or _user_ok(t, ("__bool__", "__len__")):
        return bool(v)
    raise _fail(f"truth of {type_name(v)} would call its __bool__/__len__; compare explicitly, e.g. `x is not None`")


def _is_int(v: Any) -> bool:
    return id(type(v)) in _INTS


def _mul(a: Any, b: Any) -> Any:
    if _is_int(a) and _is_int(b):
        if int.bit_length(a) + int.bit_length(b) > MAX_INT_BITS:
            raise _fail(f"'*' would produce an int over {MAX_INT_BITS} bits")
    else:
        for seq, n in ((a, b), (b, a)):
            if _is_int(n) and id(type(seq)) in _SIZED and n > 0 and len(seq) * n > MAX_ITEMS:
                raise _fail(f"'*' would produce {len(seq) * n} items; the limit is {MAX_ITEMS}")
    return a * b


def _pow(a: Any, b: Any) -> Any:
    if _is_int(a) and _is_int(b) and b > 0 and int.bit_length(a) > 1 and b * math.log2(abs(a)) > MAX_INT_BITS:
        raise _fail(f"'**' would produce an int over {MAX_INT_BITS} bits")
    return a ** b


def _lshift(a: Any, b: Any) -> Any:
    if _is_int(a) and _is_int(b) and b > 0 and a and int.bit_length(a) + b > MAX_INT_BITS:
        raise _fail(f"'<<' would produce an int over {MAX_INT_BITS} bits")
    return a << b


def _mod(a: Any, b: Any) -> Any:
    if id(type(a)) in _TEXT:
        raise _fail("%-formatting is not allowed; use a log template such as 'total={cart.total}'")
    return a % b


BINARY: Dict[str, Tuple[Callable[[Any, Any], Any], str, str]] = {
    "+": (operator.add, "__add__", "__radd__"), "-": (operator.sub, "__sub__", "__rsub__"),
    "*": (_mul, "__mul__", "__rmul__"), "/": (operator.truediv, "__truediv__", "__rtruediv__"),
    "//": (operator.floordiv, "__floordiv__", "__rfloordiv__"), "%": (_mod, "__mod__", "__rmod__"),
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
    kinds = (KIND.get(id(type(a))), KIND.get(id(type(b))))
    if MAP in kinds or SET in kinds or ITEMS in kinds:  # set and dict algebra hashes and compares items
        deep(a, HASH, f"'{sym}'")
        deep(b, HASH, f"'{sym}'")
    return fn(a, b)


def unary(sym: str, a: Any) -> Any:
    fn, dunder = UNARY[sym]
    return fn(operand(a, (dunder,), f"unary '{sym}'"))


def _eq_ready(v: Any, dunders: Sequence[str], what: str) -> None:
    t = type(v)
    if not (id(t) in ATOMS or id(t) in KIND or _special_atom(v) or _user_ok(t, dunders)):
        raise _fail(f"{what} would call {type_name(v)}.__eq__; compare a field (a.id == b.id) or use `is`")


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
    if id(type(a)) in KIND and id(type(b)) in KIND:  # container against container compares items
        deep(a, dunders, what)
        deep(b, dunders, what)
    return fn(a, b)


def contains(x: Any, c: Any) -> bool:
    """`x in c` for builtin containers and text."""
    t = type(c)
    kind = KIND.get(id(t))
    if kind is None:
        if id(t) in _TEXT:
            return x in c if type(x) is str and t is str else operand(x, (), "'in'") in c
        if id(t) in ATOMS or _special_atom(c):
            raise _fail(f"'in' needs a builtin container or text on the right; {type_name(c)} is not one")
        return contains(x, operand(c, ("__contains__", "__iter__"), "'in'"))
    if kind == MAP or kind == SET:
        deep(x, HASH, "'in'")
        keys_ok(c, "'in'")
    else:
        deep(x, HASH + EQ if kind == ITEMS else EQ, "'in'")
        deep(c, EQ, "'in'")
    return x in c


def _short(v: Any) -> str:
    text = repr(v) if id(type(v)) in ATOMS else f"<{type_name(v)}>"
    return text if len(text) <= 60 else text[:57] + "..."


def item(obj: Any, key: Any) -> Any:
    """`obj[key]` on builtin sequences (int or slice keys) and dicts (never `__missing__`)."""
    t = type(obj)
    kind = KIND.get(id(t))
    if kind == MAP:
        if id(type(key)) not in ATOMS:
            deep(key, HASH, "[]")
        keys_ok(obj, "[]")
        value = dict.get(obj, key, MISSING)
        if value is MISSING:
            raise _fail(f"key {_short(key)} not found")
        return value
    if kind is not None or id(t) in _TEXT:
        if type(key) is slice:
            for part in (key.start, key.stop, key.step):
                if part is not None and not _is_int(part):
                    raise _fail(f"slice bounds must be ints or None, not {type_name(part)}")
        elif not _is_int(key):
            raise _fail(f"index of {type_name(obj)} must be an int or a slice, not {type_name(key)}")
        return obj[key]
    if id(t) in ATOMS or _special_atom(obj):
        raise _fail(f"[] applies to builtin containers and text; {type_name(obj)} is not one")
    return item(operand(obj, ("__getitem__",), "[]"), key)


def _plain_class(cls: Any) -> bool:
    """A class whose metaclass keeps type's `__subclasscheck__` (so not ABCs); Enum classes qualify."""
    meta = type(cls)
    return meta is type or (_is_class(cls) and _lookup_in_mro(meta, "__subclasscheck__") is _TYPE_SUBCLASSCHECK)


def _is_class(x: Any) -> bool:
    return any(k is type for k in _type_getattribute(type(x), "__mro__"))


def isinstance_(value: Any, classes: Any) -> bool:
    for cls in classes if type(classes) is tuple else (classes,):
        if not _plain_class(cls):
            why = (f"{_type_getattribute(cls, '__qualname__')} would run its metaclass __subclasscheck__"
                   if _is_class(cls) else f"{_short(cls)} is not a class")
            raise _fail(f"isinstance() needs plain classes; {why}")
    return issubclass(type(value), classes)  # never isinstance(): it reads value.__class__ through user code


def _round(x: Any, ndigits: Any = None) -> Any:
    x = operand(x, ("__round__",), "round()")
    if ndigits is None:
        return round(x)
    if not _is_int(ndigits) or abs(ndigits) > 4000:
        raise _fail("round() ndigits must be an int between -4000 and 4000")
    return round(x, ndigits)


def _int(x: Any, base: Any = MISSING) -> int:
    x = operand(x, ("__int__", "__index__", "__trunc__"), "int()")
    dec = sys.modules.get("decimal")
    if id(type(x)) in _TEXT and len(x) > _MAX_STR_DIGITS:
        raise _fail(f"int() of text longer than {_MAX_STR_DIGITS} characters is not allowed")
    if dec is not None and type(x) is dec.Decimal and x.is_finite() and x.adjusted() > 4 * _MAX_STR_DIGITS:
        raise _fail("int() of this Decimal would be too large")
    if base is MISSING:
        return int(x)
    if not _is_int(base):
        raise _fail("int() base must be an int")
    return int(x, base)


def _str(x: Any) -> str:
    if _is_int(x) and int.bit_length(x) > MAX_INT_BITS:
        raise _fail(f"str() of an int over {MAX_INT_BITS} bits is not allowed")
    deep(x, REPR, "str()")
    return str(x)


def _minmax(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, default: Any = MISSING) -> Any:
        what = f"{fn.__name__}()"
        if len(args) == 1:
            deep(iterable(args[0], what), ORDER, what)
        else:
            for a in args:
                deep(a, ORDER, what)
        return fn(*args) if default is MISSING else fn(*args, default=default)
    return call


def _sorted(x: Any, reverse: Any = False) -> list:
    deep(iterable(x, "sorted()"), ORDER, "sorted()")
    return sorted(x, reverse=truth(reverse))


def _sum(x: Any, start: Any = 0) -> Any:
    if id(type(start)) not in _NUMBERS:
        raise _fail("sum() start must be a number")
    deep(iterable(x, "sum()"), ("__add__", "__radd__"), "sum()")
    return sum(x, start)


def _over(fn: Callable[[Any], Any], dunders: Optional[Sequence[str]]) -> Callable[..., Any]:
    """fn(iterable) after checking the iterable and, for `dunders`, its items."""
    def call(x: Any = ()) -> Any:
        what = f"{fn.__name__}()"
        iterable(x, what)
        if dunders:
            deep(x, dunders, what)
        return fn(x)
    return call


# name -> (implementation, min args, max args, allowed keywords)
CALLS: Dict[str, Tuple[Callable[..., Any], int, int, Tuple[str, ...]]] = {
    "len": (lambda x: len(x if id(type(x)) in _LEN else operand(x, ("__len__",), "len()")), 1, 1, ()),
    "isinstance": (isinstance_, 2, 2, ()),
    "type": (type, 1, 1, ()),
    "bool": (truth, 1, 1, ()),
    "abs": (lambda x: abs(operand(x, ("__abs__",), "abs()")), 1, 1, ()),
    "round": (_round, 1, 2, ()),
    "int": (_int, 1, 2, ()),
    "float": (lambda x: float(operand(x, ("__float__", "__index__"), "float()")), 1, 1, ()),
    "str": (_str, 1, 1, ()),
    "min": (_minmax(min), 1, 64, ("default",)),
    "max": (_minmax(max), 1, 64, ("default",)),
    "sorted": (_sorted, 1, 1, ("reverse",)),
    "sum": (_sum, 1, 2, ()),
    "any": (_over(any, ("__bool__", "__len__")), 1, 1, ()),
    "all": (_over(all, ("__bool__", "__len__")), 1, 1, ()),
    "list": (_over(list, ()), 0, 1, ()),
    "tuple": (_over(tuple, ()), 0, 1, ()),
    "set": (_over(set, HASH), 0, 1, ()),
    "frozenset": (_over(frozenset, HASH), 0, 1, ()),
}
# builtin names an expression may read as values: the callables above and types for isinstance()
VALUES: Dict[str, Any] = {name: getattr(builtins, name) for name in CALLS}
VALUES.update({t.__name__: t for t in (complex, bytes, bytearray, dict, range)})


def check_text(recv: Any, args: tuple) -> None:
    for a in args:
        if id(type(a)) not in ATOMS:
            deep(a, STRICT, "method argument")


def _check_join(recv: Any, args: tuple) -> None:
    for a in args:  # items must be builtin too: bytes.join reads any buffer, even a Python __buffer__
        deep(iterable(a, "join()"), STRICT, "join()")


def _check_key(recv: Any, args: tuple) -> None:
    if args:
        deep(args[0], HASH, "dict.get()")
    keys_ok(recv, "dict.get()")


def _check_items(recv: Any, args: tuple) -> None:
    deep(recv, EQ, "method")
    check_text(recv, args)


def _check_sets(recv: Any, args: tuple) -> None:
    deep(recv, HASH, "set method")
    for a in args:
        deep(iterable(a, "set method"), HASH, "set method")


def _none(recv: Any, args: tuple) -> None:
    return None


_Method = Tuple[Callable[..., Any], Callable[[Any, tuple], None]]
_TEXT_METHODS = ("startswith endswith lower upper strip lstrip rstrip split rsplit count find rfind "
                 "isdigit isalpha isalnum isspace islower isupper partition rpartition splitlines").split()
_METHOD_LIST = [(t, m, check_text) for t in (str, bytes, bytearray) for m in _TEXT_METHODS]
_METHOD_LIST += [(t, "join", _check_join) for t in (str, bytes, bytearray)]
_METHOD_LIST += [(str, m, check_text) for m in ("casefold", "title", "isidentifier")] + [(bytes, "hex", check_text)]
_METHOD_LIST += [(t, m, _none) for t in (dict, collections.OrderedDict, collections.defaultdict)
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
        conv = _downcast(type(obj))
        if conv is not None and _inherits_builtin(type(obj), name):
            obj = conv(obj)
            entry = table.get(id(type(obj)))
    if entry is None:
        raise _fail(f"{type_name(obj)}.{name}() is not an allowed method; methods apply to builtin values only")
    fn, check = entry
    check(obj, args)
    return fn(obj, *args)
