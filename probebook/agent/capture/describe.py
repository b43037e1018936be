"""Text forms that capture and `safe_repr` share, computed by the stdlib and type's C getsets alone.

Numbers, dates, `Decimal`s and `UUID`s of the exact stdlib types are turned into text by the
stdlib's own code; classes, functions, modules and code objects are named by reading C getsets
(never a user `__repr__`, `__name__` property or metaclass attribute).

>>> import datetime, uuid
>>> TEXT_OF[id(datetime.date)](datetime.date(2024, 5, 1)), class_name(uuid.UUID)
('2024-05-01', 'uuid.UUID')
>>> len(int_text(1 << 20000))  # hex beyond 12000 bits: str() of a huge int is quadratic
5003
"""

from __future__ import annotations

import datetime
import decimal
import types
import uuid
from typing import Any, Callable, Dict

from ..instrument.locate import code_name
from .safe_access import type_name

__all__ = ["TEXT_TYPES", "TEXT_OF", "TYPE_QUALNAME", "int_text", "iso_text", "class_name", "function_name",
           "method_name", "code_text", "module_name"]

TYPE_QUALNAME = type.__dict__["__qualname__"]  # type's C getset: `.__get__(cls)` runs no metaclass code
_TYPE_MODULE = type.__dict__["__module__"]
_MODULE_DICT = types.ModuleType.__dict__["__dict__"]
try:
    from zoneinfo import ZoneInfo as _ZONEINFO
except ImportError:  # builds without zoneinfo
    _ZONEINFO = None


def int_text(v: int) -> str:
    # str() of a huge int is quadratic and refused past 4300 digits on 3.11+; hex is neither
    return str(v) if v.bit_length() < 12000 else hex(v)


def iso_text(value: Any) -> str:
    # isoformat() calls tzinfo.utcoffset(): only the stdlib's own tzinfo types are trusted to run
    tz = value.tzinfo
    if tz is None or type(tz) is datetime.timezone or type(tz) is _ZONEINFO:
        return value.isoformat()
    return f"{value.replace(tzinfo=None).isoformat()} [{type_name(tz)}]"


# exact stdlib value types whose text form is computed by the stdlib alone
TEXT_TYPES = (complex, datetime.datetime, datetime.time, datetime.date, datetime.timedelta, decimal.Decimal, uuid.UUID)
TEXT_OF: Dict[int, Callable[[Any], str]] = {
    id(t): f for t, f in zip(TEXT_TYPES, (repr, iso_text, iso_text, datetime.date.isoformat, str, str, str))
}


def class_name(cls: type) -> str:
    mod, qual = _TYPE_MODULE.__get__(cls), TYPE_QUALNAME.__get__(cls)  # type's C getsets
    return qual if mod == "builtins" or type(mod) is not str else f"{mod}.{qual}"


def function_name(f: types.FunctionType) -> str:
    mod = f.__module__
    return f"{mod}.{f.__qualname__}" if type(mod) is str else f.__qualname__


def method_name(m: types.MethodType) -> str:
    func = m.__func__
    return function_name(func) if type(func) is types.FunctionType else type_name(func)


def code_text(c: types.CodeType) -> str:
    return f"{code_name(c)} at {c.co_filename}:{c.co_firstlineno}"


def module_name(m: types.ModuleType) -> str:
    name = dict.get(_MODULE_DICT.__get__(m) or {}, "__name__")
    return name if type(name) is str else "?"
