"""What a capture makes of every kind of value, one table: for a fixed zoo of values (scalars at their
edges, text and bytes short, long and secret-shaped, containers nested, cyclic and over their limits,
objects with dicts, slots, properties and hooks, exceptions, named tuples, enums, subclasses of builtins,
modules, functions, classes), the tree `capture_value` writes under several limits and redaction
settings, the line `safe_repr` writes at several lengths, and the answers of the redaction checks for a
corpus of names and texts made by combining words, separators and secret shapes with their near misses.

The table (`capture_table.json`, beside this file) is what a capture promises written down: a limit that
stops cutting, a secret that stops being redacted, a marker that changes, all show as a changed row,
named. Where the answer legitimately depends on the Python version, the row names the versions it holds
on. A change meant to alter the table: `PROBEBOOK_UPDATE_TABLE=1 pytest tests/unit/agent/capture/
test_capture_table.py` on the base version (3.11) first, then each other version; the diff is reviewed
like code.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import itertools
import json
import os
import re
import types
import uuid
from typing import Any, Dict, List, NamedTuple

from support import check_table

from probebook.agent.capture import writers
from probebook.agent.capture.redaction import RedactionConfig, Redactor, key_name, normalize_identifier
from probebook.agent.capture.safe_access import (class_name, class_namespace, instance_dict, iter_fields, module_file,
                                                  module_name, mro_of, plain_text, safe_getattr, slot_names, type_name)
from probebook.agent.capture.safe_repr import safe_repr
from probebook.agent.capture.values import CaptureLimits, capture_locals_raw, capture_stack, capture_value
from probebook.agent.capture.tree import as_tree
from probebook.errors import UnsafeAccess

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "capture_table.json")
TRIPPED: List[str] = []  # the user code below that ran (it must not)


def _trip(what: str) -> Any:
    TRIPPED.append(what)
    raise RuntimeError(f"{what} ran")


class Hooks:
    """Every hook a careless capture would call."""

    def __init__(self, **state: Any) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return _trip("__repr__")

    def __getattr__(self, name: str) -> Any:
        return _trip(f"__getattr__({name})")

    def __eq__(self, other: Any) -> bool:
        return _trip("__eq__")

    def __hash__(self) -> int:
        return _trip("__hash__")

    def __len__(self) -> int:
        return _trip("__len__")

    def __iter__(self) -> Any:
        return _trip("__iter__")

    @property
    def computed(self) -> Any:
        return _trip("property")


class Slotted:
    __slots__ = ("a", "b", "password", "empty")

    def __init__(self) -> None:
        self.a, self.b, self.password = 1, [2, 3], "hunter2"


class Both(Slotted):
    def __init__(self) -> None:
        super().__init__()
        self.extra = {"k": "v"}


class Wide:
    def __init__(self) -> None:
        for i in range(30):
            setattr(self, f"f{i:02d}", i)


class Nested:
    def __init__(self, depth: int) -> None:
        self.level = depth
        self.child = Nested(depth - 1) if depth else None


class Color(enum.Enum):
    RED = 1
    LABEL = "lbl"
    PAIR = (1, 2)


class Perm(enum.IntFlag):
    R = 4
    W = 2


class Point(NamedTuple):
    x: int
    y: int
    token: str


@dataclasses.dataclass
class Order:
    id: int
    items: list
    api_key: str = "k-123"


class MyDict(dict):
    def __iter__(self) -> Any:
        return _trip("MyDict.__iter__")

    def items(self) -> Any:
        return _trip("MyDict.items")


class MyList(list):
    def __len__(self) -> int:
        return _trip("MyList.__len__")


class MyStr(str):
    def __str__(self) -> str:
        return _trip("MyStr.__str__")


class MyInt(int):
    def __index__(self) -> int:
        return _trip("MyInt.__index__")


class MyFloat(float):
    pass


class MyBytes(bytes):
    pass


class LoudKey(str):
    """A str subclass whose __eq__ is Python code: a key of it in a namespace must never be compared."""

    def __eq__(self, other: Any) -> bool:
        return _trip("LoudKey.__eq__")

    __hash__ = str.__hash__


class HookedModule(types.ModuleType):
    def __getattribute__(self, name: str) -> Any:
        return _trip(f"HookedModule.__getattribute__({name})")


def _modules() -> Dict[str, Any]:
    lazy = types.ModuleType("lazy_mod")
    lazy.__dict__["__getattr__"] = lambda name: _trip(f"module __getattr__({name})")
    lazy.__file__ = "/srv/app/lazy_mod.py"
    hooked = HookedModule("hooked_mod")
    types.ModuleType.__setattr__(hooked, "value", 3)
    odd = types.ModuleType("odd_mod")
    odd.__dict__[LoudKey("k")] = 1
    odd.__dict__[5] = "five"
    unnamed = types.ModuleType("unnamed")
    del unnamed.__dict__["__name__"]
    return {"lazy_mod": lazy, "hooked_mod": hooked, "odd_mod": odd, "unnamed_mod": unnamed,
            "odd_cls": type("OddKeys", (), {LoudKey("k"): 1}), "odd_obj": _odd_object()}


def _odd_object() -> Any:
    obj = Hooks(a=1)
    obj.__dict__[LoudKey("b")] = 2
    return obj


class GetOnly:
    """A non-data descriptor: an instance's own entry of the same name wins."""

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return _trip("GetOnly.__get__")


