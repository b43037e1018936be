"""The hostile corpus of issue 17: expressions, objects and planted secrets an attacker (or a careless
operator, or hostile data) brings to a probed service. `test_hostile.py` places every expression as a
condition, as a captured expression and as a part of a log template on a function whose locals are the
objects and secrets below, and checks that no user code ran, no secret left and no call of the host
stalled.

Keep this file free of imports of probebook: it plays the part of a user's service and its data.

- **Tripwires.** Every hostile method calls `trip(name)` first. While the harness has `arm()`-ed them,
  that records `name` in `TRIPPED` (a sleepy one also sleeps, at most `SLEEP_BUDGET_S` per arming, so a
  side effect shows as a stall, never as a hang); disarmed, the methods behave like their plain
  counterparts, so building the objects (hashing keys, ...) records nothing.
- **Secrets.** Every planted secret carries a unique marker (`secrets()`: marker -> where it is planted):
  lowercase letters and digits (a card number's digits, an AWS key's upper case), so a leak is found by
  searching any text that leaves the agent, also case-folded, reversed, hex-encoded or with everything
  but letters and digits stripped (`list(secret)` spreads it over items).
"""

from __future__ import annotations

import abc
import array
import collections
import datetime
import decimal
import enum
import functools
import sys
import time
import types
import weakref
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

# ------------------------------------------------------------------------------------------ tripwires

TRIPPED: List[str] = []  # what hostile code ran since the last arm()
SLEEP_BUDGET_S = 0.2  # a sleepy tripwire sleeps at most this long per arming
_STATE = {"armed": False, "slept": 0.0}


def arm() -> None:
    """Start recording: from now on a hostile method that runs is written into `TRIPPED`."""
    TRIPPED.clear()
    _STATE.update(armed=True, slept=0.0)


def disarm() -> List[str]:
    """Stop recording; the names recorded since `arm()` (each once, in order)."""
    _STATE["armed"] = False
    return list(dict.fromkeys(TRIPPED))


def trip(name: str, effect: str = "record") -> bool:
    """Hostile code `name` runs: record it while armed. `effect` is what it does then besides recording:
    'sleep' (bounded by SLEEP_BUDGET_S per arming) or 'raise'. False while disarmed."""
    if not _STATE["armed"]:
        return False
    if len(TRIPPED) < 500:
        TRIPPED.append(name)
    if effect == "sleep" and _STATE["slept"] < SLEEP_BUDGET_S:
        t0 = time.perf_counter()
        time.sleep(0.05)
        _STATE["slept"] += time.perf_counter() - t0
    elif effect == "raise":
        raise RuntimeError(f"hostile {name} refuses")
    return True


# what a trapped dunder of a plain object gives when it runs (disarmed, or after recording)
_PLAIN_RESULTS: Dict[str, Callable[..., Any]] = {
    "__eq__": lambda self, other: self is other, "__ne__": lambda self, other: self is not other,
    "__hash__": lambda self: id(self) >> 4, "__lt__": lambda self, other: False, "__le__": lambda self, other: False,
    "__gt__": lambda self, other: False, "__ge__": lambda self, other: False,
    "__repr__": lambda self: "<hostile>", "__str__": lambda self: "<hostile>",
    "__format__": lambda self, spec: "<hostile>", "__bytes__": lambda self: b"hostile",
    "__len__": lambda self: 3, "__length_hint__": lambda self: 10**9, "__bool__": lambda self: True,
    "__iter__": lambda self: iter(range(3)), "__reversed__": lambda self: iter(range(3)),
    "__next__": lambda self: 1, "__contains__": lambda self, item: False,
    "__getitem__": lambda self, key: 1, "__missing__": lambda self, key: 1,
    "__index__": lambda self: 3, "__int__": lambda self: 3, "__float__": lambda self: 3.0,
    "__complex__": lambda self: 3j, "__round__": lambda self, n=None: 3, "__abs__": lambda self: 3,
    "__trunc__": lambda self: 3, "__floor__": lambda self: 3, "__ceil__": lambda self: 3,
    "__neg__": lambda self: 3, "__pos__": lambda self: 3, "__invert__": lambda self: 3,
    "__call__": lambda self, *a, **k: None, "__getattr__": lambda self, name: "from __getattr__",
    "__dir__": lambda self: [], "__sizeof__": lambda self: 64, "__fspath__": lambda self: "/tmp/hostile",
    "__enter__": lambda self: self, "__exit__": lambda self, *a: False,
    "__copy__": lambda self: self, "__deepcopy__": lambda self, memo: self,
    "__reduce__": lambda self: (object, ()), "__reduce_ex__": lambda self, proto: (object, ()),
    "__instancecheck__": lambda self, other: False, "__subclasscheck__": lambda self, other: False,
}
for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "lshift", "rshift", "and", "or", "xor",
            "matmul"):
    _PLAIN_RESULTS[f"__{_op}__"] = _PLAIN_RESULTS[f"__r{_op}__"] = lambda self, other, *m: 3

_ORDER = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__")
_ARITH = tuple(f"__{p}{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "lshift",
                                         "rshift", "and", "or", "xor") for p in ("", "r"))
_UNARY = ("__neg__", "__pos__", "__invert__", "__abs__")
_NUMBER = ("__index__", "__int__", "__float__", "__complex__", "__round__", "__trunc__", "__floor__", "__ceil__")
_TEXT = ("__repr__", "__str__", "__format__", "__bytes__")
_CONTAINER = ("__len__", "__length_hint__", "__iter__", "__reversed__", "__contains__", "__getitem__", "__bool__")
_EVERYTHING = (_ORDER + ("__hash__",) + _ARITH + _UNARY + _NUMBER + _TEXT + _CONTAINER
               + ("__call__", "__getattr__", "__dir__", "__sizeof__", "__copy__", "__deepcopy__", "__reduce__",
                  "__reduce_ex__", "__enter__", "__exit__", "__fspath__"))


