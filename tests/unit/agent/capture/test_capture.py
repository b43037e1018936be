"""Capture: limits and their markers, cycles, redaction, and never running the target's code."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import json
import sys
import uuid

import pytest
from support import within_budget

from probebook.agent.capture.safe_repr import safe_repr
from probebook.agent.capture.tree import as_tree
from probebook.agent.capture.values import (CaptureLimits, capture_locals, capture_locals_raw, capture_stack,
                                            capture_value)
from probebook.errors import SpecError, UnsafeAccess
from probebook.agent.capture.redaction import Redactor

LIMITS = CaptureLimits()


def cap(value, limits: CaptureLimits = LIMITS, redactor: Redactor | None = None, name: str | None = None) -> dict:
    node = capture_value(value, limits, redactor or Redactor(), name=name)
    json.dumps(node, allow_nan=False)  # every capture is strict JSON
    return node


def values(node: dict) -> list:
    return [e.get("value") for e in node["elements"]]


# --- objects whose code must never run ------------------------------------------------------

CALLS: list = []


class Recorder:
    """Every hook a careless capture would call records itself, then misbehaves."""

    def __init__(self, **state):
        self.__dict__.update(state)

    def __repr__(self):
        CALLS.append("__repr__")
        raise RuntimeError("repr ran")

    def __str__(self):
        CALLS.append("__str__")
        raise RuntimeError("str ran")

    def __getattr__(self, name):
        CALLS.append(f"__getattr__({name})")
        raise RuntimeError("getattr ran")

    def __eq__(self, other):
        CALLS.append("__eq__")
        raise RuntimeError("eq ran")

    def __hash__(self):
        CALLS.append("__hash__")
        return 1

    def __iter__(self):
        CALLS.append("__iter__")
        raise RuntimeError("iter ran")

    def __len__(self):
        CALLS.append("__len__")
        raise RuntimeError("len ran")

    def __bool__(self):
        CALLS.append("__bool__")
        raise RuntimeError("bool ran")

    def __format__(self, spec):
        CALLS.append("__format__")
        raise RuntimeError("format ran")

    @property
    def computed(self):
        CALLS.append("property")
        raise RuntimeError("property ran")


class RecordingMeta(type):
    def __hash__(cls):
        CALLS.append("meta __hash__")
        return 1

    def __eq__(cls, other):
        CALLS.append("meta __eq__")
        return cls is other

    def __repr__(cls):
        CALLS.append("meta __repr__")
        return "?"


class Guarded(metaclass=RecordingMeta):
    def __init__(self):
        self.x = 1

    def __repr__(self):
        CALLS.append("__repr__")
        return "?"


class HostileDict(dict):
    def __iter__(self):
        CALLS.append("dict __iter__")
        return iter(())

    def items(self):
        CALLS.append("dict items")
        return []

    def keys(self):
        CALLS.append("dict keys")
        return []

    def __len__(self):
        CALLS.append("dict __len__")
        return 0

    def __getitem__(self, key):
        CALLS.append("dict __getitem__")
        raise KeyError(key)


class HostileList(list):
    def __iter__(self):
        CALLS.append("list __iter__")
        return iter(())

    def __len__(self):
        CALLS.append("list __len__")
        return 0

    def __getitem__(self, index):
        CALLS.append("list __getitem__")
        raise IndexError(index)


class HostileStr(str):
    def __str__(self):
        CALLS.append("str __str__")
        return "wrong"


class HostileInt(int):
    def __index__(self):
        CALLS.append("int __index__")
        return 0

    def __int__(self):
        CALLS.append("int __int__")
        return 0


@pytest.fixture(autouse=True)
def no_user_code_ran():
    CALLS.clear()
    yield
    assert CALLS == [], f"capture ran user code: {CALLS}"


def test_objects_are_read_through_dict_and_slots_without_calling_any_hook():
    node = cap(Recorder(total=3, owner="ada"))
    assert node["type"] == f"{__name__}.Recorder"
    assert node["fields"] == {"total": {"type": "int", "value": 3}, "owner": {"type": "str", "value": "ada"}}


def test_user_objects_as_dict_keys_set_members_and_list_items_are_never_hashed_or_compared():
    r = Recorder(n=1)
    d = {r: "v"}
    s = {r}
    CALLS.clear()  # building them hashed the key; capture must not do it again
    node = cap({"d": d, "s": s, "l": [r, r]}, CaptureLimits(max_depth=3))
    d_node, s_node, l_node = (v for _, v in node["entries"])
    assert d_node["entries"][0][0]["fields"] == {"n": {"type": "int", "value": 1}}
    assert s_node["elements"][0]["type"].endswith("Recorder")
    assert len(l_node["elements"]) == 2  # the same object twice is not a cycle


def test_a_metaclass_hash_eq_and_repr_never_run():
    node = cap({"instance": Guarded(), "class": Guarded})
    (_, inst), (_, cls) = node["entries"]
    assert inst["fields"] == {"x": {"type": "int", "value": 1}}
    assert cls == {"type": f"{__name__}.RecordingMeta", "summary": f"{__name__}.Guarded"}
    assert safe_repr([Guarded(), Guarded]).startswith(f"[<{__name__}.Guarded at 0x")


def test_getattribute_and_class_property_overrides_never_run():
    class Lazy:
        def __getattribute__(self, name):
            CALLS.append(f"__getattribute__({name})")
            return object.__getattribute__(self, name)

        @property
        def __class__(self):  # what Django's SimpleLazyObject does: it would evaluate the wrapped object
            CALLS.append("__class__")
            return dict

    try:
        cap(Lazy())
    finally:
        seen = list(CALLS)
        CALLS.clear()  # report the calls here rather than through the autouse check
    assert seen == []


def test_builtin_container_subclasses_are_read_through_the_base_type():
    d = HostileDict(a=1, b=2)
    lst = HostileList([1, 2, 3])
    node = cap({"d": d, "l": lst, "s": HostileStr("text"), "i": HostileInt(7)})
    (_, d_node), (_, l_node), (_, s_node), (_, i_node) = node["entries"]
    assert d_node["type"] == f"{__name__}.HostileDict" and d_node["size"] == 2
    assert [(k["value"], v["value"]) for k, v in d_node["entries"]] == [("a", 1), ("b", 2)]
    assert l_node["type"] == f"{__name__}.HostileList" and values(l_node) == [1, 2, 3]
    assert s_node == {"type": f"{__name__}.HostileStr", "value": "text"}
    assert i_node == {"type": f"{__name__}.HostileInt", "value": 7}
    assert safe_repr([d, lst]).startswith(f"[<{__name__}.HostileDict at 0x")


def test_a_dict_attribute_guarded_by_a_property_is_not_read():
    class Odd:
        @property
        def __dict__(self):
            CALLS.append("__dict__ property")
            return {"leak": 1}

    assert cap(Odd())["fields"] == {}


# --- scalars, text and bytes -----------------------------------------------------------------

@pytest.mark.parametrize(
    "value, expected",
    [
        (5, {"type": "int", "value": 5}),
        (True, {"type": "bool", "value": True}),
        (None, {"type": "NoneType", "value": None}),
        (2.5, {"type": "float", "value": 2.5}),
        (float("nan"), {"type": "float", "value": "nan"}),
        (float("-inf"), {"type": "float", "value": "-inf"}),
        (10**30, {"type": "int", "value": "1000000000000000000000000000000"}),
        (1 + 2j, {"type": "complex", "value": "(1+2j)"}),
        (decimal.Decimal("1.10"), {"type": "decimal.Decimal", "value": "1.10"}),
        (uuid.UUID(int=1), {"type": "uuid.UUID", "value": "00000000-0000-0000-0000-000000000001"}),
        (datetime.date(2024, 5, 1), {"type": "datetime.date", "value": "2024-05-01"}),
        (datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc),
         {"type": "datetime.datetime", "value": "2024-05-01T12:00:00+00:00"}),
        (datetime.timedelta(seconds=90), {"type": "datetime.timedelta", "value": "0:01:30"}),
    ],
)
def test_scalars(value, expected):
    assert cap(value) == expected


def test_a_user_tzinfo_is_not_asked_for_its_offset():
    class Zone(datetime.tzinfo):
        def utcoffset(self, dt):
            CALLS.append("utcoffset")
            return datetime.timedelta(0)

    node = cap(datetime.datetime(2024, 1, 2, 3, 4, tzinfo=Zone()))
    assert node["value"] == f"2024-01-02T03:04:00 [{__name__}.{Zone.__qualname__}]"


def test_an_int_too_big_for_decimal_text_is_captured_in_hex_and_cut():
    node = cap(1 << 50_000)
    assert node["value"].startswith("0x1000") and node["truncated"] and node["size"] > 12_000


def test_long_strings_are_cut_at_max_string_and_marked():
    node = cap("a" * 1000)
    assert node == {"type": "str", "value": "a" * 255, "truncated": True, "size": 1000}
    assert cap("short") == {"type": "str", "value": "short"}
    assert cap("abcdef", CaptureLimits(max_string=3))["value"] == "abc"


def test_bytes_are_shown_as_bounded_repr():
    node = cap(b"\x00GET" + b"x" * 1000)
    assert node["value"].startswith("b'\\x00GETxxx") and node["truncated"] and node["size"] == 1004
    assert cap(bytearray(b"ab")) == {"type": "bytearray", "value": "b'ab'"}


# --- containers and limits -------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, type_",
    [([1, 2, 3], "list"), ((1, 2, 3), "tuple"), ({1, 2, 3}, "set"), (frozenset({1, 2, 3}), "frozenset"),
     (collections.deque([1, 2, 3]), "collections.deque")],
)
def test_sequences_and_sets_capture_their_elements(value, type_):
    node = cap(value)
    assert node["type"] == type_ and node["size"] == 3 and "truncated" not in node
    assert sorted(values(node)) == [1, 2, 3]


def test_max_items_cuts_collections_and_keeps_their_size():
    node = cap(list(range(500)))
    assert node["size"] == 500 and node["truncated"] and values(node) == list(range(100))
    d = cap({i: i for i in range(10)}, CaptureLimits(max_items=3))
    assert d["size"] == 10 and d["truncated"] and len(d["entries"]) == 3
    s = cap(set(range(10)), CaptureLimits(max_items=4))
    assert s["size"] == 10 and s["truncated"] and len(s["elements"]) == 4


def test_dict_keys_of_any_builtin_type_are_captured():
    node = cap({1: "a", (2, 3): "b", None: "c"})
    keys = [k for k, _ in node["entries"]]
    assert keys[0] == {"type": "int", "value": 1}
    assert keys[1]["type"] == "tuple" and values(keys[1]) == [2, 3]
    assert keys[2] == {"type": "NoneType", "value": None}


def test_max_depth_marks_what_it_does_not_expand():
    deep = {"l1": {"l2": {"l3": 1}}, "n": 1}
    node = cap(deep)
    l1 = node["entries"][0][1]
    assert l1["entries"][0][1] == {"type": "dict", "not_captured": "depth", "size": 1}
    assert cap(deep, CaptureLimits(max_depth=1))["entries"][0][1] == {"type": "dict", "not_captured": "depth", "size": 1}
    assert cap(deep, CaptureLimits(max_depth=1))["entries"][1][1] == {"type": "int", "value": 1}  # leaves still shown
    nested_obj = Recorder(child=Recorder(grandchild=Recorder()))
    child = cap(nested_obj)["fields"]["child"]
    assert child["fields"]["grandchild"] == {"type": f"{__name__}.Recorder", "not_captured": "depth"}


def test_max_fields_cuts_objects():
    node = cap(Recorder(**{f"f{i}": i for i in range(30)}))
    assert len(node["fields"]) == 20 and node["truncated"]
    assert list(node["fields"])[:3] == ["f0", "f1", "f2"]


def test_cycles_are_marked_and_shared_references_are_not():
    lst: list = [1]
    lst.append(lst)
    node = cap(lst, CaptureLimits(max_depth=5))
    assert node["elements"][1] == {"type": "list", "not_captured": "cycle", "size": 2}
    a = Recorder(name="a")
    b = Recorder(name="b", peer=a)
    a.peer = b
    node = cap(a, CaptureLimits(max_depth=5))
    assert node["fields"]["peer"]["fields"]["peer"] == {"type": f"{__name__}.Recorder", "not_captured": "cycle"}
    shared = [1]
    node = cap([shared, shared])
    assert [e["elements"] for e in node["elements"]] == [[{"type": "int", "value": 1}]] * 2


def test_the_byte_budget_caps_a_whole_capture():
    row = {f"k{i}": "v" * 255 for i in range(100)}
    table = [row] * 100  # ~2.5 MB if captured fully
    node = cap(table, CaptureLimits(max_ms=100))  # 128 KiB by default; the time budget kept out of it
    size = len(json.dumps(node))
    assert 115_000 < size < 150_000
    assert node["truncated"] and len(node["elements"]) < 100
    small = cap(table, CaptureLimits(max_bytes=10_000))
    assert len(json.dumps(small)) < 12_000
    accented = capture_locals({f"v{i}": ["é" * 255] * 100 for i in range(100)}, LIMITS, Redactor())
    assert len(json.dumps(accented)) < 150_000  # escaped as \u00e9: counted six times


def test_locals_past_the_byte_budget_are_marked_limit_not_dropped():
    f_locals = {f"v{i}": "x" * 200 for i in range(50)}
    out = capture_locals(f_locals, CaptureLimits(max_bytes=2_000), Redactor())
    assert list(out) == list(f_locals)
    assert out["v0"]["value"] == "x" * 200
    assert out["v49"] == {"type": "str", "not_captured": "limit"}


def test_the_arguments_a_call_was_given_are_captured_before_its_own_object():
    """A method's `self` often holds far more than its budget (a cache's entries); the arguments come
    first, so a replay can rebuild what the call was given even when the object is cut."""
    big = type("Cache", (), {})()
    big.entries = {f"k{i}": "v" * 255 for i in range(100)}
    f_locals = {"self": big, "request": "sku=1&region=eu", "local": 1}
    args, rest = capture_locals_raw(f_locals, ("self", "request"), CaptureLimits(max_bytes=2_000, max_ms=100),
                                    Redactor())
    out = as_tree(args)
    assert list(out) == ["request", "self"]
    assert out["request"]["value"] == "sku=1&region=eu"
    assert out["self"]["fields"]["entries"].get("truncated")


# --- kinds that get a summary or special shape -----------------------------------------------

class Color(enum.Enum):
    RED = 1


Point = collections.namedtuple("Point", "x y")


class Slotted:
    __slots__ = ("a", "b", "unset")

    def __init__(self):
        self.a, self.b = 1, [2]


class SlottedChild(Slotted):
    __slots__ = ("c", "__dict__")

    def __init__(self):
        super().__init__()
        self.c = 3
        self.extra = 4


def test_slots_are_read_and_empty_slots_skipped():
    assert cap(Slotted())["fields"] == {"a": {"type": "int", "value": 1},
                                        "b": {"type": "list", "elements": [{"type": "int", "value": 2}], "size": 1}}
    assert list(cap(SlottedChild())["fields"]) == ["extra", "c", "a", "b"]


def test_enums_named_tuples_and_exceptions():
    assert cap(Color.RED) == {"type": f"{__name__}.Color", "enum": "RED", "value": 1}
    assert cap(Point(1, 2))["fields"] == {"x": {"type": "int", "value": 1}, "y": {"type": "int", "value": 2}}
    err = KeyError("missing", 3)
    err.order_id = 7
    node = cap(err)
    assert node["type"] == "KeyError"
    assert [e["value"] for e in node["args"]["elements"]] == ["missing", 3]
    assert node["fields"] == {"order_id": {"type": "int", "value": 7}}


def test_modules_functions_classes_and_code_get_one_line_summaries():
    node = cap([json, json.dumps, Recorder, Recorder.__init__, len, test_scalars.__code__, Redactor().configure])
    summaries = [(e["type"], e["summary"]) for e in node["elements"]]
    assert summaries[:3] == [("module", "json"), ("function", "json.dumps"), ("type", f"{__name__}.Recorder")]
    assert summaries[3] == ("function", f"{__name__}.Recorder.__init__")
    assert summaries[4] == ("builtin_function_or_method", "len")
    assert summaries[5][0] == "code" and summaries[5][1].startswith("test_scalars at ")
    assert summaries[6] == ("method", "probebook.agent.capture.redaction.Redactor.configure")
    assert all("fields" not in e for e in node["elements"])


# --- redaction in captures -------------------------------------------------------------------

def test_redacted_names_hide_values_in_dicts_fields_and_locals():
    r = Redactor()
    node = cap({"API_KEY": "k", "user": Recorder(password="p", name="ada")}, redactor=r)
    (k1, v1), (_, user) = node["entries"]
    assert k1 == {"type": "str", "value": "API_KEY"} and v1 == {"type": "str", "not_captured": "redacted"}
    assert user["fields"]["password"] == {"type": "str", "not_captured": "redacted"}
    assert user["fields"]["name"]["value"] == "ada"
    out = capture_locals({"sessionId": {"deep": "x"}, "n": 1}, LIMITS, r)
    assert out["sessionId"] == {"type": "dict", "not_captured": "redacted"}
    assert cap("value", name="x-api-key") == {"type": "str", "not_captured": "redacted"}


def test_secret_values_are_redacted_wherever_they_sit():
    node = cap({"note": ["ok", "paid with 4111 1111 1111 1111"]})
    assert node["entries"][0][1]["elements"] == [{"type": "str", "value": "ok"}, {"type": "str", "not_captured": "redacted"}]
    hidden_after_cut = "x" * 250 + "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc"
    assert cap(hidden_after_cut)["not_captured"] == "redacted"  # straddles the 255-char cut


def test_secrets_in_raw_bytes_and_under_str_enum_keys_are_redacted():
    class Header(str, enum.Enum):
        AUTHORIZATION = "Authorization"

    raw = b"GET / HTTP/1.1\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwx\r\n"
    node = cap({Header.AUTHORIZATION: "opaque", "raw": raw})
    (key, value), (_, raw_node) = node["entries"]
    assert key["enum"] == "AUTHORIZATION" and value == {"type": "str", "not_captured": "redacted"}
    assert raw_node == {"type": "bytes", "not_captured": "redacted"}
    assert safe_repr([raw, b"ok"], redactor=Redactor()) == "[[REDACTED], b'ok']"


def test_redacted_types_are_not_read():
    class SecretStr:
        def __init__(self, v):
            self.v = v

    r = Redactor()
    assert cap(SecretStr("pw"), redactor=r) == {"type": f"{__name__}.{SecretStr.__qualname__}", "not_captured": "redacted"}
    r.configure(types=[f"{__name__}.Hostile*"])
    assert cap(HostileDict(a=1), redactor=r)["not_captured"] == "redacted"


def test_reconfiguring_changes_the_next_capture():
    r = Redactor()
    assert cap({"tenant": "acme"}, redactor=r)["entries"][0][1]["value"] == "acme"
    r.configure(add_identifiers=["tenant"])
    assert cap({"tenant": "acme"}, redactor=r)["entries"][0][1]["not_captured"] == "redacted"
    r.configure(enabled=False)
    assert cap({"password": "pw"}, redactor=r)["entries"][0][1]["value"] == "pw"


# --- stack, limits spec, safe_repr ------------------------------------------------------------

def _recurse(n: int, limits: CaptureLimits, with_locals: bool = False):
    if n:
        return _recurse(n - 1, limits, with_locals)
    token, amount = "t0ken", 12  # noqa: F841 - captured below
    return capture_stack(sys._getframe(), limits, Redactor(), with_locals_for_top=with_locals)


def test_capture_stack_lists_frames_innermost_first_and_counts_the_rest():
    frames = _recurse(30, CaptureLimits(max_frames=5))
    assert len(frames) == 5
    assert {f["function"].rsplit(".", 1)[-1] for f in frames} == {"_recurse"}
    assert frames[0]["module"] == __name__ and frames[0]["file"] == __file__ and isinstance(frames[0]["line"], int)
    assert frames[-1]["frames_omitted"] >= 26
    assert all("locals" not in f for f in frames)


def test_capture_stack_can_add_the_top_frames_locals():
    frames = _recurse(0, CaptureLimits(), with_locals=True)
    top = frames[0]["locals"]
    assert top["amount"] == {"type": "int", "value": 12}
    assert top["token"] == {"type": "str", "not_captured": "redacted"}
    assert "frames_omitted" not in frames[-1] or len(frames) == 20


@pytest.mark.parametrize(
    "mapping, field",
    [({"max_depth": 0}, "limits.max_depth"), ({"max_items": -1}, "limits.max_items"),
     ({"max_string": "10"}, "limits.max_string"), ({"max_bytes": True}, "limits.max_bytes"),
     ({"max_depth": 33}, "limits.max_depth"), ({"max_frame": 3}, "limits.max_frame")],
)
def test_limits_from_mapping_refuse_bad_input_in_one_line_naming_the_field(mapping, field):
    with pytest.raises(SpecError) as info:
        CaptureLimits.from_mapping(mapping)
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(field + ":") and "\n" not in message
    assert "allowed" in message or "must be" in message


def test_limits_from_mapping_keeps_defaults_for_missing_keys():
    limits = CaptureLimits.from_mapping({"max_items": 5, "max_frames": 3})
    assert (limits.max_items, limits.max_frames, limits.max_depth, limits.max_bytes) == (5, 3, 2, 1 << 17)


def test_safe_repr_renders_builtins_like_repr():
    value = {"a": [1, 2.5, None, True], "b": ("x",), "c": {3}, "d": frozenset(), "e": b"\x00"}
    assert safe_repr(value) == repr(value)


def test_safe_repr_names_user_objects_without_running_them_and_redacts():
    r = Redactor()
    text = safe_repr({"obj": Recorder(a=1), "password": "pw", "note": "Bearer abcdefghijklmnopqrstu", "c": Color.RED},
                     redactor=r)
    assert text.startswith(f"{{'obj': <{__name__}.Recorder at 0x")
    assert text.endswith("'password': [REDACTED], 'note': [REDACTED], 'c': Color.RED}")
    assert safe_repr(json.dumps) == "<function json.dumps>"


def test_safe_repr_is_bounded():
    assert safe_repr("y" * 10_000, max_len=20) == "'" + "y" * 16 + "..."
    big = list(range(1_000_000))
    text = safe_repr(big, max_len=50)
    assert len(text) == 50 and text.startswith("[0, 1, 2") and text.endswith("...")
    deep: list = []
    for _ in range(100):
        deep = [deep]
    assert safe_repr(deep) == "[[[[...]]]]"


class PropertyMeta(type):
    """A metaclass whose properties shadow what a type's fields are read by."""

    @property
    def __mro__(cls):
        CALLS.append("meta __mro__")
        return (object,)