class SetOnly(GetOnly):
    """A data descriptor by its __set__ alone: it wins over the instance's entry (so it is not read)."""

    def __set__(self, obj: Any, value: Any) -> None:
        _trip("SetOnly.__set__")


class DeleteOnly(GetOnly):
    """A data descriptor by its __delete__ alone."""

    def __delete__(self, obj: Any) -> None:
        _trip("DeleteOnly.__delete__")


class Described:
    nondata, setonly, delonly = GetOnly(), SetOnly(), DeleteOnly()
    plain_attr = 5

    def a_method(self) -> int:
        return 1

    @staticmethod
    def a_static() -> int:
        return 2

    @classmethod
    def a_class(cls) -> int:
        return 3

    @property
    def a_prop(self) -> int:
        return _trip("Described.a_prop")

    def __init__(self) -> None:
        self.__dict__.update(nondata="own", setonly="own", delonly="own", x=1)


class ServiceCredentials:
    def __init__(self) -> None:
        self.user, self.key = "svc", "abc"


class AppError(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(code, why)
        self.code, self.secret = code, "shh"


class Meta(type):
    def __repr__(cls) -> str:
        return _trip("Meta.__repr__")


class WithMeta(metaclass=Meta):
    x = 1


# functions compiled from a fixed file name: their code's file and lines are the same wherever the tests run
_HANDLERS_SOURCE = """def a_function(x, y=2):
    return x + y

def _gen():
    yield 1

async def a_coroutine():
    return None

def outer_frame():
    return inner_frame()

def inner_frame():
    import sys
    return sys._getframe()
"""
_NS: Dict[str, Any] = {}
exec(compile(_HANDLERS_SOURCE, "/srv/app/handlers.py", "exec"), _NS)
a_function, _gen, a_coroutine = _NS["a_function"], _NS["_gen"], _NS["a_coroutine"]


def zoo() -> Dict[str, Any]:
    """One value of each kind a capture meets, named."""
    cyclic: list = [1]
    cyclic.append(cyclic)
    self_dict: dict = {"a": 1}
    self_dict["me"] = self_dict
    shared = [1, 2]
    card = "4111 1111 1111 1111"
    coroutine = a_coroutine()
    coroutine.close()
    return {
        # scalars at their edges
        "zero": 0, "neg": -7, "i63": 2 ** 63 - 1, "i63+1": 2 ** 63, "-i63": -2 ** 63, "-i63-1": -2 ** 63 - 1,
        "huge": 7 ** 400, "f": 2.5, "negf": -0.0, "nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"),
        "t": True, "none": None, "cplx": 1 + 2j,
        # text and bytes
        "s": "hello", "empty": "", "s255": "x" * 255, "s256": "y" * 256, "long": "ab" * 400, "u": "h\u00e9llo \u2603",
        "ulong": "\u00e9" * 300, "bearer": "Bearer abcdefghijklmnop", "dsn": "postgres://admin:s3cret@db:5432/app",
        "jwt": "eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl", "card": card, "aws": "AKIA" + "A" * 16,
        "late_secret": "z" * 300 + " password=hunter2", "very_late_secret": "z" * 600 + " password=hunter2",
        "by": b"bytes here", "bylong": b"\x00\xff" * 200, "bysecret": b"token=abcdef123", "ba": bytearray(b"xyz"),
        "mv": memoryview(b"abc"),
        # containers
        "l": [3, 1, 2], "t3": (1, "a", None), "t1": (5,), "lbig": list(range(150)), "nested": [[1, [2, [3, [4]]]]],
        "d": {"a": 1, "b": [1, 2]}, "dbig": {f"k{i}": i for i in range(120)}, "dkeys": {1: "i", 2.5: "f",
        None: "n", (1, 2): "t", b"bk": "b", True: "T"}, "st": {3, 1, 2}, "fs": frozenset({9, 8}),
        "dq": collections.deque([1, 2, 3]), "od": collections.OrderedDict(x=1, y=2),
        "dd": collections.defaultdict(list, {"q": [1]}), "cnt": collections.Counter({"a": 2}),
        "cyclic": cyclic, "self_dict": self_dict, "shared": [shared, shared], "empty_set": set(),
        "empty_list": [], "empty_dict": {},
        # secrets by name
        "creds": {"user": "ann", "password": "hunter2", "api_key": "k", "token_value": "t", "note": "ok"},
        "bkeys": {b"password": "p", b"user": "u"}, "ekeys": {Color.LABEL: 1}, "pair": ("Authorization", "Basic abc"),
        "pairs": [("user", "ann"), ("password", "hunter2"), ["secret", "x"]], "notpair": ("password", "x", "y"),
        # objects
        "hooks": Hooks(a=1, b="two", password="p", nested={"k": [1, 2]}), "slotted": Slotted(), "both": Both(),
        "wide": Wide(), "deep": Nested(6), "order": Order(7, ["x", "y"]), "point": Point(1, 2, "t0k"),
        "color": Color.RED, "label": Color.LABEL, "cpair": Color.PAIR, "perm": Perm.R | Perm.W,
        "err": AppError(503, "upstream"), "keyerr": KeyError("missing"), "bare_exc": ValueError(),
        "chained": _chained(), "svc": ServiceCredentials(),
        # subclasses of builtins
        "mydict": MyDict(a=1), "mylist": MyList([1, 2]), "mystr": MyStr("sub"), "myint": MyInt(5),
        "myfloat": MyFloat(1.5), "mybytes": MyBytes(b"mb"),
        # one-line summaries
        "module": collections, "func": a_function, "method": Order(1, []).__repr__, "builtin": len,
        "cls": Order, "metacls": WithMeta, "code": a_function.__code__, "gen": _gen(), "coro": coroutine,
        "prop": property(lambda self: 1), "sm": staticmethod(a_function), "wrapper": object.__init__,
        "lambda": lambda: 0, "partial": __import__("functools").partial(a_function, 1),
        # stdlib values shown as text
        "date": datetime.date(2024, 5, 1), "dt": datetime.datetime(2024, 5, 1, 12, 30, 1, 5),
        "dtz": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc), "delta": datetime.timedelta(1, 2),
        "time": datetime.time(12, 30), "dec": decimal.Decimal("1.50"), "uuid": uuid.UUID(int=7),
        "range": range(3), "slice": slice(1, 2), "ellipsis": ..., "ns": types.SimpleNamespace(a=1, token="x"),
        **_modules(),
        "described": Described(), "described_cls": Described,
        "secret_keys": {"password=hunter2": 1, "Bearer abcdefghijklmnop": 2, "plain": 3},
        "deep_key": {(1, (2, (3, (4,)))): "v"}, "redacted_first": {"password": "x", "a": 1, "b": 2, "c": 3, "d": 4},
        "bytes_list": [b"y" * 60] * 8, "str_list": ["w" * 60] * 8, "secret_bytes": [b"token=abcdef123"] * 12,
        "ints_list": list(range(40)), "pairs_list": [("password", "x")] * 6,
    }


