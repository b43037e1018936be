"""The expression language's answers, one table: for ~6,000 expressions over a fixed frame, what each one
evaluates to (or the exact one-line error), and how many units of the hit's work budget it spent.

The table (`cost_table.json`, beside this file) is the language's behaviour written down: a guard that
stops refusing, a refusal whose message changes, an operation charged more or less than before, all show
as a changed row, named, in the failure. The work units are the promise behind the host-stall ceiling
(docs/expressions.md#work-budget, bench/hostile_stall.py): a change to what an operation charges must be
deliberate. Rows are made from every allowed builtin, method and operator applied to values of every kind
the frame holds (ints small and huge, text short, long and secret-shaped, bytes, containers small and over
the free size, Decimal, subclasses of builtins, an Enum, plain objects), so none was picked by hand for an
answer. Where the answer legitimately depends on the Python version (a builtin's own error text, 3.9's
slower substring search) the row names the versions it holds on.

A change meant to alter the table: `PROBEBOOK_UPDATE_TABLE=1 pytest tests/unit/agent/expr/test_cost_table.py`
rewrites it for this Python, the base version (3.11) first, then each other version (which stores only where
it answers differently from the base); the diff is reviewed like code.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import os
import re
import sys
import zoneinfo
from typing import Any, Dict, List, Tuple

from support import check_table

from probebook.agent.capture.redaction import Redactor
from probebook.agent.expr import value_checks
from probebook.agent.expr.expressions import compile_expression
from probebook.agent.capture.safe_repr import safe_repr
from probebook.agent.expr.template import compile_template
from probebook.agent.expr.work import METER, WORK_BUDGET, arm, left
from probebook.errors import EvaluationError, ExpressionError

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cost_table.json")


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


class Count(int):
    """An int subclass that keeps int's behaviour."""


TRIPPED: List[str] = []  # the user code below that ran (it must not)


class Rounds(int):
    """An int subclass whose __round__ is Python code: must never run."""

    def __round__(self, ndigits=None):
        TRIPPED.append("Rounds.__round__")
        return 0


class Name(str):
    """A str subclass that keeps str's behaviour."""


class Loud(str):
    """A str subclass whose __eq__/__hash__ are Python code: must never run."""

    def __eq__(self, other):
        TRIPPED.append("Loud.__eq__")
        return False

    __hash__ = str.__hash__


class Zone(datetime.tzinfo):
    """A time zone in Python: comparing or subtracting its datetimes would run `utcoffset`."""

    def utcoffset(self, dt):
        TRIPPED.append("Zone.utcoffset")
        return datetime.timedelta(0)


def _overriding(dunder: str) -> type:
    """An int subclass whose `dunder` alone is Python code (a tripwire): an operation needing it must refuse."""
    def method(self, *args):
        TRIPPED.append(f"{dunder}")
        return 0
    return type(f"Int{dunder.strip('_').title()}", (int,), {dunder: method})


OVERRIDES = ("__int__", "__index__", "__trunc__", "__float__", "__abs__", "__round__", "__add__", "__radd__",
             "__lt__", "__gt__", "__eq__", "__hash__", "__neg__", "__lshift__", "__pow__", "__rpow__")


class Plain:
    def __init__(self):
        self.id = 42
        self.name = "widget"


class Truthy:
    """Its truth is Python code (__bool__ or __len__): must never run."""

    def __bool__(self):
        TRIPPED.append("Truthy.__bool__")
        return True


class Sized:
    def __len__(self):
        TRIPPED.append("Sized.__len__")
        return 1


class Checking(type):
    """A metaclass whose isinstance check is Python code: must never run."""

    def __instancecheck__(cls, obj):
        TRIPPED.append("Checking.__instancecheck__")
        return True

    def __subclasscheck__(cls, sub):
        TRIPPED.append("Checking.__subclasscheck__")
        return True


class Checked(metaclass=Checking):
    pass


class SubList(list):
    """A list subclass that keeps list's behaviour."""


class Getter:
    """Its indexing is Python code: must never run."""

    def __getitem__(self, key):
        TRIPPED.append("Getter.__getitem__")
        return 0