class ByMeta(metaclass=PropertyMeta):
    def __init__(self):
        self.x = 1


def test_properties_on_a_metaclass_never_run():
    """Reading a type's MRO with type.__getattribute__ would call the metaclass's property."""
    CALLS.clear()
    node = cap({"instance": ByMeta(), "class": ByMeta})
    (_, inst), _ = node["entries"]
    assert inst["fields"] == {"x": {"type": "int", "value": 1}} and inst["type"].endswith("ByMeta")
    assert "ByMeta" in safe_repr(ByMeta())
    assert CALLS == []


def test_a_cached_property_is_read_once_the_code_has_computed_it():
    """werkzeug's `cached_property` is a data descriptor: before, `req.args` was refused even after
    Werkzeug had cached it in the instance `__dict__`. Now the cached value is read, and before it
    exists the message says exactly why."""
    from probebook.agent.capture.safe_access import safe_getattr
    from probebook.errors import UnsafeAccess

    class cached_property(property):  # what werkzeug.utils.cached_property does (werkzeug is not needed here)
        def __init__(self, fget):
            super().__init__(fget)
            self.__name__ = fget.__name__

        def __set__(self, obj, value):
            obj.__dict__[self.__name__] = value

        def __get__(self, obj, owner=None):
            if obj is None:
                return self
            if self.__name__ not in obj.__dict__:
                obj.__dict__[self.__name__] = self.fget(obj)
            return obj.__dict__[self.__name__]

    calls = []

    class Req:
        @cached_property
        def args(self):
            calls.append(1)
            return {"page": "2"}

    req = Req()
    with pytest.raises(UnsafeAccess, match="cached property not computed yet"):
        safe_getattr(req, "args")
    assert req.args == {"page": "2"} and calls == [1]
    assert safe_getattr(req, "args") == {"page": "2"} and calls == [1]  # read from __dict__, nothing ran