def _chained() -> BaseException:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as outer:
        return outer


LIMITS = {
    "default": CaptureLimits(max_ms=100),
    "small": CaptureLimits(max_depth=1, max_items=2, max_string=8, max_fields=2, max_ms=100),
    "deep": CaptureLimits(max_depth=5, max_items=3, max_string=20, max_fields=3, max_ms=100),
    "bytes": CaptureLimits(max_bytes=150, max_depth=4, max_ms=100),
}


def redactors() -> Dict[str, Redactor]:
    custom = Redactor()
    custom.configure(add_identifiers=["note", "Order-Id"], remove_identifiers=["password"],
                     patterns=[r"hel+o", r"(?i)S3CRET"], types=["*.Order", "*Point"])
    off = Redactor()
    off.configure(enabled=False)
    return {"std": Redactor(), "custom": custom, "off": off, "none": Redactor(RedactionConfig(
        identifiers=frozenset(), patterns=(), types=()))}


PLAIN = (str, int, float, bool, type(None))


def _plain(node: Any) -> bool:
    """Every leaf of a tree is of an exact JSON type: no object of the program (a str or int subclass) is
    kept in an event, where it would live on and be read again later."""
    if type(node) is dict:
        return all(type(k) is str and _plain(v) for k, v in node.items())
    if type(node) is list:
        return all(map(_plain, node))
    return type(node) in PLAIN