def _trap(label: str, fallback: Callable[..., Any], effect: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        trip(label, effect)
        return fallback(self, *args, **kwargs)
    method.__name__ = label.rsplit(".", 1)[-1]
    return method


def hostile_class(name: str, dunders: Tuple[str, ...], effect: str = "record", bases: Tuple[type, ...] = (object,),
                  extra: Optional[Dict[str, Any]] = None) -> type:
    """A class whose `dunders` each trip `name.dunder` and then do what the base does (or, where it has none,
    give a plain answer); a builtin value base (str, int, ...) keeps only the dunders it has."""
    ns: Dict[str, Any] = {"__module__": __name__, "__qualname__": name}
    base = bases[0]
    for d in dunders:
        inherited = getattr(base, d, None) if base is not object and d != "__getattr__" else None
        if inherited is not None:  # the base's own, after recording
            fallback = (lambda impl: lambda self, *a, **k: impl(self, *a, **k))(inherited)
        elif base is object or base is type or d in ("__getattr__", "__missing__"):
            fallback = _PLAIN_RESULTS[d]
        else:  # a builtin base without it: adding one would change what the plain operation does
            continue
        ns[d] = _trap(f"{name}.{d}", fallback, effect)
    ns.update(extra or {})
    return type(name, bases, ns)


def _getattribute_trap(label: str, effect: str = "record", base: type = object) -> Callable[..., Any]:
    def __getattribute__(self: Any, attr: str) -> Any:
        trip(label, effect)
        return base.__getattribute__(self, attr)
    return __getattribute__


def _trap_property(label: str, value: Callable[[Any], Any] = lambda self: "from a property",
                   effect: str = "record") -> property:
    def get(self: Any) -> Any:
        trip(label, effect)
        return value(self)
    return property(get)


class _TrapDescriptor:
    """A non-data descriptor whose __get__ trips."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        trip(self.label + ".__get__")
        return "from a descriptor"


class _TrapDataDescriptor(_TrapDescriptor):
    """A data descriptor: __get__ and __set__ trip."""

    def __set__(self, obj: Any, value: Any) -> None:
        trip(self.label + ".__set__")


# ------------------------------------------------------------------------------------------ hostile types

def _type_field(name: str) -> property:
    real = type.__dict__[name].__get__

    def get(cls: type) -> Any:
        trip(f"PropertyMeta.{name} (property)")
        return real(cls, type)
    return property(get)


# A metaclass whose properties shadow type's own fields: reading `cls.__mro__` (or `__dict__`, `__name__`,
# `__module__` ...) the usual way runs them.
PropertyMeta = type("PropertyMeta", (type,), {
    **{name: _type_field(name) for name in ("__mro__", "__dict__", "__name__", "__bases__", "__base__", "__doc__")},
    "__module__": __name__, "config": _trap_property("PropertyMeta.config (property)", lambda cls: {"loaded": 1})})


class MetaPropClass(metaclass=PropertyMeta):
    tax = 0.2

    def __init__(self) -> None:
        self.value = 1


HostileMeta = hostile_class("HostileMeta", _EVERYTHING + ("__instancecheck__", "__subclasscheck__"),
                            bases=(type,), extra={"__getattribute__": _getattribute_trap(
                                "HostileMeta.__getattribute__", base=type)})
MetaHostileClass = HostileMeta("MetaHostileClass", (), {"__module__": __name__, "plain": 1})


class InstanceCheckMeta(type):
    """Only `__instancecheck__` is its own: `isinstance()` in Python would run it."""

    def __instancecheck__(cls, obj: Any) -> bool:
        trip("InstanceCheckMeta.__instancecheck__")
        return False


class InstanceCheckClass(metaclass=InstanceCheckMeta):
    pass


class HostileABC(abc.ABC):
    @classmethod
    def __subclasshook__(cls, other: type) -> Any:
        trip("HostileABC.__subclasshook__")
        return NotImplemented


class ABCChild(HostileABC):
    def __init__(self) -> None:
        self.x = 1


EqTrap = hostile_class("EqTrap", ("__eq__", "__ne__"))
HashTrap = hostile_class("HashTrap", ("__hash__",))
OrderTrap = hostile_class("OrderTrap", _ORDER)
ReprTrap = hostile_class("ReprTrap", ("__repr__", "__str__"), effect="sleep")
FormatTrap = hostile_class("FormatTrap", ("__format__",))
LenTrap = hostile_class("LenTrap", ("__len__", "__length_hint__"))
BoolTrap = hostile_class("BoolTrap", ("__bool__",))
IterTrap = hostile_class("IterTrap", ("__iter__", "__reversed__", "__next__"))
ContainsTrap = hostile_class("ContainsTrap", ("__contains__", "__getitem__"))
IndexTrap = hostile_class("IndexTrap", _NUMBER + _UNARY)
ArithTrap = hostile_class("ArithTrap", _ARITH + _UNARY)
CallTrap = hostile_class("CallTrap", ("__call__",))
SleepyTrap = hostile_class("SleepyTrap", _EVERYTHING, effect="sleep",
                           extra={"__getattribute__": _getattribute_trap("SleepyTrap.__getattribute__", "sleep")})
RaisingTrap = hostile_class("RaisingTrap", _EVERYTHING, effect="raise",
                            extra={"__getattribute__": _getattribute_trap("RaisingTrap.__getattribute__", "raise"),
                                   "__class__": _trap_property("RaisingTrap.__class__", effect="raise")})
GetattrTrap = hostile_class("GetattrTrap", ("__getattr__",))
GetattributeTrap = hostile_class("GetattributeTrap", (), extra={
    "__getattribute__": _getattribute_trap("GetattributeTrap.__getattribute__")})
ClassLiar = hostile_class("ClassLiar", (), extra={"__class__": _trap_property("ClassLiar.__class__", lambda s: dict)})
DictDescriptor = hostile_class("DictDescriptor", (), extra={
    "__dict__": _trap_property("DictDescriptor.__dict__", lambda s: {"x": "from a __dict__ property"})})
DescriptorHolder = hostile_class("DescriptorHolder", (), extra={
    "value": _TrapDataDescriptor("DescriptorHolder.value"),
    "lazy": _TrapDescriptor("DescriptorHolder.lazy"),
    "prop": _trap_property("DescriptorHolder.prop (property)"),
    "cached": functools.cached_property(lambda self: trip("DescriptorHolder.cached (cached_property)") and 1),
    "plain": "a plain class attribute"})
SlotsGetattr = hostile_class("SlotsGetattr", ("__getattr__",), extra={"__slots__": ("a", "b", "empty")})

# builtin subclasses that override what an operation on their base would use
EvilStr = hostile_class("EvilStr", _ORDER + ("__hash__", "__len__", "__iter__", "__getitem__", "__contains__",
                                             "__add__", "__radd__", "__mul__", "__rmul__", "__mod__", "__repr__",
                                             "__str__", "__format__", "startswith", "endswith", "split", "lower",
                                             "upper", "strip", "join", "count", "find", "encode"), bases=(str,))
EvilInt = hostile_class("EvilInt", _ORDER + ("__hash__", "__add__", "__radd__", "__sub__", "__mul__", "__rmul__",
                                             "__index__", "__int__", "__float__", "__bool__", "__repr__", "__str__",
                                             "__format__", "__abs__", "__neg__", "__round__", "__lshift__",
                                             "__pow__", "__mod__", "__floordiv__", "__truediv__", "__and__",
                                             "bit_length"), bases=(int,))
EvilBytes = hostile_class("EvilBytes", _ORDER + ("__hash__", "__len__", "__iter__", "__getitem__", "__contains__",
                                                 "__add__", "__mul__", "__repr__", "__str__", "__bytes__", "hex",
                                                 "decode", "split", "startswith")
                          + (("__buffer__",) if sys.version_info >= (3, 12) else ()), bases=(bytes,))
EvilFloat = hostile_class("EvilFloat", _ORDER + ("__hash__", "__repr__", "__str__", "__float__", "__round__",
                                                 "__add__", "__format__", "__bool__", "is_integer"), bases=(float,))
EvilList = hostile_class("EvilList", ("__eq__", "__len__", "__iter__", "__getitem__", "__contains__", "__repr__",
                                      "__add__", "__mul__", "__reversed__", "count", "index", "__lt__"), bases=(list,))
EvilDict = hostile_class("EvilDict", ("__eq__", "__len__", "__iter__", "__getitem__", "__contains__", "__repr__",
                                      "keys", "values", "items", "get"), bases=(dict,),
                         extra={"__missing__": _trap("EvilDict.__missing__", _PLAIN_RESULTS["__missing__"], "record")})
EvilTuple = hostile_class("EvilTuple", ("__eq__", "__hash__", "__len__", "__iter__", "__getitem__", "__contains__",
                                        "__repr__", "__lt__", "count", "index"), bases=(tuple,))
EvilSet = hostile_class("EvilSet", ("__eq__", "__len__", "__iter__", "__contains__", "__repr__", "issubset",
                                    "__or__", "__and__"), bases=(set,))


class NamedLiar(tuple):
    """Looks like a namedtuple; its `_fields` is a descriptor that runs when read."""

    _fields = _TrapDescriptor("NamedLiar._fields")
    __getitem__ = _trap("NamedLiar.__getitem__", tuple.__getitem__, "record")
    __iter__ = _trap("NamedLiar.__iter__", tuple.__iter__, "record")
    __len__ = _trap("NamedLiar.__len__", tuple.__len__, "record")


class HostileError(Exception):
    __str__ = _trap("HostileError.__str__", lambda self: "hostile", "record")
    __repr__ = _trap("HostileError.__repr__", lambda self: "HostileError()", "record")
    __eq__ = _trap("HostileError.__eq__", lambda self, other: self is other, "record")
    __hash__ = _trap("HostileError.__hash__", lambda self: id(self) >> 4, "record")
    __getattr__ = _trap("HostileError.__getattr__", lambda self, name: "from __getattr__", "record")
    detail = _trap_property("HostileError.detail (property)")


class HostileEnum(enum.Enum):
    A = 1
    B = 2
    __eq__ = _trap("HostileEnum.__eq__", lambda self, other: self is other, "record")
    __hash__ = _trap("HostileEnum.__hash__", lambda self: id(self) >> 4, "record")
    __repr__ = _trap("HostileEnum.__repr__", lambda self: "<HostileEnum>", "record")
    __str__ = _trap("HostileEnum.__str__", lambda self: "HostileEnum", "record")
    __format__ = _trap("HostileEnum.__format__", lambda self, spec: "HostileEnum", "record")


class HostileStrEnum(str, enum.Enum):
    A = "a"
    __eq__ = _trap("HostileStrEnum.__eq__", lambda self, other: str.__eq__(self, other), "record")
    __hash__ = _trap("HostileStrEnum.__hash__", lambda self: str.__hash__(self), "record")
    __str__ = _trap("HostileStrEnum.__str__", lambda self: "a", "record")
    __add__ = _trap("HostileStrEnum.__add__", lambda self, other: str.__add__(self, other), "record")


class HostileTZ(datetime.tzinfo):
    utcoffset = _trap("HostileTZ.utcoffset", lambda self, dt: datetime.timedelta(hours=1), "record")
    tzname = _trap("HostileTZ.tzname", lambda self, dt: "HOSTILE", "record")
    dst = _trap("HostileTZ.dst", lambda self, dt: datetime.timedelta(0), "record")
    __repr__ = _trap("HostileTZ.__repr__", lambda self: "HostileTZ()", "record")


class HostileModule(types.ModuleType):
    """A module subclass (as lazy-import libraries install) that runs code on every attribute read."""

    __getattribute__ = _getattribute_trap("HostileModule.__getattribute__", base=types.ModuleType)
    settings = _trap_property("HostileModule.settings (property)")
    __repr__ = _trap("HostileModule.__repr__", lambda self: "<module hostile>", "record")


Proxy = hostile_class("Proxy", ("__getattr__", "__getitem__", "__iter__", "__len__", "__contains__", "__eq__",
                                "__ne__", "__hash__", "__repr__", "__str__", "__bool__", "__lt__", "__format__",
                                "__call__"),
                      extra={"__class__": _trap_property("Proxy.__class__", lambda self: dict)})
LazySettings = hostile_class("LazySettings", ("__getattr__", "__repr__", "__bool__", "__eq__", "__hash__"))


class Plain:
    """An ordinary object, to carry attributes."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class Account:
    __slots__ = ("user", "password", "pin", "__weakref__")

    def __init__(self, user: str, password: str, pin: str) -> None:
        self.user, self.password, self.pin = user, password, pin


def _trapped_generator() -> Any:
    trip("generator body")
    yield 1


def _module_getattr(name: str) -> Any:
    trip("lazy_module.__getattr__ (PEP 562)")
    raise AttributeError(name)


def _balanced(leaf: str, leaves: int) -> str:
    """`((leaf + leaf) + (leaf + leaf)) ...`: `leaves` leaves in a tree of small depth."""
    if leaves == 1:
        return leaf
    half = leaves // 2
    return f"({_balanced(leaf, half)} + {_balanced(leaf, leaves - half)})"


# ------------------------------------------------------------------------------------------ planted secrets
# Only numbers are kept at module level: the markers are made when the secrets are built, so an
# expression that reads this module (sys.modules[...]) finds no marker it was not meant to reach.

_WHERE: Dict[str, str] = {}  # key -> where that secret is planted
_NUMBER: Dict[str, int] = {}  # key -> its number, from which its marker is made


def _plant(key: str, where: str) -> None:
    _NUMBER[key] = len(_NUMBER) + 1
    _WHERE[key] = where


def marker(key: str) -> str:
    """The marker of a planted secret: `pbx<n>leak`, or a card number's 16 digits (Luhn-valid)."""
    n = _NUMBER[key]
    if not key.startswith("card_"):
        return f"pbx{n:03d}leak"
    body = f"4929{n:011d}"
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def secrets() -> Dict[str, str]:
    """marker -> where it is planted, for every planted secret."""
    return {marker(key): where for key, where in _WHERE.items()}


# locals under a redacted identifier (ours, or Datadog Dynamic Instrumentation's default list): the name
# alone must keep the value in; the values are plain markers, shaped like nothing
NAMED_SECRETS = (
    "password passwd pwd passphrase token access_token refresh_token id_token api_key apiKey x_api_key "
    "client_secret secret_key PGPASSWORD dbpassword db_pass secretValue password_str aws_secret_access_key "
    "private_key session_id csrf_token authorization cookie ssn cvv pin_code iban mnemonic passhash "
    "twiliotoken x_auth_token jwt otp stripe_api_key signing_key master_key credentials salt licensekey "
    "recaptchakey gpgkey securityanswer"
).split()
for _name in NAMED_SECRETS:
    _plant(f"local:{_name}", f"the local `{_name}` (a redacted identifier)")

for _key, _where in (
    # values shaped like a secret under names that say nothing: the value patterns must catch them
    ("cache_url", "cache_url: redis://:PW@host (a URL with a password and no user)"),
    ("db_url_text", "db_url_text: postgres://user:PW@host/db"),
    ("slash_pw_url", "slash_pw_url: a URL whose password holds a '/'"),
    ("https_creds", "https_creds: https://user:PW@host/"),
    ("basic_header", "basic_header: 'Authorization: Basic ...'"),
    ("bearer_short", "bearer_short: 'Bearer' and a 10-character token"),
    ("header_block", "header_block: HTTP headers with 'Authorization: Bearer ...'"),
    ("libpq_text", "libpq_text: a libpq conninfo with password=..."),
    ("adonet_text", "adonet_text: an ADO.NET string with Password=...;"),
    ("aws_key_text", "aws_key_text: an AWS access key id"),
    ("cookie_line", "cookie_line: a Cookie header line"),
    ("set_cookie_line", "set_cookie_line: a Set-Cookie header line"),
    ("form_body", "form_body: a form body with password=..."),
    ("jwt_text", "jwt_text: a JWT"),
    ("pem_text", "pem_text: a PEM private key"),
    ("github_pat", "github_pat: a GitHub token"),
    ("slack_token_text", "slack_token_text: a Slack token"),
    ("stripe_live", "stripe_live: a Stripe live key"),
    ("request_line", "request_line: a request line with ?token=..."),
    ("json_body", "json_body: a JSON body with \"password\": ..."),
    ("card_spaces", "card_spaces: a card number grouped by spaces"),
    ("card_dashes", "card_dashes: a card number grouped by dashes"),
    ("card_dots", "card_dots: a card number grouped by dots"),
    # inside containers and objects
    ("creds.password", "creds['password']"), ("creds.token", "creds['token']"), ("creds.api_key", "creds['api_key']"),
    ("headers.authorization", "headers['Authorization'] (Bearer)"), ("headers.cookie", "headers['Cookie']"),
    ("headers.x_api_key", "headers['X-Api-Key']"),
    ("header_pairs.authorization", "header_pairs: ('Authorization', 'Basic ...') in a list"),
    ("header_pairs.x_auth_token", "header_pairs: ('X-Auth-Token', ...) in a list"),
    ("byte_creds.password", "byte_creds[b'password']"), ("byte_creds.api_key", "byte_creds[b'api_key']"),
    ("environ_data.pgpassword", "environ_data[b'PGPASSWORD'] (like os.environ._data)"),
    ("environ_data.aws", "environ_data[b'AWS_SECRET_ACCESS_KEY']"),
    ("settings.db_password", "settings.database['primary']['password'] (nested dicts in an object)"),
    ("settings.api_token", "settings.api_token (an attribute)"),
    ("settings.smtp_password", "settings.mail.smtp_password (an attribute of an attribute)"),
    ("settings.deep_token", "settings.vault['a']['b']['c']['token'] (below the capture depth)"),
    ("account.password", "account.password (a slot)"), ("account.pin", "account.pin (a slot)"),
    ("namespace.client_secret", "namespace_obj.client_secret (SimpleNamespace)"),
    ("evil_key_dict.password", "evil_key_dict[EvilStr('password')] (a str-subclass key)"),
    ("evil_key_obj.token", "evil_key_obj.__dict__[EvilStr('token')]"),
    ("mapping_proxy.secret", "mapping_proxy['secret'] (MappingProxyType)"),
    ("raw_buf", "raw_buf: bytearray(b'password=...&user=bob')"),
    ("array_obj", "array_obj: array('b', b'token=...')"),
    ("secret_list.password", "secret_list: ('password', ...) in a list"),
    ("secret_list.session", "secret_list: ('session', ...) in a list"),
    ("nested_list.api_key", "nested_list: ['api_key', ...] three lists deep"),
    ("tb_frame.password", "the argument `password` of the frame tb_obj holds"),
    ("login_error", "login_error: ValueError('... password=...')"),
    ("upstream_error", "upstream_error: RuntimeError('... Authorization: Bearer ...')"),
    ("meta_pair", "meta_pair: (key whose type's metaclass has __eq__, 'token=...')"),
    ("raised.libpq", "an exception raised through fail_with: '... password=...'"),
    ("raised.url", "an exception raised through fail_with: '... postgres://user:PW@host'"),
    ("environ.PGPASSWORD", "os.environ['PGPASSWORD'] in the service process"),
    ("environ.DATABASE_URL", "os.environ['DATABASE_URL'] (a URL with a password)"),
):
    _plant(_key, _where)
del _name, _key, _where


def _shaped_secrets() -> Dict[str, Any]:
    m = marker
    return {
        "cache_url": f"redis://:{m('cache_url')}@cache:6379/0",
        "db_url_text": f"postgres://shop:{m('db_url_text')}@db.internal:5432/shop",
        "slash_pw_url": f"postgres://shop:p/w{m('slash_pw_url')}@db.internal/shop",
        "https_creds": f"https://bob:{m('https_creds')}@api.example.com/v1/",
        "basic_header": f"Authorization: Basic {m('basic_header')}==",
        "bearer_short": f"Bearer {m('bearer_short')}",
        "header_block": f"Host: api.example.com\r\nAuthorization: Bearer {m('header_block')}\r\nAccept: */*",
        "libpq_text": f"host=db.internal user=shop password={m('libpq_text')} dbname=shop",
        "adonet_text": f"Server=db;Database=shop;User Id=shop;Password={m('adonet_text')};",
        "aws_key_text": "AKIA" + m("aws_key_text").upper().ljust(16, "Q"),
        "cookie_line": f"Cookie: sessionid={m('cookie_line')}; theme=dark",
        "set_cookie_line": f"Set-Cookie: sid={m('set_cookie_line')}; Path=/; HttpOnly",
        "form_body": f"user=bob&password={m('form_body')}&remember=1",
        "jwt_text": f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.{m('jwt_text')}",
        "pem_text": f"-----BEGIN PRIVATE KEY-----\n{m('pem_text')}\n-----END PRIVATE KEY-----",
        "github_pat": "ghp_" + m("github_pat").ljust(36, "A"),
        "slack_token_text": f"xoxb-{m('slack_token_text')}-2048",
        "stripe_live": f"sk_live_{m('stripe_live')}abcdef",
        "request_line": f"GET /reset?token={m('request_line')} HTTP/1.1",
        "json_body": f'{{"user": "bob", "password": "{m("json_body")}"}}',
        **{key: " -."[i].join(m(key)[j:j + 4] for j in range(0, 16, 4))
           for i, key in enumerate(("card_spaces", "card_dashes", "card_dots"))},
    }


def _frame_with_password(password: str) -> Any:
    """A traceback whose frame holds `password` as an argument."""
    try:
        raise LookupError("no such user")
    except LookupError:
        return sys.exc_info()[2]


def planted_secrets() -> Dict[str, Any]:
    """The locals that carry the planted secrets (`secrets()` says where each marker is)."""
    m = marker
    found: Dict[str, Any] = {name: m(f"local:{name}") for name in NAMED_SECRETS}
    found.update(_shaped_secrets())
    found["creds"] = {"user": "bob", "password": m("creds.password"), "token": m("creds.token"),
                      "api_key": m("creds.api_key"), "region": "eu-west-1"}
    found["headers"] = {"Authorization": f"Bearer {m('headers.authorization')}",
                        "Cookie": f"sid={m('headers.cookie')}", "X-Api-Key": m("headers.x_api_key"),
                        "Accept": "application/json"}
    found["header_pairs"] = [("Authorization", f"Basic {m('header_pairs.authorization')}"),
                             ("X-Auth-Token", m("header_pairs.x_auth_token")), ("Accept", "*/*")]
    found["byte_creds"] = {b"user": b"bob", b"password": m("byte_creds.password").encode(),
                           b"api_key": m("byte_creds.api_key").encode()}
    found["environ_data"] = {b"PATH": b"/usr/bin", b"PGPASSWORD": m("environ_data.pgpassword").encode(),
                             b"AWS_SECRET_ACCESS_KEY": m("environ_data.aws").encode()}
    found["settings"] = Plain(
        debug=False, database={"primary": {"host": "db", "password": m("settings.db_password")}},
        api_token=m("settings.api_token"), mail=types.SimpleNamespace(smtp_password=m("settings.smtp_password")),
        vault={"a": {"b": {"c": {"token": m("settings.deep_token")}}}})
    found["account"] = Account("bob", m("account.password"), m("account.pin"))
    found["namespace_obj"] = types.SimpleNamespace(client_secret=m("namespace.client_secret"), region="eu")
    found["evil_key_dict"] = {EvilStr("user"): "bob", EvilStr("password"): m("evil_key_dict.password"),
                              EvilInt(1): "one"}
    evil = Plain(other="visible")
    evil.__dict__[EvilStr("name")] = "ann"  # hashes like "name": reading evil_key_obj.name compares with it
    evil.__dict__[EvilStr("token")] = m("evil_key_obj.token")
    found["evil_key_obj"] = evil
    found["mapping_proxy"] = types.MappingProxyType({"secret": m("mapping_proxy.secret"), "id": 7})
    found["raw_buf"] = bytearray(f"password={m('raw_buf')}&user=bob".encode())
    found["array_obj"] = array.array("b", f"token={m('array_obj')}".encode())
    found["secret_list"] = [("password", m("secret_list.password")), ("session", m("secret_list.session")),
                            ("user", "bob")]
    found["nested_list"] = [[["api_key", m("nested_list.api_key")]]]
    found["tb_obj"] = _frame_with_password(m("tb_frame.password"))
    found["login_error"] = ValueError(f"login failed for bob: password={m('login_error')}")
    found["upstream_error"] = RuntimeError(f"401 from upstream, sent Authorization: Bearer {m('upstream_error')}")
    found["meta_pair"] = (MetaHostileClass(), f"token={m('meta_pair')}")
    found["field_name"] = "password"  # not a secret: the name of one, for computed keys
    found["key_parts"] = ["pass", "word"]
    return found


def raised_secrets() -> Dict[str, BaseException]:
    """Exceptions the harness raises through a probed function, their messages carrying secrets."""
    return {"libpq_failure": ConnectionError(f"could not connect: host=db password={marker('raised.libpq')}"),
            "url_failure": RuntimeError(f"pool for postgres://shop:{marker('raised.url')}@db/shop is exhausted")}


def plant_process_environ() -> None:
    """Secrets in the process environment, as a service has them (only in the harness's child process)."""
    import os

    os.environ["PGPASSWORD"] = marker("environ.PGPASSWORD")
    os.environ["DATABASE_URL"] = f"postgres://shop:{marker('environ.DATABASE_URL')}@db/shop"


# ------------------------------------------------------------------------------------------ hostile objects

HOSTILE_OBJECTS: Dict[str, str] = {}  # name -> what it is (filled by hostile_objects)
# the names of the data that costs when walked: the service holds them as module globals (expressions
# read them by name all the same) and as the locals of one function of their own, so that capturing the
# frame of the other handlers measures their hostile objects, not the walk of this data
HEAVY: List[str] = []


def hostile_objects() -> Dict[str, Any]:
    """The hostile objects: objects that run code when touched, and data that costs when walked (`HEAVY`)."""
    out: Dict[str, Any] = {}
    heavy = False

    def put(name: str, what: str, value: Any) -> None:
        HOSTILE_OBJECTS[name] = what
        out[name] = value
        if heavy and name not in HEAVY:
            HEAVY.append(name)

    # objects that run code when touched
    put("meta_prop_cls", "a class whose metaclass has properties __mro__, __dict__, __name__, config ...",
        MetaPropClass)
    put("meta_prop_obj", "an instance of that class", MetaPropClass())
    put("meta_hostile_cls", "a class whose metaclass overrides every dunder, __getattribute__ and __call__",
        MetaHostileClass)
    put("meta_hostile_obj", "an instance of that class (type(x) == ... runs the metaclass __eq__)",
        MetaHostileClass())
    put("instancecheck_cls", "a class whose metaclass has its own __instancecheck__", InstanceCheckClass)
    put("abc_cls", "an ABC with a __subclasshook__", HostileABC)
    put("abc_obj", "an instance of a subclass of that ABC", ABCChild())
    put("getattr_obj", "__getattr__", GetattrTrap())
    put("getattribute_obj", "__getattribute__", GetattributeTrap())
    put("class_liar", "a __class__ property that says dict", ClassLiar())
    put("dict_descriptor_obj", "a __dict__ property", DictDescriptor())
    descriptors = DescriptorHolder()
    put("descriptor_obj", "data and non-data descriptors, a property, a cached_property not computed", descriptors)
    slots = SlotsGetattr()
    slots.a, slots.b = 1, 2
    put("slots_obj", "slots, one empty, and a __getattr__", slots)
    put("eq_obj", "__eq__/__ne__", EqTrap())
    put("hash_obj", "__hash__", HashTrap())
    put("order_obj", "__lt__/__le__/__gt__/__ge__", OrderTrap())
    put("repr_obj", "__repr__/__str__ that sleep", ReprTrap())
    put("format_obj", "__format__", FormatTrap())
    put("len_obj", "__len__/__length_hint__", LenTrap())
    put("bool_obj", "__bool__", BoolTrap())
    put("iter_obj", "__iter__/__reversed__/__next__", IterTrap())
    put("contains_obj", "__contains__/__getitem__", ContainsTrap())
    put("index_obj", "__index__/__int__/__float__/__round__ ...", IndexTrap())
    put("arith_obj", "every arithmetic operator", ArithTrap())
    put("call_obj", "__call__", CallTrap())
    put("sleepy_obj", "every dunder and __getattribute__ sleep", SleepyTrap())
    put("raising_obj", "every dunder, __getattribute__ and __class__ raise", RaisingTrap())
    target = GetattributeTrap()
    put("weak_target", "the referent of weak_proxy (__getattribute__)", target)
    put("weak_proxy", "weakref.proxy of an object with __getattribute__", weakref.proxy(target))
    put("proxy_obj", "a LocalProxy-like object: __getattr__, __class__ says dict, every dunder", Proxy())
    lazy = LazySettings()
    lazy.__dict__["_wrapped"] = object()
    put("lazy_settings", "a Django LazySettings-like object (__getattr__ loads)", lazy)
    lazy_module = types.ModuleType("hostile_lazy_mod")
    lazy_module.__getattr__ = _module_getattr  # type: ignore[attr-defined]
    lazy_module.VERSION = "1.0"  # type: ignore[attr-defined]
    put("lazy_module", "a module with a PEP 562 __getattr__", lazy_module)
    module_sub = HostileModule("hostile_mod_sub")
    types.ModuleType.__setattr__(module_sub, "x", 1)
    put("module_sub", "a ModuleType subclass with __getattribute__ and a property", module_sub)
    evil_module = types.ModuleType("hostile_evil_ns")
    evil_module.__dict__[EvilStr("name")] = "from a str-subclass key"
    put("evil_ns_module", "a module whose __dict__ has a str-subclass key hashing like 'name'", evil_module)
    evil_ns_cls = type("EvilNS", (), {EvilStr("tax"): 0.5, "rate": 2, "__module__": __name__})
    put("evil_ns_cls", "a class whose namespace has a str-subclass key hashing like 'tax'", evil_ns_cls)
    put("evil_ns_obj", "an instance of that class", evil_ns_cls())
    put("evil_int_key_dict", "a dict with int-subclass keys", {EvilInt(1): "one", EvilInt(2): "two"})
    put("meta_key_dict", "a dict whose key's type has a metaclass with __eq__", {MetaHostileClass(): "v"})
    put("gen_obj", "a generator not started (its body trips)", _trapped_generator())
    put("enum_member", "an Enum member with its own __eq__/__hash__/__repr__/__format__", HostileEnum.A)
    put("str_enum_member", "a str Enum member with its own __eq__/__hash__/__add__", HostileStrEnum.A)
    put("int_sub", "an int subclass overriding every operator", EvilInt(7))
    put("str_sub", "a str subclass overriding every operator and text method", EvilStr("hello"))
    put("bytes_sub", "a bytes subclass overriding every operator", EvilBytes(b"hello"))
    put("float_sub", "a float subclass overriding every operator", EvilFloat(1.5))
    put("list_sub", "a list subclass overriding every operator", EvilList([1, 2, 3]))
    put("dict_sub", "a dict subclass with __missing__ and its own get/keys/items", EvilDict(k=1))
    put("tuple_sub", "a tuple subclass", EvilTuple((1, 2)))
    put("set_sub", "a set subclass", EvilSet({1, 2}))
    put("default_dict", "a defaultdict whose factory trips", collections.defaultdict(
        _trap("default_dict factory", lambda: "made", "record")))
    put("named_liar", "a tuple whose _fields is a descriptor", NamedLiar((1, 2)))
    put("exc_evil", "an exception with its own __str__/__repr__/__getattr__ and a property", HostileError("boom"))
    put("tz_datetime", "a datetime whose tzinfo is Python code", datetime.datetime(2024, 5, 1, tzinfo=HostileTZ()))
    put("partial_obj", "functools.partial of a trapped callable and a trapped argument",
        functools.partial(CallTrap(), EqTrap()))
    put("big_decimal", "a Decimal with a huge exponent and 5000 digits", decimal.Decimal("9" * 5000 + "E+999999"))

    # data that costs when walked
    heavy = True
    # big sequences are tuples of atoms, which the garbage collector does not track: on Python <= 3.11 every
    # probe placed walks every tracked object (gc.get_referrers), and the corpus has thousands to place
    put("huge_seq", "tuple(range(10**6))", tuple(range(10**6)))
    put("huge_str", "'a' * 10**7", "a" * 10**7)
    put("huge_str2", "another 'a' * 10**7 (equal, not identical)", "".join(["a" * 5 * 10**6, "a" * 5 * 10**6]))
    put("near_strings", "['a' * 10**6, 'a' * (10**6 - 1) + 'b']: equal but for the last character",
        ["a" * 10**6, "a" * (10**6 - 1) + "b"])
    put("twin_strings", "two equal, distinct 10**6-character strings",
        ["b" * 10**6, "".join(["b" * 500_000, "b" * 500_000])])
    put("huge_text", "'word ' * 2 * 10**6", "word " * 2 * 10**6)
    put("huge_lines", "'\\n' * 10**7", "\n" * 10**7)
    put("huge_bytes", "b'\\x00' * 10**7", b"\x00" * 10**7)
    put("huge_digits", "'7' * 10**6", "7" * 10**6)
    put("words", "['w'] * 1000", ["w"] * 1000)
    put("big_int", "a 10**6-bit int", (1 << 10**6) - 1)
    put("big_int2", "another 10**6-bit int", (1 << (10**6 - 17)) + 12345)
    deep: List[Any] = []
    for _ in range(1_500):
        deep = [deep]
    put("deep_list", "a list nested 1,500 deep (past the recursion limit)", deep)
    deep2: List[Any] = []
    for _ in range(1_500):
        deep2 = [deep2]
    put("deep_list2", "another list nested 1,500 deep", deep2)
    deep_d: Dict[str, Any] = {}
    for _ in range(1_500):
        deep_d = {"a": deep_d}
    put("deep_dict", "a dict nested 1,500 deep", deep_d)
    self_list: List[Any] = [1]
    self_list.append(self_list)
    put("self_list", "a list that contains itself", self_list)
    self_dict: Dict[str, Any] = {"n": 1}
    self_dict["self"] = self_dict
    put("self_dict", "a dict that contains itself", self_dict)
    chain = Plain()
    chain.me = chain
    put("chain_obj", "an object whose attribute `me` is itself", chain)
    put("wide_dict", "a dict of 300,000 str keys", {f"k{i}": i for i in range(300_000)})
    put("nested_wide", "a list of 999 tuples of 1000 ints", [tuple(range(1000)) for _ in range(999)])
    mod = (1 << 61) - 1  # the modulus of int hashing: these all hash to 0
    put("collide_keys", "20,000 ints that all hash to 0", tuple(i * mod for i in range(20_000)))
    put("regex_bombs", "strings that make the secret patterns backtrack", (
        ["://:" * 1100 + str(i) for i in range(50)] + ["eyJ" * 1500 + str(i) for i in range(50)]))
    put("camel_key_dict", "a dict with one camelCase key of 400,000 characters", {"aB" * 200_000: 1})
    put("long_key_dict", "a dict with a 10**6-character key ending in 'password'", {"x" * 10**6 + "_password": "v"})
    put("many_strings", "100,000 distinct short strings", tuple(f"s{i}" for i in range(100_000)))

    # harmless controls
    heavy = False
    put("plain_int", "7 (harmless)", 7)
    put("plain_str", "'hello' (harmless)", "hello")
    put("plain_list", "[1, 2, 3] (harmless)", [1, 2, 3])
    put("plain_set", "{1, 2, 3} (harmless)", {1, 2, 3})
    put("plain_dict", "{'a': 1} (harmless)", {"a": 1})
    put("plain_obj", "an object with x = 1 (harmless)", Plain(x=1))
    return out


# builtins shadowed by locals in `handle_shadowed`: calling them there must be refused, never run
SHADOWED_BUILTINS = ("len str sorted isinstance type min max bool int list set any all sum tuple abs float round "
                     "frozenset").split()


def shadowing_locals() -> Dict[str, Any]:
    return {name: hostile_class(f"Shadowed_{name}", ("__call__", "__eq__", "__hash__", "__repr__"))()
            for name in SHADOWED_BUILTINS}


# ------------------------------------------------------------------------------------------ expressions

class Group(NamedTuple):
    attack: str  # the class of attack (one test each)
    name: str
    frame: str  # which probed function: "handle" or "handle_shadowed"
    expressions: Tuple[str, ...]


_TREE_STR = _balanced("huge_str", 64)  # ~640 MB of text from 64 leaves, nesting 7 deep
_TREE_SEQ = _balanced("huge_seq", 48)

GROUPS: Tuple[Group, ...] = (
    # ---------------------------------------------------------------- cost bombs
    # Each would build or scan far more than a hit may cost; a work budget must refuse it before doing it.
    Group("cost", "repetition and concatenation", "handle", (
        "'a' * 999999 + 'b' * 999999",
        "('x' * 999999 + 'x' * 999999) + ('x' * 999999 + 'x' * 999999)",
        "huge_str + huge_str",
        "((huge_str + huge_str) + (huge_str + huge_str)) + ((huge_str + huge_str) + (huge_str + huge_str))",
        _TREE_STR,
        f"len({_TREE_SEQ})",
        "huge_bytes + huge_bytes + huge_bytes + huge_bytes",
        "huge_seq + huge_seq + huge_seq + huge_seq",
        "str([['a' * 999999] * 999999])",
        "str([[0] * 999999] * 999999)",
        "str([huge_str] * 99)",
        "str((huge_str, huge_str, huge_str, huge_str))",
        "huge_str.join(words)",
        "huge_str.join([huge_str, huge_str, huge_str])",
        "' '.join([huge_str] * 999999)",
        "(huge_text + huge_text).split()",
        "tuple(huge_seq) + tuple(huge_seq)",
        "huge_seq[::-1] + huge_seq[::-1]",
        "(huge_str + huge_str).upper()",
        "huge_str.upper().lower().upper()",
        "huge_text.title()",
        "huge_str.casefold()",
        "huge_bytes.hex()",
        "huge_bytes.hex().upper()",
        "[huge_seq] * 999999 + [huge_seq] * 999999",
    )),
    Group("cost", "sorted, min, max, sum, set, list, tuple, str and join over big or nested data", "handle", (
        "sorted(['a' * 999999, 'a' * 999999] * 499999)",
        "sorted(twin_strings * 499999)",
        "min(twin_strings * 499999)",
        "max(twin_strings * 499999)",
        "sorted(huge_seq)",
        "sorted(huge_seq, reverse=True)",
        "sorted(huge_seq[::-1])",
        "sorted(huge_str[:999999])",
        "sorted(many_strings * 10)",
        "sorted(wide_dict)",
        "sorted(wide_dict.values())",
        "max(wide_dict.items())",
        "sorted(huge_text.split())",
        "sum(huge_seq)",
        "sum([0.5] * 999999)",
        "max(huge_seq)",
        "min(huge_seq, default=0)",
        "any([0] * 999999)",
        "all([1] * 999999)",
        "set(huge_seq)",
        "frozenset(huge_seq)",
        "set(collide_keys)",
        "len(frozenset(collide_keys))",
        "set(collide_keys) == set(collide_keys)",
        "list(huge_seq)",
        "tuple(huge_seq)",
        "list(wide_dict.items())",
        "sorted(set(huge_seq))",
        "set(huge_str[:999999])",
        "str(huge_seq)",
        "str(nested_wide)",
        "str(wide_dict)",
        "len(str(wide_dict))",
        "str([str(huge_seq), str(huge_seq), str(huge_seq)])",
        "''.join(huge_text.split())",
        "','.join(str(huge_seq).split(','))",
        "str(wide_dict.items())",
        "str(regex_bombs)",
    )),
    Group("cost", "comparisons and `in` on long strings and big containers", "handle", (
        "huge_str == huge_str2",
        "huge_str + 'a' > huge_str2 + 'b'",
        "twin_strings * 499999 == twin_strings[::-1] * 499999",
        "[huge_str] * 999999 == [huge_str2] * 999999",
        "near_strings[1] in [near_strings[0]] * 999999",
        "([near_strings[0]] * 999999).count(near_strings[1])",
        "([near_strings[0]] * 999999).index(near_strings[1])",
        "(near_strings * 499999).count(near_strings[1])",
        "('a' * 99999 + 'ba') in huge_str",
        "huge_str.find('a' * 99999 + 'ba')",
        "huge_str.count('a' * 9999 + 'ba')",
        "huge_str.split('a' * 99999 + 'ba')",
        "huge_str.count('aa')",
        "huge_str.rfind('ab')",
        "huge_str.strip('a')",
        "huge_seq == tuple(list(huge_seq))",
        "[wide_dict] * 999999 == [wide_dict] * 999999",
        "wide_dict == wide_dict",
        "'k299999' in wide_dict",
        "wide_dict['k1'] + wide_dict['k2'] + wide_dict['k3'] + wide_dict['k4'] + wide_dict['k5'] + wide_dict['k6']",
        "wide_dict.get('k7', 0) + wide_dict.get('k8', 0) + wide_dict.get('k9', 0) + wide_dict.get('k10', 0)",
        "collide_keys[19999] in collide_keys",
        "deep_list == deep_list2",
        "self_list == self_list",
        "self_dict == self_dict",
        "big_int == big_int2",
        "big_int < big_int2",
        "huge_text.count('word') == huge_text.count(' ')",
        "twin_strings[0] in huge_str",
    )),
    Group("cost", "slices, splits and conversions of huge values", "handle", (
        "huge_str[::-1]",
        "huge_str[::2]",
        "huge_str[1:]",
        "huge_seq[::-1]",
        "huge_bytes[::-1]",
        "[huge_seq[1:], huge_seq[2:], huge_seq[3:], huge_seq[4:]]",
        "huge_text[::-1].split()",
        "huge_str.split('a')",
        "huge_lines.splitlines()",
        "huge_text.split()",
        "huge_text.rsplit(' ')",
        "huge_text.partition('zz')",
        "huge_bytes.split(b'\\x00')",
        "str(big_int)",
        "str(big_int >> 967000)",
        "int('9' * 4999)",
        "str(int('9' * 4999) * int('9' * 4999))",
        "int(huge_digits)",
        "int(huge_digits[:4999]) * int(huge_digits[:4999])",
        "float(big_int)",
        "int(big_decimal)",
        "big_decimal ** 99",
        "(7 ** 9000) ** (big_decimal / (big_decimal * 2))",  # a Decimal power: 5.6 s before it was refused
        "big_decimal ** (big_decimal / (big_decimal * 2))",
        "round(big_decimal)",
        "big_decimal == big_int",  # an int compared with a Decimal is converted first: 1.35 s before it was charged
        "big_int < big_decimal",
        "str(big_decimal)",
        "round(big_int, -4000)",
        "round(big_int2, -3999)",
        "big_int // (big_int2 >> 500000)",
        "big_int % (big_int2 >> 400000)",
        "big_int2 // (big_int >> 1)",
        "big_int // 7",
        "-big_int + ~big_int2",
        "(big_int & big_int2) | (big_int ^ big_int2)",
    )),
    Group("cost", "powers and shifts", "handle", (
        "2 ** 33219",
        "10 ** 10 ** 4",
        "(-1) ** big_int",
        "2 ** -big_int",
        "1.0000001 ** big_int",
        "(1 + 1j) ** 999999999",
        "big_int ** 1",
        "7 ** 11815 % 1000007",
        "str(2 ** 33219)",
        "1 << 33219",
        "(1 << 33219) << 1",
        "0 << big_int",
        "True << 33219",
        "1 << big_int",
        "big_int << 0",
        "(2 ** 33219) * (2 ** 33219)",
        "(2 ** 16000) ** 2",
    )),
    Group("cost", "deep nesting", "handle", (
        "str(deep_list)",
        "str(deep_dict)",
        "str(self_list)",
        "str(self_dict)",
        "len(str(deep_list[0][0][0]))",
        "sorted([deep_list] * 999999)",
        "deep_list in [deep_list2]",
        "[deep_list] == [deep_list2]",
        "deep_list" + "[0]" * 60,
        "chain_obj" + ".me" * 60,
        "[" * 60 + "plain_int" + "]" * 60,
        "str(" * 30 + "huge_seq" + ")" * 30,
        "str(" + "[" * 30 + "huge_str" + "]" * 30 + ")",
        " + ".join(["str(huge_seq)"] * 20),
    )),

    # ---------------------------------------------------------------- attempts to run user code
    Group("user_code", "dunder access", "handle", (
        "meta_prop_obj.__class__",
        "meta_prop_cls.__mro__",
        "meta_prop_cls.__dict__",
        "meta_prop_cls.__name__",
        "creds.__class__.__init__",
        "getattr_obj.__dict__",
        "handle.__globals__",
        "().__class__.__bases__[0].__subclasses__()",
        "type(creds).__subclasses__()",
        "plain_list.__len__()",
        "eq_obj.__eq__(1)",
        "repr_obj.__repr__()",
        "proxy_obj.__wrapped__",
        "str_sub.__str__()",
        "int_sub.__index__()",
        "meta_hostile_cls.__instancecheck__(1)",
        "gen_obj.__next__()",
        "exc_evil.__traceback__",
        "enum_member.__class__",
        "format_obj.__format__('')",
        "_\uff3fclass__",
        "getattr_obj.__\uff43lass__",
        "getattr_obj._GetattrTrap__secret",
    )),
    Group("user_code", "attributes that would run properties, descriptors or __getattr__", "handle", (
        "meta_prop_obj.value",
        "meta_prop_cls.tax",
        "meta_prop_cls.config",
        "meta_hostile_cls.anything",
        "meta_hostile_cls.plain",
        "meta_hostile_obj.x",
        "getattr_obj.missing",
        "getattribute_obj.x",
        "class_liar.items",
        "dict_descriptor_obj.x",
        "descriptor_obj.value",
        "descriptor_obj.lazy",
        "descriptor_obj.cached",
        "descriptor_obj.prop",
        "descriptor_obj.plain",
        "slots_obj.a",
        "slots_obj.empty",
        "evil_key_obj.name",
        "evil_key_obj.other",
        "evil_ns_module.name",
        "evil_ns_cls.tax",
        "evil_ns_obj.tax",
        "lazy_module.anything",
        "lazy_module.VERSION",
        "module_sub.settings",
        "weak_proxy.x",
        "proxy_obj.user",
        "lazy_settings.DEBUG",
        "partial_obj.args",
        "named_liar._fields",
        "exc_evil.args",
        "exc_evil.detail",
        "tz_datetime.tzinfo",
        "enum_member.value",
        "int_sub.real",
        "gen_obj.gi_frame",
    )),
    Group("user_code", "calls of things that are not allowed", "handle", (
        "print(creds)",
        "open('/etc/passwd')",
        "exec('import os')",
        "eval('1 + 1')",
        "compile('1', 'f', 'eval')",
        "getattr(creds, 'get')",
        "setattr(plain_obj, 'x', 2)",
        "hasattr(getattr_obj, 'x')",
        "repr(repr_obj)",
        "format(format_obj, '')",
        "hash(hash_obj)",
        "iter(iter_obj)",
        "next(gen_obj)",
        "call_obj()",
        "call_obj(1)",
        "creds.pop('user')",
        "plain_list.append(1)",
        "plain_dict.update(creds)",
        "plain_dict.setdefault('k', 1)",
        "plain_str.format(creds)",
        "plain_str.encode()",
        "plain_str.zfill(10 ** 9)",
        "plain_str.center(10 ** 9)",
        "'\\t'.expandtabs(999999999)",
        "dict(creds)",
        "bytes(huge_seq)",
        "range(10 ** 18)",
        "reversed(huge_seq)",
        "map(str, huge_seq)",
        "divmod(big_int, 7)",
        "pow(2, 10 ** 9)",
        "vars(creds)",
        "dir(getattr_obj)",
        "type(creds)()",
        "type(eq_obj)(1)",
        "type(plain_str)(repr_obj)",
        "type(huge_seq)(iter_obj)",
        "type(creds).get(creds, 'user')",
        "str.join(',', iter_obj)",
        "min(huge_seq, key=call_obj)",
        "sorted(plain_list, reverse=bool_obj)",
        "plain_list.index(eq_obj)",
        "','.join(gen_obj)",
        "','.join(list_sub)",
        "','.join(str_sub)",
        "b''.join([bytes_sub])",
        "isinstance(1, int)(1)",
    )),
    Group("user_code", "operators and builtins on hostile values", "handle", (
        "eq_obj == 1", "eq_obj in plain_list", "plain_list == [eq_obj]", "hash_obj in plain_set", "{hash_obj: 1}",
        "plain_dict.get(hash_obj)", "order_obj < 1", "sorted([order_obj, order_obj])", "max(order_obj, order_obj)",
        "len(len_obj)", "bool(bool_obj)", "not bool_obj", "1 if bool_obj else 2", "1 in iter_obj", "list(iter_obj)",
        "1 in contains_obj", "contains_obj[0]", "plain_list[index_obj]", "plain_str * index_obj", "int(index_obj)",
        "round(index_obj)", "-arith_obj", "1 + arith_obj", "2 ** arith_obj", "str(repr_obj)", "str({1: repr_obj})",
        "str(sleepy_obj)", "sleepy_obj == 1", "str(raising_obj)", "raising_obj == 1", "raising_obj is None",
        "meta_hostile_obj", "str(enum_member)", "enum_member == enum_member", "str_enum_member + 'x'", "int_sub + 1",
        "int_sub < 8", "plain_list[int_sub]", "'ab' * int_sub", "round(float_sub, 2)", "str_sub == 'hello'",
        "str_sub[0]", "'h' in str_sub", "str_sub in plain_dict", "str_sub.startswith('h')", "str(str_sub)",
        "bytes_sub.hex()", "list_sub[0]", "1 in list_sub", "sorted(list_sub)", "dict_sub['k']", "dict_sub.get('k')",
        "tuple_sub == (1, 2)", "len(set_sub)", "default_dict['missing']", "named_liar[0]", "str(exc_evil)",
        "tz_datetime < tz_datetime", "mapping_proxy['id']", "str(partial_obj)", "weak_proxy == 1",
        "str(meta_prop_cls)", "meta_hostile_cls in (1, 2)", "type(meta_hostile_obj) == meta_hostile_cls",
        "type(meta_hostile_obj) in (int, str)", "evil_key_dict.get('user')", "'user' in evil_key_dict",
        "sorted(evil_key_dict)", "evil_int_key_dict[1]", "meta_key_dict", "str(meta_key_dict)", "meta_pair[0]",
        "proxy_obj['user']", "len(proxy_obj)",
    )),
    Group("user_code", "shadowed builtins (calls of locals named like builtins)", "handle_shadowed", (
        "len(plain_list)", "str(1)", "sorted(plain_list)", "isinstance(1, int)", "type(1)", "min(1, 2)", "bool(1)",
        "int('1')", "list(plain_list)", "sum(plain_list)", "abs(-1)", "len == 1", "type", "str(len)",
    )),
    Group("user_code", "comprehensions, lambda, walrus, f-strings and formatting", "handle", (
        "[c for c in creds]",
        "{k: v for k, v in creds.items()}",
        "{v for v in creds.values()}",
        "list(v for v in creds.values())",
        "any(x for x in iter_obj)",
        "(lambda c: c)(creds)",
        "lambda: 0",
        "(x := creds)",
        "(plain_int := 5) and plain_int",
        "f'{creds}'",
        "f'{repr_obj!r}'",
        "f'{format_obj:>10}'",
        "f'{plain_int:{10 ** 9}}'",
        "'{}'.format(repr_obj)",
        "'{0.__class__}'.format(creds)",
        "'%s' % repr_obj",
        "'%s' % (creds,)",
        "'%*d' % (10 ** 9, 1)",
        "b'%s' % huge_bytes",
        "format(creds)",
        "'{}'.format_map(creds)",
        "[*creds]",
        "{**creds}",
        "(yield creds)",
        "await gen_obj",
    )),
    Group("user_code", "type(x)(...) and isinstance() with hostile classes", "handle", (
        "type(creds)(creds)",
        "type(repr_obj)()",
        "type(meta_hostile_obj)()",
        "type(eq_obj).mro()",
        "type(class_liar) is dict",
        "type(class_liar) == dict",
        "type(meta_hostile_cls) is type",
        "type(type(meta_hostile_cls))",
        "isinstance(abc_obj, abc_cls)",
        "isinstance(1, abc_cls)",
        "isinstance(plain_int, (int, abc_cls))",
        "isinstance(class_liar, dict)",
        "isinstance(proxy_obj, dict)",
        "isinstance(plain_int, meta_hostile_cls)",
        "isinstance(plain_int, instancecheck_cls)",
        "isinstance(meta_hostile_obj, meta_hostile_cls)",
        "isinstance(plain_int, proxy_obj)",
        "isinstance(plain_int, (int, (str, abc_cls)))",
        "isinstance(meta_prop_obj, meta_prop_cls)",
        "isinstance(raising_obj, int)",
        "isinstance(weak_proxy, int)",
    )),

    # ---------------------------------------------------------------- attempts to read redacted values
    Group("redacted", "computed keys and names", "handle", (
        "creds['pass' + 'word']",
        "creds['PASS'.lower() + 'word']",
        "creds.get('to' + 'ken')",
        "creds.get('api_' + 'key')",
        "creds[field_name]",
        "creds.get(field_name)",
        "creds[key_parts[0] + key_parts[1]]",
        "creds.get(key_parts[0] + key_parts[1], 0)",
        "creds['pass\\u0077ord']",
        "creds.get('\\x70assword')",
        "headers['Authori' + 'zation']",
        "headers.get('Coo' + 'kie')",
        "headers.get('X-Api-' + 'Key')",
        "settings.database['primary']['pass' + 'word']",
        "settings.vault['a']['b']['c']['tok' + 'en']",
        "byte_creds[b'password']",
        "byte_creds.get(b'api_key')",
        "environ_data[b'PGPASSWORD']",
        "environ_data.get(b'AWS_SECRET_ACCESS_KEY')",
        "byte_creds[b'password'].hex()",
        "creds['pass' + 'word'][0:64]",
        "creds['pass' + 'word'] == 'x'",
        "secret_list[0][1]",
        "secret_list[1][1]",
        "nested_list[0][0][1]",
        "header_pairs[1][1]",
        "header_pairs[0][1][6:]",
        "meta_pair[1]",
    )),
    Group("redacted", "whole containers, repr-like laundering and joins", "handle", (
        "str(creds)",
        "str(creds)[::-1]",
        "str(creds).upper()",
        "list(str(creds))",
        "str(creds).split(\"'\")",
        "str(creds).partition('password')",
        "list(creds.values())",
        "tuple(creds.values())",
        "list(creds.items())",
        "sorted(creds.values())",
        "max(creds.values())",
        "min(creds.values(), default=0)",
        "' '.join(creds.values())",
        "''.join(sorted(creds.values()))",
        "str(creds.values())",
        "str(creds.items())",
        "str([creds])",
        "str({'outer': creds})",
        "str((creds,))",
        "list(headers.values())",
        "str(headers)",
        "str(header_pairs)",
        "str(secret_list)",
        "str(nested_list)",
        "list(byte_creds.values())",
        "str(byte_creds)",
        "str(environ_data)",
        "str(settings.database)",
        "list(settings.database['primary'].values())",
        "settings.vault",
        "str(settings.vault)",
        "str(evil_key_dict)",
        "list(evil_key_dict.values())",
        "str(meta_pair)",
        "str(namespace_obj)",
        "str(account)",
        "mapping_proxy['sec' + 'ret']",
        "str(mapping_proxy)",
        "str(login_error)",
        "login_error.args",
    )),
    Group("redacted", "secret-shaped values sliced, split or re-cased out of their shape", "handle", (
        "db_url_text.split(':')[2]",
        "db_url_text[16:]",
        "cache_url.partition('@')[0]",
        "https_creds.split('@')[0].split(':')[2]",
        "slash_pw_url.split('@')[0][16:]",
        "libpq_text.split('=')[3]",
        "adonet_text.split(';')[3][9:]",
        "basic_header.split()[2]",
        "bearer_short[7:]",
        "header_block.split()[4]",
        "jwt_text.split('.')[2]",
        "aws_key_text.lower()",
        "card_spaces.split()",
        "card_dashes.split('-')",
        "card_dots.split('.')",
        "cookie_line[8:]",
        "set_cookie_line.split('=')[1]",
        "form_body.split('=')[2]",
        "pem_text.splitlines()[1]",
        "github_pat[4:]",
        "slack_token_text.upper()",
        "stripe_live[8:]",
        "request_line.split('=')[1]",
        "json_body.split('\"')[7]",
        "raw_buf[9:]",
        "raw_buf.split(b'=')[1]",
        "array_obj[6:]",
        "upstream_error.args",
    )),

    # ---------------------------------------------------------------- escapes
    Group("escape", "imports, builtins, globals, getattr and vars", "handle", (
        "__import__('os')",
        "__import__('os').system('id')",
        "__builtins__",
        "__builtins__['eval']('1')",
        "globals()",
        "locals()",
        "vars()",
        "getattr(creds, '__class__')",
        "getattr(os, 'system')('id')",
        "os.system('id')",
        "os.popen('id')",
        "os.environ",
        "os.environ['PGPASSWORD']",
        "os.environ['PG' + 'PASSWORD']",
        "os.environ._data",
        "os.environ._data[b'PGPASSWORD']",
        "os.environ._data[b'DATABASE_URL']",
        "str(os.environ._data)",
        "list(os.environ._data.values())",
        "os.getenv('PGPASSWORD')",
        "sys.modules['os'].system",
        "sys.modules['os'].environ._data",
        "sys.modules['builtins'].eval",
        "sys.modules['builtins'].open('/etc/passwd')",
        "sys.modules['probebook.agent.engine']",
        "sys.modules['probebook.agent.control.auth']",
        "sys.modules['__main__']",
        "sys._getframe(0).f_locals",
        "sys.settrace(None)",
        "sys.exc_info()",
        "handle.__code__",
        "ENV['pass' + 'word']",
        "ENV['cre' + 'ds']",
        "str(ENV['cre' + 'ds'])",
        "str(ENV)",
        "tb_obj.tb_frame.f_locals",
        "tb_obj.tb_frame.f_globals",
        "tb_obj.tb_frame.f_back",
        "tb_obj.tb_frame.f_back.f_locals",
        "gen_obj.gi_frame.f_locals",
        "partial_obj.func",
        "().__class__.__base__.__subclasses__()",
        "\uff45\uff56\uff41\uff4c('1')",
        "[].__class__.__mro__[1]",
    )),

    # ---------------------------------------------------------------- malformed input
    Group("malformed", "null bytes, lengths, nesting and unicode tricks", "handle", (
        "",
        " ",
        "\x00",
        "creds\x00",
        "1\x00 + 1",
        "x" * 1001,
        "1 + " * 300 + "1",
        "plain_int" + " or plain_int" * 76,
        "(" * 100 + "plain_int" + ")" * 100,
        "(" * 300 + ")" * 300,
        "[" * 200 + "]" * 200,
        "{" * 150 + "}" * 150,
        "-" * 900 + "1",
        "not " * 240 + "1",
        "~" * 999 + "1",
        "creds" + "[0]" * 300,
        "plain_obj" + ".me" * 300,
        "1 if 1 else " * 80 + "1",
        "lambda",
        "'",
        "'unterminated",
        '"""',
        "#",
        "creds # a comment",
        "1 +",
        ")",
        "\\",
        "creds\n+ 1",
        "\ufeffcreds",
        "creds\u202e",
        "\u202ecreds",
        "pass\u200dword",
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44",
        "\U0001d429\U0001d41a\U0001d42c\U0001d42c\U0001d430\U0001d428\U0001d42b\U0001d41d",
        "\u0440\u0430ssword",
        "creds['\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44']",
        "\ud800",
        "creds['\ud800']",
        "'\\udcff' * 999999",
        "9" * 999,
        "0x" + "f" * 998,
        "1e999999",
        "'\\N{bogus}'",
        "creds[...]",
        "...",
        "creds; import os",
        "import os",
        "x = 1",
        "del creds",
        "None()",
        "'a'()",
    )),
)

# whole log templates (placed only as templates): many parts, cheap or costly each, and malformed ones
TEMPLATES: Tuple[str, ...] = (
    "{sorted(huge_seq)} " * 50,
    "{wide_dict['k1']}" * 400,
    "{str(huge_seq)}" * 30,
    "{huge_str + huge_str}" * 50,
    "{huge_text.split()}" * 10,
    "{huge_bytes.hex()}" * 20,
    "{plain_int}" * 30000,
    "{huge_seq}" * 3000,
    "{regex_bombs}" * 20,
    " ".join(f"{{regex_bombs[{i}]}}" for i in range(100)),
    "{str(creds)}" * 100,
    "{evil_key_dict}" * 10,
    "{creds}" * 2000,
    "{huge_str}" * 1000,
    "{{" * 50000,
    "{",
    "}",
    "{{{creds}",
    "{creds!r}",
    "{creds:>999999999}",
    "{creds=}",
    "{}",
    "{'}'}",
    "{" + "x" * 2000 + "}",
    "\x00{creds}",
)


def expressions() -> List[Tuple[Group, str]]:
    """Every (group, expression) of the corpus, in order."""
    return [(g, e) for g in GROUPS for e in g.expressions]