def frame() -> Dict[str, Any]:
    """The locals every row is evaluated in: one value of each kind."""
    return {
        "i": 7, "n": -3, "z": 0, "big": 10 ** 40, "huge": 7 ** 9000, "f": 2.5, "inf": float("inf"), "c": 1 + 2j,
        "yes": True, "none": None,
        "s": "hello world", "e": "", "long": "ab" * 5000, "u": "h\u00e9llo", "digits": "12345",
        "dsn": "postgres://admin:s3cretpass@db.internal:5432/orders", "by": b"bytes here", "ba": bytearray(b"xyz"),
        "l": [3, 1, 2], "ll": list(range(5000)), "nested": [[1, 2], [3, [4, 5]]], "t": (1, 2, 3),
        "d": {"a": 1, "b": 2}, "bigd": {f"k{i}": i for i in range(200)}, "od": collections.OrderedDict(x=1),
        "dd": collections.defaultdict(int, {"q": 1}), "st": {1, 2, 3}, "bigst": set(range(300)),
        "fs": frozenset({4, 5}), "strs": ["word" * 50] * 400, "r": range(10),
        "creds": {"user": "alice", "password": "hunter2"},
        "dec": decimal.Decimal("1.5"), "hugedec": decimal.Decimal("1e30000"),
        "cnt": Count(5), "rounds": Rounds(5), "nm": Name("bob"), "loud": Loud("x"), "color": Color.GREEN,
        "obj": Plain(), "mixed": [1, "a", None],
        # containers of the special values, and sizes at the free limits (value_checks.FREE_ITEMS = 64)
        "objs": [Plain(), Plain()], "louds": [Loud("a"), Loud("b")], "enums": [Color.RED, Color.GREEN],
        "subs": [Count(2), Count(1)], "decs": [decimal.Decimal("2.5"), decimal.Decimal("0.5")],
        "rset": {Rounds(1), Rounds(2)}, "s64": set(range(64)), "l65": list(range(65)),
        "collide": [k * (2 ** 61 - 1) for k in range(1, 70)], "collide65": [k * (2 ** 61 - 1) for k in range(1, 66)],
        "pairs": [("user", "ann"), ("password", "hunter2")], "tok": "Bearer abcdefghijklmnopqrstuvwxyz0123456789",
        "when": datetime.datetime(2024, 5, 1, 12, tzinfo=zoneinfo.ZoneInfo("UTC")),
        "naive": datetime.datetime(2024, 5, 1, 12), "utc": datetime.datetime(2024, 5, 1, 13, tzinfo=datetime.timezone.utc),
        "whenpy": datetime.datetime(2024, 5, 1, 12, tzinfo=Zone()), "hour": datetime.time(12, tzinfo=Zone()),
        "classes": (int,) * 70, "maxint": 2 ** 33219,
        "texts3": ["a", b"b", bytearray(b"c")] * 25,
        "loudd": {Loud(f"k{i}"): i for i in range(70)},
        "objd": {i: Loud("v") for i in range(70)}, "objkeys": {Plain(): i for i in range(70)},
        **{f"o{d.strip('_')}": _overriding(d)(3) for d in OVERRIDES},
        # Decimals whose reading is charged (3,001 digits; an integer part of 5,001 digits), ints at the
        # 1,024 bits past which meeting a Decimal is charged, an int subclass of 25,266 bits
        "longdec": decimal.Decimal("1." + "3" * 3000), "e5000": decimal.Decimal("1e5000"), "b1024": 2 ** 1023,
        "b1025": 2 ** 1024, "hugecnt": Count(7 ** 9000),
        "truthy": Truthy(), "sized": Sized(), "checked": Checked, "sublist": SubList([1, 2, 3]),
        "getter": Getter(),
    }


GLOBALS = {"LIMIT": 10, "MODE": "fast", "GL": [5, 6], "SEP": " "}  # the probed module's globals