def test_a_proxy_attribute_says_it_comes_from_user_code_not_that_it_is_missing():
    """Flask's `request` is a werkzeug LocalProxy: `{request.method}` used to say the proxy "has no
    attribute 'method'", which is false."""
    import contextvars

    from probebook.agent.capture.safe_access import safe_getattr
    from probebook.errors import UnsafeAccess

    class LocalProxy:  # the shape of werkzeug.local.LocalProxy: every attribute through __getattr__
        def __init__(self, var):
            object.__setattr__(self, "_var", var)

        def __getattr__(self, name):
            return getattr(self._var.get(), name)

    class Request:
        method = "GET"

    var = contextvars.ContextVar("request")
    var.set(Request())
    with pytest.raises(UnsafeAccess, match="would come from its __getattr__") as err:
        safe_getattr(LocalProxy(var), "method")
    assert "has no attribute" not in str(err.value) and "local or an argument" in str(err.value)


class EvilKey(str):
    """A str subclass whose __eq__ records that it ran; its hash is that of `collides_with`, so a lookup of
    that name in a dict holding it compares with it."""

    def __new__(cls, text, collides_with):
        key = str.__new__(cls, text)
        key.target = collides_with
        return key

    def __eq__(self, other):
        CALLS.append("EvilKey __eq__")
        return False

    def __hash__(self):
        return str.__hash__(self.target)