def _canonical(node: Any) -> Any:
    """The tree's text, the same in every process: addresses, this module's import name and line
    numbers in summaries vary."""
    text = json.dumps(node, sort_keys=True, allow_nan=False)
    text = re.sub(r" at 0x[0-9a-f]+", " at 0x...", text)
    return re.sub(r"[\w.]*test_capture_table\.", "", text)


NAME_WORDS = ["password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "private_key", "access_key",
              "credential", "credentials", "auth", "session", "cookie", "ssn", "user", "name", "count", "id",
              "key", "pass", "tokenizer", "secretary", "passport", "author", "db", "x"]
NAME_SHAPES = ["{w}", "{W}", "my_{w}", "{w}_value", "{w}_hash", "db{w}", "{w}2", "x-{w}", "old{Wc}", "{w}_count",
               "__{w}__", "{w}_b64", "{w}Str", "{w}.{w}", "a" * 250 + "_{w}", "{w}_" + "a" * 300, "{w}s", "my_{w}s",
               "{w}_base64", "{w}_pem", "{w}s_json"]
TEXT_SHAPES = [
    "Bearer {t}", "bearer {t}", "BEARER {t}", "Basic {t}==", "token={t}", "password: '{t}'", "pwd={t}",
    "api_key={t}", "apikey: {t}", "Cookie: sid={t}", "set-cookie: a={t}", "https://user:{t}@host/x",
    "redis://:{t}@host", "https://host/{t}@x", "https://u@host", "mailto:{t}@example.com",
    "eyJ{t}.eyJ{t}.{t}", "eyJ{t}.eyJ{t}", "x.eyJ{t}.", "AKIA{T}", "ASIA{T}", "ghp_{t36}", "xoxb-{t}",
    "sk_live_{t}", "-----BEGIN RSA PRIVATE KEY-----", "4111 1111 1111 1111", "4111-1111-1111-1112",
    "4111111111111111", "411111111111111", "qty 1 4111 1111 1111 1111", "12345678901234567890123", "{t}",
    "order {t} shipped", "1234 5678 9012 3456", "5500 0000 0000 0004", "4111 11 11 1111 1111",
    " ".join(["1234"] * 40),
    # credentials in URLs: where the @ is, what comes before it, and texts longer than the look-back
    "https://user:{t}@host" + " x" * 600, " x" * 600 + "https://user:{t}@host", "https://user:@host",
    "https://user:{t} @host", "https://a/b:{t}@host", "https://user:{t}@host@other", "a@b https://u:{t}@h",
    "https://u:{t}@h then a@b", "ftp://:{t}@h", "https://user@host:{t}@x", "x://://u:{t}@h", "https://u:p:q@h",
    "https://u" + "x" * 1100 + ":{t}@host", "@" * 5 + "https://u:{t}@h", "https://u:{t}\n@h",
]
TOKENS = {"t": "abc123XYZ_def456", "T": "ABCDEFGHIJKLMNOP", "t36": "A" * 36}


def names() -> List[str]:
    out = []
    for word, shape in itertools.product(NAME_WORDS, NAME_SHAPES):
        out.append(shape.format(w=word, W=word.upper(), Wc=word.title().replace("_", "")))
    return out


def texts() -> List[str]:
    out = []
    for shape in TEXT_SHAPES:
        base = shape.format(**TOKENS)
        out += [base, f"prefix {base}", f"{base} suffix", base[:-1], base.replace(" ", "\t", 1), "z" * 100 + base]
    return out