OPERANDS = ["i", "n", "z", "big", "huge", "f", "inf", "c", "yes", "none", "s", "e", "long", "u", "digits", "dsn",
            "by", "ba", "l", "ll", "nested", "t", "d", "bigd", "od", "dd", "st", "bigst", "fs", "strs", "r", "dec",
            "hugedec", "cnt", "rounds", "nm", "loud", "color", "obj", "mixed", "creds", "objs", "louds", "enums",
            "subs", "decs", "rset", "s64", "l65", "collide", "collide65", "pairs", "tok", "LIMIT", "GL"]
PAIR_OPERANDS = ["i", "z", "big", "huge", "f", "c", "none", "s", "long", "dsn", "by", "l", "ll", "t", "d", "st",
                 "bigst", "dec", "cnt", "rounds", "nm", "loud", "color", "obj"]
BUILTINS_1 = ["len", "bool", "abs", "round", "int", "float", "str", "sorted", "sum", "any", "all", "list", "tuple",
              "set", "frozenset", "min", "max", "type"]
BINOPS = ["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^"]
CMPOPS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"]
TEXT_METHODS = [("startswith", "('he')"), ("endswith", "('ld')"), ("lower", "()"), ("upper", "()"),
                ("strip", "()"), ("split", "()"), ("split", "(' ')"), ("rsplit", "(',', 1)"), ("count", "('l')"),
                ("find", "('o')"), ("rfind", "('o')"), ("isdigit", "()"), ("isalpha", "()"), ("partition", "(' ')"),
                ("splitlines", "()"), ("join", "(['a', 'b'])"), ("join", "(l)"), ("casefold", "()"),
                ("title", "()"), ("hex", "()"), ("split", "(':')"), ("count", "(s)")]