def test_a_str_subclass_key_in_an_instance_dict_or_a_module_never_has_its_eq_run():
    import types

    from probebook.agent.capture.safe_access import safe_getattr
    from probebook.agent.expr.expressions import compile_expression
    from probebook.errors import EvaluationError, UnsafeAccess

    obj = Recorder(total=3)
    object.__getattribute__(obj, "__dict__")[EvilKey("other", "total")] = 4
    mod = types.ModuleType("hostile_ns")
    mod.__dict__[EvilKey("flag", "flag2")] = 1
    mod.flag2 = 2
    odd_globals = {EvilKey("x", "total"): 3, "total": 2}
    CALLS.clear()
    with pytest.raises(UnsafeAccess, match="not a plain str"):
        safe_getattr(obj, "total")
    with pytest.raises(UnsafeAccess, match="not a plain str"):
        safe_getattr(mod, "flag2")
    with pytest.raises(EvaluationError, match="not a plain str"):
        compile_expression("total > 1").evaluate({}, odd_globals)
    with pytest.raises(EvaluationError):
        compile_expression("obj.total").evaluate({"obj": obj}, {})
    cap(obj)  # a capture lists the plain keys and never looks a name up


def test_a_capture_stops_reading_at_its_deadline_and_marks_the_rest():
    """`max_ms` bounds the CPU time one hit's captures spend on the host's thread: with every other limit at
    its ceiling, a frame of large locals is cut at the deadline (the rest marked "time"), not read whole."""
    import time

    big = {f"k{i}": [f"{i}-{j}-" * 40 for j in range(200)] for i in range(400)}
    frame = {f"local{i}": big for i in range(20)}
    ceilings = CaptureLimits(max_depth=32, max_items=10_000, max_string=65_536, max_fields=1_000,
                             max_bytes=8 << 20, max_frames=200, max_ms=5)
    redactor = Redactor()
    t0 = time.thread_time()
    raw = capture_locals_raw(frame, (), ceilings, redactor)[1]  # what runs on the host's thread
    took = time.thread_time() - t0
    out = as_tree(raw)  # made into trees later, by the event ring's reader
    cut = [name for name, node in out.items() if node.get("not_captured") == "time"]
    assert cut and cut[-1] == "local19", out.keys()  # once past it, every local after is cut
    assert within_budget(took, 0.02), took  # 5 ms and up to 64 nodes; at max_ms=100 it is still cut
    # a shared deadline already past: nothing is read
    past = capture_value(big, ceilings, Redactor(), deadline=time.thread_time_ns() - 1)
    assert past == {"type": "dict", "not_captured": "time"}
    with pytest.raises(SpecError, match=r"limits.max_ms: must be an integer from 1 to 100"):
        CaptureLimits(max_ms=101)