ATTRS = ["a", "b", "password", "empty", "extra", "computed", "missing", "__dict__", "__class__", "code", "x",
         "_fields", "__doc__", "level", "child", "items", "nondata", "setonly", "delonly", "a_method", "a_static",
         "a_class", "a_prop", "plain_attr"]


def table() -> Dict[str, Any]:
    """Every row's answer, computed afresh (never cached: mutation testing forks each mutant's run from a
    process that already ran the tests once)."""
    for key in list(writers.HANDLERS)[writers._BUILTIN_COUNT:]:  # types learned by earlier tests: again here
        writers.HANDLERS.pop(key, None)
    values, reds, got = zoo(), redactors(), {}
    for (vname, value), (lname, limits) in itertools.product(values.items(), LIMITS.items()):
        tree = capture_value(value, limits, reds["std"])
        got[f"C:{vname}|{lname}"] = _canonical(tree) if _plain(tree) else f"not plain JSON types: {tree!r}"
    for (vname, value), rname in itertools.product(values.items(), ("custom", "off")):
        got[f"C:{vname}|default|{rname}"] = _canonical(capture_value(value, LIMITS["default"], reds[rname]))
    for vname, value in values.items():
        got[f"C:{vname}|named"] = _canonical(capture_value(value, LIMITS["default"], reds["std"], name="db_password"))
        for max_len, rname in itertools.product((1, 2, 3, 5, 8, 12, 20, 60, 255), ("std", "custom")):
            got[f"R:{vname}|{max_len}|{rname}"] = _canonical(safe_repr(value, max_len, reds[rname]))
        got[f"R:{vname}|40|no-redactor"] = _canonical(safe_repr(value, 40))
        got[f"F:{vname}"] = _fields(value)
        for attr in ATTRS:
            got[f"A:{vname}.{attr}"] = _getattr(value, attr)
        got[f"M:{vname}"] = _canonical(_namespaces(value))
    locals_ = {k: values[k] for k in ("s", "creds", "dsn", "l", "hooks")}
    locals_["password"] = "hunter2"
    args, rest = capture_locals_raw(locals_, ("l", "password", "absent"), LIMITS["small"], reds["std"])
    got["L:small"] = _canonical([as_tree(args), as_tree(rest)])
    for name in names():
        got[f"N:{name}"] = [reds[r].is_redacted_name(name) for r in ("std", "custom", "off", "none")] + [
            normalize_identifier(name)]
    for text in texts():
        got[f"V:{text}"] = [reds[r].is_redacted_value(text) for r in ("std", "custom", "off", "none")]
    for key in ["a", b"password", bytearray(b"pwd"), Color.LABEL, MyStr("token"), 5, ("a",), "x" * 300]:
        got[f"K:{_canonical(safe_repr(key, 30))}"] = key_name(key)
    for mapping in LIMIT_MAPPINGS:
        try:
            got[f"LIM:{json.dumps(mapping, sort_keys=True)}"] = repr(CaptureLimits.from_mapping(mapping))
        except Exception as exc:
            got[f"LIM:{json.dumps(mapping, sort_keys=True)}"] = f"{type(exc).__name__}: {exc}"
    for vname in ("creds", "s", "hooks", "huge"):
        got[f"C:{vname}|named-total"] = _canonical(capture_value(values[vname], LIMITS["default"], reds["std"],
                                                                 name="total"))
    frame = _NS["outer_frame"]()
    for n in (1, 2):
        stack = capture_stack(frame, CaptureLimits(max_frames=n), reds["std"], with_locals_for_top=True)
        got[f"S:{n}"] = _canonical([{k: (v > 0 if k == "frames_omitted" else v) for k, v in f.items()} for f in stack])
    for label, make in CONFIGS.items():
        got[f"CFG:{label}"] = _config_row(make)
    for tname in ["app.SecretStr", "SecretStr", "x.ServiceCredentials", "mod.Order", "Point", "a.PrivateKey.b"]:
        got[f"T:{tname}"] = [reds[r].is_redacted_type(tname) for r in ("std", "custom", "off")]
    return got


LIMIT_MAPPINGS = [{}, {"max_depth": 3}, {"max_depth": 0}, {"max_depth": 33}, {"max_items": "10"},
                  {"max_string": True}, {"max_fields": 1000}, {"max_fields": 1001}, {"max_bytes": -1},
                  {"max_frames": 200}, {"max_ms": 101}, {"max_kb": 3}, {"max_depth": 2.0}]