def rows() -> List[str]:
    """Every expression of the table, in a fixed order."""
    out: List[str] = []
    out += [f"{fn}({x})" for fn in BUILTINS_1 for x in OPERANDS]
    out += [f"{fn}()" for fn in ("list", "tuple", "set", "frozenset", "len", "min")]
    out += [f"round({x}, {k})" for x in ("i", "big", "huge", "f", "dec", "cnt", "rounds")
            for k in ("2", "-5", "-4000", "4000", "4001", "-4001", "'a'", "none")]
    out += [f"int({x}, {b})" for x in ("digits", "s", "long", "i", "by") for b in ("2", "10", "16", "'a'", "0")]
    out += [f"int({x})" for x in ("'9' * 5000", "'9' * 5001", "dec", "hugedec", "f", "inf")]
    out += [f"isinstance({x}, {cls})" for x in ("i", "s", "color", "obj", "cnt", "none")
            for cls in ("int", "str", "(int, str)", "dict", "3", "type", "(int, 3)", "bool", "range")]
    out += [f"{fn}({a}, {b})" for fn in ("min", "max") for a, b in (("i", "n"), ("s", "e"), ("i", "s"), ("l", "t"),
                                                                     ("dec", "f"), ("loud", "nm"), ("obj", "i"))]
    out += [f"{fn}({x}, default=0)" for fn in ("min", "max") for x in ("l", "e", "st", "strs")]
    out += [f"sum({x}, {start})" for x in ("l", "ll", "t", "mixed") for start in ("0", "1.5", "'a'", "l")]
    out += [f"sorted({x}, reverse={rv})" for x in ("l", "ll", "strs", "s") for rv in ("True", "0", "'x'")]
    out += [f"{x}.{m}{args}" for x in ("s", "e", "long", "u", "dsn", "by", "ba", "nm", "loud", "i", "l")
            for m, args in TEXT_METHODS]
    out += [f"{x}.{m}({a})" for x in ("d", "bigd", "od", "dd", "creds", "l") for m, a in
            (("keys", ""), ("values", ""), ("items", ""), ("get", "'a'"), ("get", "'zz', 0"), ("get", "l"),
             ("get", "'password'"), ("get", "s"))]
    out += [f"{x}.{m}({a})" for x in ("l", "t", "ll", "strs", "mixed") for m, a in
            (("count", "1"), ("index", "1"), ("count", "s"), ("index", "'a'"))]
    out += [f"{x}.{m}({a})" for x in ("st", "fs", "bigst") for m, a in
            (("issubset", "l"), ("issuperset", "t"), ("isdisjoint", "ll"), ("issubset", "strs"), ("isdisjoint", "d"))]
    out += [f"{x}.{m}({a})" for x in ("st", "s64", "rset") for m, a in
            (("issubset", "collide"), ("issuperset", "collide65"), ("isdisjoint", "l65"), ("issubset", "louds"),
             ("isdisjoint", "objs"), ("issubset", "rset"))]
    out += [f"{fn}({x})" for fn in ("set", "frozenset", "len", "sorted", "min", "max", "sum", "any", "list")
            for x in ("[loud, loud]", "{i: obj}", "[obj]", "(cnt, color)", "[rounds]", "[dec, i]", "[[l]]")]
    out += [f"{fn}({a}, {b})" for fn in ("min", "max") for a, b in (("obj", "obj"), ("color", "cnt"), ("rounds", "i"),
                                                                     ("dec", "decs"), ("louds", "l"), ("e", "s"))]
    out += [f"{fn}({x}, default={dflt})" for fn in ("min", "max") for x in ("objs", "louds", "enums", "[]")
            for dflt in ("obj", "none")]
    out += [f"{x} {op} {y}" for op in ("|", "&", "-", "^", "==", "<=", "in") for x, y in
            (("st", "rset"), ("s64", "collide"), ("set(collide)", "st"), ("d", "{loud: 1}"), ("fs", "s64"))]
    out += [f"{a} if {c} else {b}" for c in ("LIMIT", "GL", "MODE == 'slow'", "i > LIMIT") for a, b in
            (("MODE", "LIMIT"), ("GL[0]", "GL[-1]"))]
    out += ["LIMIT + i", "GL + l", "MODE.upper()", "s.split(SEP)", "GL[i - 6]", "len(GL) and MODE", "LIMIT or i",
            "not GL", "-LIMIT", "d.get(MODE, LIMIT)", "isinstance(GL, list)", "sorted(GL + l)", "max(GL, default=LIMIT)",
            "i ** 0", "z ** z", "big ** 0", "i ** -1", "2 ** 33219", "2 ** 33220", "1 << 33219", "1 << 33220",
            "z << 99999", "huge // big", "big // huge", "d['k' * 70]", "d[long]", "d[s * 10]", "bigd[s]",
            "isinstance(i, (int,) * 70)", "isinstance(i, (color,))", "isinstance(i, type(color))", "pairs[1][1]",
            "pairs[1]", "pairs[0][1]", "pairs[1][:]", "tok[7:]", "tok.split()", "tok == s", "tok in strs",
            "'abc' in tok", "s in tok", "isinstance(i, classes)"]
    out += [f"{fn}({x})" for fn in ("int", "float", "abs", "round", "sum", "str", "len", "min", "sorted", "set", "-")
            for x in [f"o{d.strip('_')}" for d in OVERRIDES] + [f"[o{d.strip('_')}]" for d in OVERRIDES]]
    out += [f"{a} {op} {b}" for op in ("+", "<", "==", "<<", "**", "*") for a, b in
            [(f"o{d.strip('_')}", "i") for d in OVERRIDES] + [("i", f"o{d.strip('_')}") for d in OVERRIDES]]
    out += [f"{x} {op} {k}" for x in ("huge", "big", "maxint", "i") for op in ("**", "<<", "*") for k in ("0", "1", "2")]
    out += [f"round({x}, 0)" for x in ("huge", "maxint", "i")]
    out += [f"d['k' * {n}]" for n in (56, 57, 58, 59, 60)] + [f"d[s * {n}]" for n in (5, 6)]
    out += ["lambda: " + "x" * (n - 8) for n in (58, 59, 60, 61, 62)]
    out += ["st.issubset(texts3)", "set(texts3)", "texts3 == l", "loudd['k1']", "loudd.get('x')", "'x' in loudd",
            "objd.get(1)", "objd[1]", "1 in objd", "objkeys.get(1)", "len(objkeys)", "st.isdisjoint(objkeys)"]
    out += [f"{a} {op} {b}" for op in ("<", "==", "-") for a in ("when", "naive", "utc", "whenpy", "hour")
            for b in ("when", "naive", "utc", "whenpy", "hour")]
    out += [f"{fn}({x})" for fn in ("str", "len", "sorted", "min") for x in ("when", "whenpy", "[when, utc]", "hour")]
    out += ["when.year", "whenpy.tzinfo", "sorted([when, whenpy])", "when in [utc]", "{when: 1}", "T:{when} {naive}"]
    # refusals: where they point, and a long expression's text cut to 60 characters
    out += ["(i +\n obj.__class__)", "(i +\n\n i) and l.__len__", "obj.__class__ if " + "i and " * 20 + "i else 0",
            "i and " * 9 + "obj.__dict__", "i and " * 10 + "obj.__dict__", "i and " * 11 + "obj.__dict__",
            "[v for v in l] and " + "x" * 60, "(lambda: 0)\n", "i if\n (z := 1) else 0"]
    out += ["i.bit_length()", "big.bit_length()", "f.is_integer()", "cnt.bit_length()", "color.bit_length()",
            "s.nosuchmethod()", "obj.name.upper()"]
    out += [f"{a} {op} {b}" for op in BINOPS for a in PAIR_OPERANDS for b in ("i", "z", "s", "l", "huge", "dec")]
    out += [f"{a} {op} {b}" for op in CMPOPS for a in PAIR_OPERANDS for b in ("i", "s", "l", "d", "st", "huge")]
    out += [f"{op}{x}" for op in ("-", "+", "~", "not ") for x in PAIR_OPERANDS]
    out += [f"{x}[{k}]" for x in ("s", "long", "dsn", "by", "l", "ll", "t", "d", "bigd", "r", "nested", "creds", "st",
                                   "obj", "cnt", "strs")
            for k in ("0", "-1", "99999", "'a'", "1:3", "::-1", "10:4000:3", "i", "s", "'password'", "none:none")]
    out += [f"obj.{a}" for a in ("id", "name", "missing", "__dict__", "_private")]
    out += [f"{x}.{a}" for x in ("s", "i", "l", "color", "dec") for a in ("real", "name", "value", "upper")]
    out += [f"{a} {op} {b}" for op in ("and", "or") for a in ("i", "z", "s", "e", "l", "none", "obj")
            for b in ("s", "z")]
    out += [f"{a} if {c} else {b}" for c in ("i", "z", "l", "e", "obj") for a, b in (("s", "i"),)]
    out += [f"[{x}, {x}]" for x in ("i", "s", "l")] + [f"({x}, 1)" for x in ("i", "long")]
    out += [f"{{{x}: 1}}" for x in ("i", "s", "l", "loud", "obj")] + [f"{{{x}, 1}}" for x in ("i", "s", "l", "loud")]
    out += ["1 < i < 10", "i < s < l", "s * 200000", "l * 200000", "long * 100", "'x' * i", "i * 'x'",
            "big ** big", "2 ** 40000", "huge * huge", "huge // 7", "huge % 10", "10 ** 5000", "-huge",
            "str(huge)", "str(10 ** 3000)", "s[::2]", "long[::-1]", "ll[::-1][0]", "d['zz']", "l[10]", "1 / z",
            "dsn == 'x'", "dsn[10:]", "dsn in strs", "'admin' in dsn", "dsn.split(':')", "dsn.startswith('post')",
            "creds", "str(creds)", "creds['user']", "len(creds)", "'password' in creds", "list(creds.items())",
            "creds == d", "password", "__import__", "open('x')", "getattr(obj, 'id')", "obj.__class__", "x := 1",
            "lambda: 1", "[v for v in l]", "f'{s}'", "*l", "l @ l", "yield 1", "", "   ", "a" * 1001, "i +",
            "i = 1", "import os", "del i", "(" * 200 + "i" + ")" * 200, "len(l, l)", "sorted(l, key=len)",
            "min(l, key=len)", "max(*l)", "len(**d)", "int(s, base=2)", "round()", "nosuchname", "l.append(1)",
            "type(obj)", "type(i) == int", "isinstance(i, bool)", "None", "...", "b'x' + by", "1j * c", "True + yes"]
    out += [f"T:{x}={{{x}}}" for x in OPERANDS] + [f"T:{{{a}}} and {{{b}}}" for a, b in zip(OPERANDS, OPERANDS[1:])]
    out += ["T:plain text", "T:{{literal}} {i}", "T:{", "T:}", "T:{}", "T:{ }", "T:{i!r}", "T:{i:>5}", "T:{i}}",
            "T:{{{i}}}", "T:{nosuch} {i}", "T:{password}", "T:{creds['user']}", "T:{obj.name} {obj.missing}",
            "T:{LIMIT} {MODE}", "T:{1/z} after", "T:" + "{i}" * 33, "T:" + "{i}" * 32, "T:" + "x" * 4001,
            "T:{s.upper()} {len(l)}", "T:{dsn}", "T:{tok}", "T:{pairs}", "T:{huge ** dec}", "T:{i if z else s}",
            "T:{import os}", "T:{i = 1}", "T:{lambda: 1}", "T:{l[::-1]}", "T:{long}", "T:{obj}"]
    # what meeting a Decimal costs: its digits read, an int over 1,024 bits converted, an integer part made
    out += ["-longdec", "+longdec", "-hugecnt", "~hugecnt", "-cnt", "longdec + dec", "dec * longdec", "longdec ** 2",
            "dec ** 2", "longdec < dec", "longdec == dec", "abs(longdec)", "round(longdec, 2)", "int(longdec)",
            "int(e5000)", "round(e5000)", "str(longdec)", "e5000 + 1", "b1025 in [dec]", "dec in [b1025, b1025]",
            "dec in [b1024]", "b1025 in decs", "[dec] == [b1025]"]
    out += [f"{fn}({x})" for fn in ("sorted", "min", "max", "sum") for x in ("[dec, b1024]", "[dec, b1025]",
                                                                             "[b1025, dec, b1025]", "[b1025, b1025]")]
    # a set method's receiver and argument: not iterable, and hashes that collide
    out += ["st.issubset(i)", "st.isdisjoint(none)", "set(collide).issubset(l)", "set(collide).isdisjoint(st)"]
    # the probed module's globals inside slices and dict displays; truth and isinstance that would run Python
    out += ["l[z:LIMIT]", "s[:LIMIT]", "ll[LIMIT::i]", "ll[i:LIMIT:GL[0]]", "{MODE: LIMIT}", "{s: GL}", "{**d}",
            "{**d, 'x': 1}", "not truthy", "truthy and 1", "not sized", "sized or 1", "truthy if i else 0",
            "not when", "not whenpy", "not hour", "not hugedec", "isinstance(i, checked)", "isinstance(i, (int, checked))",
            "1 in sublist", "5 in sublist", "sublist in sublist", "s in sublist", "ll * 1", "long * 1", "ll * 0",
            "l * 1", "str(maxint)", "str(maxint // 2)", "str(2 ** 33218)", "s.startswith(('he', 'wo'))",
            "long.endswith(('x', 'ab'))", "s.startswith((loud,))", "s.count(nm)", "long.count(loud)"]
    out += ["getter[0]", "getter['a']", "getter[1:2]", "sublist[0]", "sublist[1:]", "l[s:]", "l[:f]", "l[::none]",
            "l[dec:]", "pairs[0][:1]", "pairs[-1][1]", "t[1:]", "nested[1][1][0]"]
    return out