@pytest.mark.timing
def test_another_thread_holding_the_gil_does_not_cut_a_capture():
    """The deadline counts the capture's own CPU time: in a CPU-bound service (when it is investigated) the
    capture waits for the GIL between its steps, and that wait is the other thread's, not the capture's."""
    import sys
    import threading
    import time

    frame = {f"local{i}": {f"k{j}": [j] * 5 for j in range(20)} for i in range(12)}
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            sum(range(2000))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.002)  # the GIL changes hands often, as between busy request threads
    spinner = threading.Thread(target=spin)
    spinner.start()
    shared = []
    try:
        limits, redactor = CaptureLimits(max_depth=3, max_ms=10), Redactor()
        for _ in range(10):  # until the other thread did run during a capture (the scheduler decides when)
            t0, c0 = time.perf_counter(), time.thread_time()
            out = capture_locals(frame, limits, redactor)
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
            assert cpu < 0.01, cpu  # the capture itself fits its budget...
            assert not [n for n, node in out.items() if node.get("not_captured")], (wall, cpu)  # ...nothing is cut
            shared.append(wall - cpu)
            if wall - cpu > 0.001:
                break
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(interval)
    assert max(shared) > 0.001, shared  # (in one of them at least, the other thread held the GIL for 1 ms)


def test_types_made_at_run_time_do_not_grow_the_handler_table_forever():
    from probebook.agent.capture import writers

    bound = writers._BUILTIN_COUNT + writers._LEARNED_MAX
    builtin = list(writers.HANDLERS)[: writers._BUILTIN_COUNT]
    classes = [type(f"Made{i}", (), {}) for i in range(bound - len(writers.HANDLERS) + 10)]
    peak = 0
    for i, cls in enumerate(classes):  # each instance's type is learned; the table is cut back once full
        obj = cls()
        obj.n = i
        assert cap(obj)["fields"] == {"n": {"type": "int", "value": i}} and cap(obj)["type"].endswith(f"Made{i}")
        peak = max(peak, len(writers.HANDLERS))
    assert peak == bound + 1
    assert list(writers.HANDLERS)[: writers._BUILTIN_COUNT] == builtin  # the builtins stay
    assert id(classes[-1]) in writers.HANDLERS and id(classes[0]) not in writers.HANDLERS


