"""The expression language's answers, one table: for ~2,000 expressions over a fixed frame, what each one
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
rewrites it (for this Python; the rows of other versions are kept) and the diff is reviewed like code.
"""

from __future__ import annotations

import collections
import decimal
import enum
import json
import os
import re
import sys
from typing import Any, Dict, List, Tuple

from probebook.agent.capture.redaction import Redactor
from probebook.agent.expr.expressions import compile_expression
from probebook.agent.expr.work import WORK_BUDGET, arm, left
from probebook.errors import EvaluationError, ExpressionError

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cost_table.json")
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


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


class Plain:
    def __init__(self):
        self.id = 42
        self.name = "widget"


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
    }


OPERANDS = ["i", "n", "z", "big", "huge", "f", "inf", "c", "yes", "none", "s", "e", "long", "u", "digits", "dsn",
            "by", "ba", "l", "ll", "nested", "t", "d", "bigd", "od", "dd", "st", "bigst", "fs", "strs", "r", "dec",
            "hugedec", "cnt", "rounds", "nm", "loud", "color", "obj", "mixed", "creds"]
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
    return out


def outcome(source: str, names: Dict[str, Any], redactor: Redactor) -> List[Any]:
    """[what happened, the value's canonical text or the error's message, units of work spent]."""
    try:
        expr = compile_expression(source, field="when", is_redacted_name=redactor.is_redacted_name)
    except ExpressionError as exc:
        return ["refused", str(exc), 0]
    arm(redactor)
    try:
        value = expr.run(names, {})
    except EvaluationError as exc:
        return ["error", str(exc), WORK_BUDGET - left()]
    return ["value", _canonical(value), WORK_BUDGET - left()]


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
    text = re.sub(r" at 0x[0-9a-f]+", " at 0x...", text)  # a plain object's address
    return text if len(text) <= 120 else f"{text[:100]}...({len(text)} chars)"


def table() -> Dict[str, List[Any]]:
    names, redactor = frame(), Redactor()
    outcome("dec + dec", names, redactor)  # `value_checks.ATOMS` learns Decimal at its first sight: see it first
    return {source: outcome(source, names, redactor) for source in rows()}


def _load() -> Dict[str, Any]:
    with open(TABLE) as fh:
        return json.load(fh)


def _expected(stored: Dict[str, Any], source: str) -> Any:
    """The row for this Python: its own if the answer depends on the version, else the common one."""
    row = stored["rows"].get(source)
    if row is not None and isinstance(row, dict):
        return row.get(VERSION)
    return row


def _store(got: Dict[str, List[Any]]) -> None:
    """Write this Python's answers; a row whose answer differs from another version's gets one per version."""
    stored = _load() if os.path.exists(TABLE) else {"versions": [], "rows": {}}
    others = [v for v in stored["versions"] if v != VERSION]
    rows: Dict[str, Any] = {}
    for source, row in got.items():
        old = stored["rows"].get(source)
        if isinstance(old, dict):
            rows[source] = dict(old, **{VERSION: row})
        elif old is None or old == row or not others:
            rows[source] = row
        else:
            rows[source] = dict({v: old for v in others}, **{VERSION: row})
    versions = sorted(set(others) | {VERSION}, key=lambda v: tuple(map(int, v.split("."))))
    lines = [f"{json.dumps(source)}: {json.dumps(row)}" for source, row in rows.items()]  # a row a line: diffable
    with open(TABLE, "w") as fh:
        fh.write(f'{{"note": {json.dumps(__doc__.split(chr(10) * 2)[0])},\n"versions": {json.dumps(versions)},\n'
                 f'"rows": {{\n' + ",\n".join(lines) + "\n}}\n")


def test_every_row_of_the_language_answers_as_written_down():
    TRIPPED.clear()
    got = table()
    assert TRIPPED == [], f"user code ran: {TRIPPED}"
    assert len(got) > 1500, len(got)
    if os.environ.get("PROBEBOOK_UPDATE_TABLE") == "1":
        _store(got)
    stored = _load()
    assert VERSION in stored["versions"], f"no rows stored for Python {VERSION}: run with PROBEBOOK_UPDATE_TABLE=1"
    changed = [(source, _expected(stored, source), row) for source, row in got.items()
               if _expected(stored, source) != row]
    shown = "\n".join(f"  {source!r}: expected {want}, got {row}" for source, want, row in changed[:25])
    assert not changed, f"{len(changed)} of {len(got)} rows changed (first 25):\n{shown}"
    assert set(stored["rows"]) == set(got), "rows stored for expressions no longer in the table: update it"


def test_the_table_covers_each_kind_of_answer():
    """The rows are not all of one kind: values, run-time errors, refusals, operations charged, and some
    refused for the budget."""
    got = table()
    kinds = collections.Counter(row[0] for row in got.values())
    assert kinds["value"] > 500 and kinds["error"] > 300 and kinds["refused"] > 20, kinds
    assert len([s for s, row in got.items() if row[2] > 0]) > 200
    assert len([s for s, row in got.items() if "units of work" in row[1]]) >= 5