def outcome(source: str, names: Dict[str, Any], redactor: Redactor) -> List[Any]:
    """[what happened, the value's canonical text or the error's message, units of work spent, what happens
    when the hit has no budget left and when it has one unit too few: "" if the same, else the refusal's
    message (it names the operation charged first, and last)].
    A row "T:..." is a log template rendered as a log probe does."""
    if source.startswith("T:"):
        return _template_outcome(source[2:], names, redactor)
    try:
        expr = compile_expression(source, field="when", is_redacted_name=redactor.is_redacted_name)
    except ExpressionError as exc:
        return ["refused", str(exc), 0, "", ""]
    run = lambda: _canonical(expr.run(names, GLOBALS))  # noqa: E731
    row = _run(run, redactor, WORK_BUDGET)
    tight = _run(run, redactor, 0)  # refused at its first charge
    short = _run(run, redactor, row[2] - 1) if row[2] > 0 else row  # refused at its last charge
    return row + ["" if tight[:2] == row[:2] else tight[1], "" if short[:2] == row[:2] else short[1]]


_BUDGET_TAIL = re.compile(r" units of work; a hit may spend 50,000 and ([\d,]+) are left \(docs/expressions.md#work-budget\)$")


def _run(fn: Any, redactor: Redactor, budget: int) -> List[Any]:
    arm(redactor)
    METER.hit[0] = budget
    try:
        value = fn()
    except EvaluationError as exc:  # the budget refusal's fixed tail (work.charge's doctest has it whole) shortened
        return ["error", _BUDGET_TAIL.sub(r" units; \1 left", str(exc)), budget - left()]
    return ["value", value, budget - left()]


