"""Read an object's state without running any of its code.

Capture and expressions both need an object's attributes, but `getattr` can run a user's
`__getattr__`, `__getattribute__`, properties and other descriptors. The helpers here only read
an instance `__dict__` (through the C-level getset descriptor, never a user override), slots
(member descriptors, implemented in C) and plain class attributes.

>>> class P:
...     def __init__(self): self.x = 1
...     @property
...     def boom(self): raise RuntimeError
>>> safe_getattr(P(), "x")
1
>>> safe_getattr(P(), "boom")
Traceback (most recent call last):
...
probebook.errors.UnsafeAccess: 'boom' of P is a property or descriptor; probes do not run user code
"""

from __future__ import annotations

import types
from typing import Any, Iterator, Optional, Tuple

from probebook.errors import UnsafeAccess

__all__ = ["MISSING", "safe_getattr", "class_name", "plain_text", "module_file", "module_name", "module_namespace", "class_namespace", "instance_dict", "plain_keys", "plain_namespace", "slot_names", "iter_fields", "type_name", "mro_of",
           "class_dict", "type_attr"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_GETSET = types.GetSetDescriptorType
_MEMBER = types.MemberDescriptorType
_mapping_get = dict.get
# `type`'s own C getters: type.__getattribute__(tp, "__mro__") would honour a property of that name on a
# metaclass (user code); these read the type's fields whatever its metaclass says
_MRO = type.__dict__["__mro__"].__get__
_DICT = type.__dict__["__dict__"].__get__
_NAMES = {n: type.__dict__[n].__get__ for n in ("__module__", "__qualname__", "__name__")}


def mro_of(tp: type) -> tuple:
    """`tp.__mro__`, read without a metaclass's say."""
    return _MRO(tp, type)


def class_dict(klass: type) -> Any:
    """`klass.__dict__` (a mappingproxy), read without a metaclass's say."""
    return _DICT(klass, type)


def type_attr(tp: type, name: str) -> Any:
    """`__module__`, `__qualname__` or `__name__` of a type, read without a metaclass's say."""
    return _NAMES[name](tp, type)


def plain_text(x: Any, default: str = "?") -> str:
    """`x` as an exact `str` without running its methods: a `str` subclass (a hostile `__module__`) copied
    through `str.__str__`, anything else `default`."""
    if type(x) is str:
        return x
    return str.__str__(x) if issubclass(type(x), str) else default


def type_name(obj: Any) -> str:
    """`module.QualName` of the object's type, read without touching the object."""
    tp = type(obj)
    mod = plain_text(type_attr(tp, "__module__"), "")
    qual = plain_text(type_attr(tp, "__qualname__"))
    if mod == "builtins" or not mod:
        return qual
    return f"{mod}.{qual}"


def class_name(tp: type) -> str:
    """`tp.__name__`, read without a metaclass's say."""
    return plain_text(type_attr(tp, "__name__"))


def _lookup_in_mro(tp: type, name: str) -> Any:
    for klass in mro_of(tp):
        ns = class_dict(klass)
        if ns is None:  # a C type without a namespace (seen on 3.9)
            continue
        if not _plain_class(klass, ns):
            raise UnsafeAccess(f"the namespace of class {class_name(klass)} has a key that is not a plain str; "
                               f"looking {name!r} up could run that key's __eq__, which probes do not run")
        if name in ns:
            return ns[name]
    return MISSING


# id(class) -> (the class, the length of its namespace when its keys were all plain str): classes live
# long and rarely change; one is checked again when its namespace's size changes
_CLASSES: dict = {}


def _plain_class(klass: type, ns: Any) -> bool:
    return _remembered_plain(_CLASSES, klass, ns)  # a mappingproxy iterates its dict's keys: no user code


def _remembered_plain(cache: dict, owner: Any, ns: Any) -> bool:
    """`plain_keys(ns)`, remembered in `cache` under `owner` (the namespace, or the class it belongs to)
    while the namespace keeps its length."""
    seen = cache.get(id(owner))
    if seen is not None and seen[0] is owner and seen[1] == len(ns):
        return True
    if not plain_keys(ns):
        return False
    if len(cache) >= 4096:  # every module's namespace or class of a big service
        cache.clear()
    cache[id(owner)] = (owner, len(ns))
    return True


# (id(type), name) -> (type, class attribute or MISSING). Probes read the same few attributes of
# the same few types at every hit. A class changed after it was cached can only make a read stale
# (an attribute refused or read from the instance), never run user code. Bounded, cleared when full.
_MRO_CACHE: dict = {}
_MRO_CACHE_MAX = 4096


def _class_attr(tp: type, name: str) -> Any:
    key = (id(tp), name)
    hit = _MRO_CACHE.get(key)
    if hit is not None and hit[0] is tp:
        return hit[1]
    value = _lookup_in_mro(tp, name)
    if len(_MRO_CACHE) >= _MRO_CACHE_MAX:
        _MRO_CACHE.clear()
    _MRO_CACHE[key] = (tp, value)
    return value


def module_file(module: Any) -> Optional[str]:
    """`module.__file__` of an entry of `sys.modules`, read from its namespace: never through a module's
    `__getattr__` (PEP 562) or a module subclass's `__getattribute__`. None for anything else."""
    ns = module_namespace(module)
    fn = ns.get("__file__") if ns is not None else None
    return fn if type(fn) is str else None


def module_name(module: Any) -> str:
    """`module.__name__`, read as `module_file` reads its file."""
    ns = module_namespace(module)
    name = ns.get("__name__") if ns is not None else None
    return name if type(name) is str else "?"


def module_namespace(module: Any) -> Optional[dict]:
    """A module's `__dict__`, read through its type's C descriptor, when its keys are plain `str`; else None
    (also for anything that is not a module: `issubclass(type(...))`, since isinstance() may read __class__)."""
    return _module_dict(module) if issubclass(type(module), types.ModuleType) else None


def class_namespace(klass: type) -> Any:
    """A class's namespace (a mappingproxy), read without its metaclass, when its keys are plain `str`;
    else None."""
    ns = class_dict(klass)
    return ns if ns is not None and _plain_class(klass, ns) else None


def _module_dict(module: Any) -> Optional[dict]:
    desc = _class_attr(type(module), "__dict__")
    if type(desc) is not _MEMBER and type(desc) is not _GETSET:
        return None
    try:
        d = desc.__get__(module, type(module))
    except Exception:
        return None
    return d if plain_namespace(d) else None


def instance_dict(obj: Any) -> Optional[dict]:
    """The instance `__dict__`, or None when it has none or a user override guards it."""
    if issubclass(type(obj), type):  # isinstance() would read obj.__class__, which a user may override
        return None
    desc = _class_attr(type(obj), "__dict__")
    if type(desc) is not _GETSET and type(desc) is not _MEMBER:  # C-level descriptors only (modules: member)
        return None
    try:
        d = desc.__get__(obj, type(obj))
    except Exception:
        return None
    return d if type(d) is dict and plain_keys(d) else None


# id(namespace) -> (the namespace, its length when its keys were all plain): module dicts and frames'
# globals live as long as their module, and are checked again only when their length changes
_NAMESPACES: dict = {}


def plain_namespace(d: Any) -> bool:
    """`plain_keys` for a long-lived namespace (a module's dict, a frame's globals), remembered."""
    return type(d) is dict and _remembered_plain(_NAMESPACES, d, d)


def plain_keys(d: dict) -> bool:
    """True when every key of `d` is an exact `str`: looking a name up in it then runs no user code (a `str`
    subclass key with its own `__eq__` and a hash equal to the name's would run that `__eq__`)."""
    for k in d:  # a plain loop: the cheapest check for the few keys an instance has
        if type(k) is not str:
            return False
    return True


def slot_names(tp: type) -> Iterator[str]:
    """Names of slot members along the MRO, in definition order, without duplicates. A C type's dunder
    members (`functools.partial.__vectorcalloffset__`, a function pointer read as an int) are the
    interpreter's bookkeeping, not data: left out."""
    seen = set()
    for klass in mro_of(tp):
        ns = class_dict(klass)
        for name, value in ns.items():
            if type(value) is _MEMBER and name not in seen and not (name[:2] == "__" and name[-2:] == "__"):
                seen.add(name)
                yield name


def iter_fields(obj: Any) -> Iterator[Tuple[str, Any]]:
    """(name, value) for every instance attribute: `__dict__` entries, then filled slots."""
    d = instance_dict(obj)
    if d is not None:
        for k, v in list(d.items()):
            if type(k) is str:
                yield k, v
    tp = type(obj)
    for name in slot_names(tp):
        desc = _lookup_in_mro(tp, name)
        try:
            yield name, desc.__get__(obj, tp)
        except AttributeError:  # an empty slot
            continue


# id(type) -> (type, its C-level __dict__ descriptor or None, {name: class attribute or MISSING}) for
# plain instance types (not classes, not modules): the hot path of `safe_getattr`, an attribute that
# lives in the instance dict. Staleness rules as for _MRO_CACHE.
_PLAIN: dict = {}
_UNKNOWN = object()


def safe_getattr(obj: Any, name: str) -> Any:
    """Read `obj.name` without running user code; raise `UnsafeAccess` when that is impossible."""
    tp = type(obj)
    plain = _PLAIN.get(id(tp))
    if plain is not None and plain[0] is tp:
        attrs = plain[2]
        cls_attr = attrs.get(name, _UNKNOWN)
        if cls_attr is _UNKNOWN:
            cls_attr = _lookup_in_mro(tp, name)
            if len(attrs) < 256:
                attrs[name] = cls_attr
        if cls_attr is MISSING and plain[1] is not None:
            d = plain[1].__get__(obj, tp)
            if type(d) is dict:
                for k in d:  # plain_keys, inline: every attribute read of a probe comes here
                    if type(k) is not str:
                        break
                else:
                    value = d.get(name, MISSING)
                    if value is not MISSING:
                        return value
    elif not issubclass(tp, (type, types.ModuleType)):
        desc = _class_attr(tp, "__dict__")
        if len(_PLAIN) >= _MRO_CACHE_MAX:
            _PLAIN.clear()
        _PLAIN[id(tp)] = (tp, desc if type(desc) is _GETSET else None, {})
    return _safe_getattr_slow(obj, name)


def _safe_getattr_slow(obj: Any, name: str) -> Any:
    if issubclass(type(obj), types.ModuleType):
        ns = _module_dict(obj)
        if ns is not None and name in ns:
            return ns[name]
        if ns is None:
            raise UnsafeAccess(f"the module's namespace has a key that is not a plain str; looking {name!r} up "
                               f"could run that key's __eq__, which probes do not run")
        raise UnsafeAccess(f"module {type_attr(type(obj), '__name__')!s} has no attribute {name!r}")
    tp = type(obj)
    desc = _class_attr(tp, name)
    if desc is not MISSING and type(desc) is _MEMBER:
        try:
            return desc.__get__(obj, tp)
        except AttributeError:
            raise UnsafeAccess(f"slot {name!r} of {type_name(obj)} is empty") from None
    if desc is not MISSING and _is_data_descriptor(desc):
        if _caches_in_dict(desc):  # a cached property the object has computed already: the cached value
            d = instance_dict(obj)
            if d is not None and name in d:
                return d[name]
            raise UnsafeAccess(f"{name!r} of {class_name(tp)} is a cached property not computed yet; probes do not "
                               f"run user code (it is readable once the code has read it)")
        raise UnsafeAccess(f"{name!r} of {class_name(tp)} is a property or descriptor; probes do not run user code")
    if issubclass(tp, type):
        value = _lookup_in_mro(obj, name)
        if value is MISSING:
            raise UnsafeAccess(f"class {class_name(obj)} has no attribute {name!r}")
        tv = type(value)  # compared by identity: `in (...)` would call a metaclass __eq__
        if _has_get(value) and tv is not types.FunctionType and tv is not staticmethod and tv is not classmethod:
            raise UnsafeAccess(f"{name!r} of class {class_name(obj)} is a descriptor; probes do not run user code")
        return value
    d = instance_dict(obj)
    if d is not None and name in d:
        return d[name]
    getset = _class_attr(tp, "__dict__")
    if d is None and type(getset) is _GETSET:
        raw = getset.__get__(obj, tp)
        if type(raw) is dict and not plain_keys(raw):
            raise UnsafeAccess(f"the __dict__ of {type_name(obj)} has a key that is not a plain str; looking "
                               f"{name!r} up could run that key's __eq__, which probes do not run")
    if desc is not MISSING:
        if _has_get(desc):
            # methods and other non-data descriptors: reading them is safe only as plain functions
            if type(desc) is types.FunctionType:
                return types.MethodType(desc, obj)
            raise UnsafeAccess(f"{name!r} of {class_name(tp)} is a descriptor; probes do not run user code")
        return desc
    if _lookup_in_mro(tp, "__getattr__") is not MISSING:  # a proxy (Flask's `request`) or a lazy object
        raise UnsafeAccess(f"{name!r} of {type_name(obj)} would come from its __getattr__ (a proxy or lazy object), "
                           f"which is user code probes do not run; probe where the real object is a local or an "
                           f"argument, or capture the object itself")
    raise UnsafeAccess(f"{type_name(obj)} object has no attribute {name!r}")


def _caches_in_dict(desc: Any) -> bool:
    """A property subclass named as a cache (werkzeug's `cached_property`): it keeps its value in the
    instance `__dict__` under its own name, and answers from there once computed."""
    dt = type(desc)
    return issubclass(dt, property) and dt is not property and "cached" in str(type_attr(dt, "__name__")).lower()


def _has_get(value: Any) -> bool:
    return _lookup_in_mro(type(value), "__get__") is not MISSING


def _is_data_descriptor(value: Any) -> bool:
    vt = type(value)
    return _has_get(value) and (
        _lookup_in_mro(vt, "__set__") is not MISSING or _lookup_in_mro(vt, "__delete__") is not MISSING
    )