CONFIGS = {  # configurations a user may write, good and bad: the rules they make, or the one-line refusal
    "identifiers as one string": lambda: RedactionConfig(identifiers="password"),
    "identifier not a string": lambda: RedactionConfig(identifiers=frozenset({1})),
    "patterns as one string": lambda: RedactionConfig(patterns="x"),
    "pattern not a regex": lambda: RedactionConfig(patterns=("(",)),
    "types not strings": lambda: RedactionConfig(types=(3,)),
    "enabled as text": lambda: RedactionConfig(enabled="yes"),
    "no patterns": lambda: RedactionConfig(patterns=()),
    "no types": lambda: RedactionConfig(types=()),
    "no identifiers": lambda: RedactionConfig(identifiers=frozenset()),
    "grouped pattern": lambda: RedactionConfig(patterns=(r"(ab)+c", r"(?i)Zed", r"plain\d+")),
    "add one string": lambda: Redactor().configure(add_identifiers="x"),
    "remove a non-string": lambda: Redactor().configure(remove_identifiers=[None]),
    "patterns replaced": lambda: Redactor().configure(patterns=[r"hello"]),
    "types replaced": lambda: Redactor().configure(types=["*.Order"]),
    "disabled": lambda: Redactor().configure(enabled=False),
}
_PROBES = ["password", "db_pass", "order_id", "hello world", "abab c", "ZED", "plain42", "Bearer abcdefghijk",
           "4111 1111 1111 1111", "x.Order", "app.SecretStr"]


def _config_row(make: Any) -> Any:
    """What a configuration says: its normalised parts and how it answers a few names, texts and types."""
    try:
        config = make()
        rules = Redactor(config).snapshot()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return [sorted(config.identifiers)[:5], len(config.identifiers), list(config.patterns)[:3], list(config.types),
            config.enabled, [[rules.is_redacted_name(p), rules.is_redacted_value(p), rules.is_redacted_type(p)]
                             for p in _PROBES]]


def _namespaces(value: Any) -> List[Any]:
    """What the safe_access helpers read of a value and its type."""
    tp = type(value)
    own = instance_dict(value)
    cls_ns = class_namespace(value) if issubclass(tp, type) else class_namespace(tp)
    return [module_name(value), os.path.basename(module_file(value) or "-"), type_name(value), class_name(tp),
            plain_text(value), None if own is None else sorted(own)[:8], None if cls_ns is None else len(cls_ns) > 0,
            len(mro_of(tp)), list(slot_names(tp))]


def _fields(value: Any) -> Any:
    try:
        return _canonical([[k, safe_repr(v, 30)] for k, v in itertools.islice(iter_fields(value), 40)])
    except Exception as exc:  # the row says which error, in one line
        return f"{type(exc).__name__}: {exc}"


def _getattr(value: Any, attr: str) -> Any:
    try:
        return _canonical(safe_repr(safe_getattr(value, attr), 40))
    except UnsafeAccess as exc:
        return _canonical(f"UnsafeAccess: {exc}")
    except Exception as exc:
        return f"{type(exc).__name__}"


def test_every_capture_row_answers_as_written_down():
    TRIPPED.clear()
    got = table()
    assert TRIPPED == [], f"user code ran: {TRIPPED}"
    # the rows are not all of one kind: cut, redacted, cyclic and error markers, summaries, refused reads
    text = "\n".join(map(str, got.values()))
    for marker in ('"not_captured": "depth"', '"not_captured": "redacted"', '"not_captured": "cycle"',
                   '"truncated": true', '"not_captured": "limit"', '"summary"', "UnsafeAccess"):
        assert text.count(marker) >= 5, marker
    assert sum(1 for k, v in got.items() if k.startswith("V:") and v[0]) > 50
    assert sum(1 for k, v in got.items() if k.startswith("V:") and not v[0]) > 50
    assert sum(1 for k, v in got.items() if k.startswith("N:") and v[0]) > 50
    assert sum(1 for k, v in got.items() if k.startswith("N:") and not v[0]) > 50
    here = os.path.dirname(os.path.dirname(TABLE))
    assert [k for k, v in got.items() if here[:12] in json.dumps(v)] == [], "a row depends on where the tests run"
    check_table(TABLE, got, __doc__.split(chr(10) * 2)[0])