def _template_outcome(source: str, names: Dict[str, Any], redactor: Redactor) -> List[Any]:
    try:
        template = compile_template(source, is_redacted_name=redactor.is_redacted_name)
    except ExpressionError as exc:
        return ["refused", str(exc), 0, "", ""]
    line = [""]

    def render() -> str:
        line[0] = template.render(names, GLOBALS, lambda v: safe_repr(v, redactor=redactor))
        return _canonical(line[0])

    row = _run(render, redactor, WORK_BUDGET)  # render() re-arms: each row's budget is the template's own
    return row + ["", ""]


def _canonical(value: Any) -> str:
    """The value's text, the same in every process (a set's order is not) and short."""
    if type(value) is int and value.bit_length() > 10_000:  # past the int-to-text digit limit
        text = f"int:<{value.bit_length()} bits, ends {value % 1000}>"
    elif type(value) in (set, frozenset):
        text = f"{type(value).__name__}{sorted(map(repr, value))}"
    elif type(value) is type(collections.OrderedDict().keys()) or type(value) is type({}.keys()):
        text = f"keys{sorted(map(repr, value))}"
    else:
        text = f"{type(value).__name__}:{value!r}"
    if len(text) > 120:
        text = f"{text[:100]}...({len(text)} chars)"
    text = re.sub(r" at 0x[0-9a-f]*", " at 0x...", text)  # a plain object's address
    return re.sub(r"[\w.]*test_cost_table\.", "", text)  # this module's name depends on pytest's import mode