def test_an_instance_attribute_is_read_on_the_fast_path_once_its_type_is_known(monkeypatch):
    """Every attribute a probe reads comes through `safe_getattr`: after the first read of a type, an
    instance attribute is answered from its dict without the slow path (the hit's cost), and the answer
    stays right when the class later grows an attribute of the same name."""
    from probebook.agent.capture import safe_access

    class Order:
        kind = "class-level"

        def __init__(self, total):
            self.total = total

    slow_reads = []
    real_slow = safe_access._safe_getattr_slow
    monkeypatch.setattr(safe_access, "_safe_getattr_slow",
                        lambda obj, name: slow_reads.append(name) or real_slow(obj, name))
    first, second = Order(3), Order(4)
    assert safe_access.safe_getattr(first, "total") == 3
    assert slow_reads == ["total"]  # the type's first read learns it
    assert [safe_access.safe_getattr(o, "total") for o in (first, second, second)] == [3, 4, 4]
    assert slow_reads == ["total"]  # instance attributes: straight from the dict
    assert safe_access.safe_getattr(second, "kind") == "class-level"  # a class attribute: the full rules
    assert slow_reads == ["total", "kind"]
    with pytest.raises(UnsafeAccess, match="Order object has no attribute 'missing'"):
        safe_access.safe_getattr(first, "missing")
    second.__dict__[5] = "a key that is not a str"  # the dict is no longer plain: the full rules refuse it
    with pytest.raises(UnsafeAccess, match="has a key that is not a plain str"):
        safe_access.safe_getattr(second, "total")
    assert slow_reads[-1] == "total" and safe_access.safe_getattr(first, "total") == 3
    cache = safe_access._PLAIN[id(Order)]
    assert cache[0] is Order and cache[1] is not None and cache[2]["total"] is safe_access.MISSING