def table() -> Dict[str, List[Any]]:
    """Every row's answer, computed afresh (never cached: `make mutation` forks each mutant's run from a
    process that already ran the tests once, and a cached table would be the unmutated one)."""
    limit = getattr(sys, "get_int_max_str_digits", lambda: None)()
    if limit is not None:
        sys.set_int_max_str_digits(4300)  # Python's default (PYTHONINTMAXSTRDIGITS could change it)
    try:
        return _compute()
    finally:
        if limit is not None:
            sys.set_int_max_str_digits(limit)


def _compute() -> Dict[str, List[Any]]:
    names, redactor = frame(), Redactor()
    value_checks.ATOMS.discard(id(decimal.Decimal))  # it learns Decimal at its first sight (special_atom): here
    outcome("dec + dec", names, redactor)
    try:
        return {source: outcome(source, names, redactor) for source in rows()}
    finally:
        arm()  # this thread's hit unarmed again: no redaction rules left behind for the next test


def test_every_row_of_the_language_answers_as_written_down():
    TRIPPED.clear()
    got = table()
    assert TRIPPED == [], f"user code ran: {TRIPPED}"
    # the rows are not all of one kind: values, run-time errors, refusals, operations charged, some refused
    # for the budget, answers with no budget left, templates
    kinds = collections.Counter(row[0] for row in got.values())
    assert kinds["value"] > 500 and kinds["error"] > 300 and kinds["refused"] > 20, kinds
    assert len([s for s, row in got.items() if row[2] > 0]) > 200
    assert len([s for s, row in got.items() if "units; 50,000 left" in row[1]]) >= 5
    assert len([s for s, row in got.items() if "units; 0 left" in row[3]]) > 200
    assert len([s for s in got if s.startswith("T:")]) > 100
    check_table(TABLE, got, __doc__.split(chr(10) * 2)[0])
