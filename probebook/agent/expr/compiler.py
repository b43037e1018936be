"""The compiler of restricted expressions: checks a parsed tree and turns it into nested closures.

One pass over the `ast` refuses every node outside the language with a one-line `ExpressionError`
that says where and what is allowed, and builds a closure `(f_locals, f_globals) -> value` per
node. The user's text is never compiled to bytecode: Python bytecode would call user dunders.
Each closure takes the plain path when its operands are atoms (`value_checks.ATOMS`; for arithmetic
`ARITH_ATOMS`, which leaves Decimal to `operators`) and the guarded one (`operators`, `calls`) otherwise. `expressions.compile_expression` is the entry point.

>>> import ast
>>> fn, const = ClosureCompiler("a + 1", "when", lambda name: False).build(ast.parse("a + 1", mode="eval").body, 0)
>>> fn({"a": 2}, {}), const is MISSING
(3, True)
"""

from __future__ import annotations

import ast
import functools
import operator
from typing import Any, Callable, List, Mapping, Tuple

from probebook.errors import EvaluationError, ExpressionError

from ..capture.redaction import key_name
from ..capture.safe_access import MISSING, plain_namespace, safe_getattr
from . import calls, operators, value_checks, work
from .work import secret_shaped

__all__ = ["ClosureCompiler", "Closure", "LITERAL_TYPES"]

# what a compiled node is: the value of the node in a frame's locals and globals
Closure = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
LITERAL_TYPES = (int, float, complex, str, bytes, bool, type(None))
_MAX_DEPTH = 64

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
           ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^"}
_CMPOPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
           ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_UNARY = {ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}
_IDENTITY = {"is": operator.is_, "is not": operator.is_not}
_ALLOWED = ("allowed: names, attributes, [] on builtin containers, literals, comparisons, and/or/not, "
            "arithmetic, `a if c else b`, calls to " + ", ".join(sorted(calls.CALLS))
            + " and pure methods of builtin types")
_METHODS_HINT = ("pure methods of builtin types (str.startswith/endswith/split/strip/lower/upper/count/find/join/..., "
                 "dict.get/keys/values/items, list.count/index, set.issubset/issuperset/isdisjoint)")
_REFUSED = {
    ast.NamedExpr: "assignment (:=) is not allowed; expressions are read-only",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed; use any(), all(), len() or `in` on a container",
    ast.JoinedStr: "f-strings are not allowed; use a log template such as 'total={cart.total}'",
    ast.Starred: "unpacking with * is not allowed",
    ast.Await: "await is not allowed", ast.Yield: "yield is not allowed", ast.YieldFrom: "yield is not allowed",
    ast.MatMult: "the @ operator is not allowed (it only calls user code)",
}
for _node in (ast.SetComp, ast.DictComp, ast.GeneratorExp):
    _REFUSED[_node] = _REFUSED[ast.ListComp]
_REFUSED[ast.FormattedValue] = _REFUSED[ast.JoinedStr]


class ClosureCompiler:
    """One pass over the tree that refuses what is not allowed and builds a closure per node."""

    def __init__(self, source: str, field: str, is_redacted_name: Callable[[str], bool]) -> None:
        self.source, self.field, self.redacted = source, field, is_redacted_name
        self.names: set = set()

    def refuse(self, node: ast.AST, message: str) -> ExpressionError:
        segment = " ".join((ast.get_source_segment(self.source, node) or "").split())
        if len(segment) > 60:
            segment = segment[:57] + "..."
        where = f"line {node.lineno} column {node.col_offset + 1}" if node.lineno > 1 else f"column {node.col_offset + 1}"
        return ExpressionError(f"{self.field}: {message} ({where}: `{segment}`)", self.field)

    def check_name(self, node: ast.AST, name: str, kind: str) -> None:
        if name.startswith("__") and name.endswith("__"):
            raise self.refuse(node, f"dunder {kind} {name!r} is not allowed")
        if self.redacted(name):
            raise self.refuse(node, f"names redacted identifier {name!r}; redacted values cannot be read")

    def build(self, node: ast.AST, depth: int) -> Tuple[Closure, Any]:
        """(closure, constant value or MISSING) for `node`."""
        if depth > _MAX_DEPTH:
            raise self.refuse(node, f"the expression nests more than {_MAX_DEPTH} levels")
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise self.refuse(node, _REFUSED.get(type(node)) or f"{type(node).__name__} is not allowed; {_ALLOWED}")
        return method(node, depth + 1)

    def fns(self, nodes: List[ast.AST], depth: int) -> List[Closure]:
        return [self.build(n, depth)[0] for n in nodes]

    def _Constant(self, node: ast.Constant, depth: int) -> Tuple[Closure, Any]:
        value = node.value
        if type(value) not in LITERAL_TYPES:
            raise self.refuse(node, f"the literal {value!r} is not allowed")
        return (lambda L, G: value), value

    def _Name(self, node: ast.Name, depth: int) -> Tuple[Closure, Any]:
        name = node.id
        self.check_name(node, name, "name")
        fallback = calls.VALUES.get(name, MISSING)
        if fallback is MISSING:
            self.names.add(name)
        missing = f"name {name!r} is not defined"
        odd_globals = f"the module's globals have a key that is not a plain str; looking {name!r} up could run its __eq__"

        def load(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            if name in L:
                return L[name]
            if not plain_namespace(G):
                raise EvaluationError(odd_globals)
            if name in G:
                return G[name]
            if fallback is MISSING:
                raise EvaluationError(missing)
            return fallback
        return load, MISSING

    def _Attribute(self, node: ast.Attribute, depth: int) -> Tuple[Closure, Any]:
        name = node.attr
        self.check_name(node, name, "attribute")
        obj = self.build(node.value, depth)[0]
        return (lambda L, G: safe_getattr(obj(L, G), name)), MISSING

    def _Subscript(self, node: ast.Subscript, depth: int) -> Tuple[Closure, Any]:
        key_node = node.slice
        if isinstance(key_node, ast.Constant) and self.redacted_key(key_node.value):
            raise self.refuse(node, f"names redacted identifier {key_node.value!r}; redacted values cannot be read")
        obj, key = self.build(node.value, depth)[0], self.build(key_node, depth)[0]
        item = operators.item
        if not isinstance(key_node, ast.Constant):  # creds['pass' + 'word'] stays redacted
            key = self.unredacted(key)
        return (lambda L, G: item(obj(L, G), key(L, G))), MISSING

    def redacted_key(self, key: Any) -> bool:
        """A `str` or `bytes` key (`environ._data[b"PGPASSWORD"]`) that names a redacted identifier."""
        name = key_name(key)
        return name is not None and self.redacted(name)

    def unredacted(self, key: Closure) -> Closure:
        """`key`, evaluated at run time, refused when it names a redacted identifier (a constant one is
        refused when the probe is added)."""
        red = self.redacted

        def checked(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            k = key(L, G)
            name = key_name(k)
            if name is not None and red(name):
                raise EvaluationError(f"reads the redacted entry {name[:40]!r}")
            return k
        return checked

    def _Slice(self, node: ast.Slice, depth: int) -> Tuple[Closure, Any]:
        none = lambda L, G: None  # noqa: E731
        lo, hi, st = (self.build(n, depth)[0] if n is not None else none for n in (node.lower, node.upper, node.step))
        return (lambda L, G: slice(lo(L, G), hi(L, G), st(L, G))), MISSING

    def _Tuple(self, node: ast.Tuple, depth: int) -> Tuple[Closure, Any]:
        parts = [self.build(n, depth) for n in node.elts]
        if all(c is not MISSING for _, c in parts):
            value = tuple(c for _, c in parts)
            return (lambda L, G: value), value
        fns = [f for f, _ in parts]
        return (lambda L, G: tuple([f(L, G) for f in fns])), MISSING

    def _List(self, node: ast.List, depth: int) -> Tuple[Closure, Any]:
        fns = self.fns(node.elts, depth)
        return (lambda L, G: [f(L, G) for f in fns]), MISSING

    def _Set(self, node: ast.Set, depth: int) -> Tuple[Closure, Any]:
        fns, deep = self.fns(node.elts, depth), value_checks.deep

        def build_set(L: Mapping[str, Any], G: Mapping[str, Any]) -> set:
            values = [f(L, G) for f in fns]
            for v in values:
                deep(v, value_checks.HASH, "a set display")
            return set(values)
        return build_set, MISSING

    def _Dict(self, node: ast.Dict, depth: int) -> Tuple[Closure, Any]:
        if any(k is None for k in node.keys):
            raise self.refuse(node, "unpacking with ** is not allowed")
        pairs = list(zip(self.fns(node.keys, depth), self.fns(node.values, depth)))  # type: ignore[arg-type]
        deep = value_checks.deep

        def build_dict(L: Mapping[str, Any], G: Mapping[str, Any]) -> dict:
            out = {}
            for k, v in pairs:
                key = k(L, G)
                deep(key, value_checks.HASH, "a dict key")
                out[key] = v(L, G)
            return out
        return build_dict, MISSING

    def _BoolOp(self, node: ast.BoolOp, depth: int) -> Tuple[Closure, Any]:
        fns, truth, is_and = self.fns(node.values, depth), value_checks.truth, isinstance(node.op, ast.And)
        if len(fns) == 2:
            first, second = fns
            if is_and:
                return (lambda L, G: second(L, G) if (v := first(L, G)) is True or (
                    v is not False and truth(v)) else v), MISSING
            return (lambda L, G: v if (v := first(L, G)) is True or (
                v is not False and truth(v)) else second(L, G)), MISSING

        def boolop(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            for f in fns:
                v = f(L, G)
                if (v if type(v) is bool else truth(v)) is not is_and:
                    return v
            return v
        return boolop, MISSING

    def _UnaryOp(self, node: ast.UnaryOp, depth: int) -> Tuple[Closure, Any]:
        operand, atoms = self.build(node.operand, depth)[0], value_checks.ARITH_ATOMS
        if isinstance(node.op, ast.Not):
            truth = value_checks.truth
            return (lambda L, G: not (v if type(v := operand(L, G)) is bool else truth(v))), MISSING
        sym = _UNARY[type(node.op)]
        fn, slow = operators.UNARY[sym][0], operators.unary
        return (lambda L, G: fn(v) if id(type(v := operand(L, G))) in atoms else slow(sym, v)), MISSING

    def _BinOp(self, node: ast.BinOp, depth: int) -> Tuple[Closure, Any]:
        sym = _BINOPS.get(type(node.op))
        if sym is None:
            raise self.refuse(node, _REFUSED.get(type(node.op), "this operator is not allowed"))
        left, right = self.build(node.left, depth)[0], self.build(node.right, depth)[0]
        fn, slow, atoms = operators.BINARY[sym][0], operators.binary, value_checks.ARITH_ATOMS  # Decimal: slow
        if sym == "+":  # numbers add inline; text pays its copy (operators._add)
            numbers = value_checks.NUMBERS

            def add(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
                a, b = left(L, G), right(L, G)
                if id(type(a)) in numbers and id(type(b)) in numbers:
                    return a + b
                if id(type(a)) in atoms and id(type(b)) in atoms:
                    return fn(a, b)
                return slow(sym, a, b)
            return add, MISSING

        def binop(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            a, b = left(L, G), right(L, G)
            if id(type(a)) in atoms and id(type(b)) in atoms:
                return fn(a, b)
            return slow(sym, a, b)
        return binop, MISSING

    def _Compare(self, node: ast.Compare, depth: int) -> Tuple[Closure, Any]:
        syms = [_CMPOPS[type(op)] for op in node.ops]
        left, right_const = self.build(node.left, depth)[0], self.build(node.comparators[0], depth)
        if len(syms) == 1:
            return _compare_one(syms[0], left, *right_const), MISSING
        steps = [_IDENTITY.get(sym) or functools.partial(operators.compare, sym) for sym in syms]
        rights = [right_const[0]] + self.fns(node.comparators[1:], depth)

        def chain(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            a = left(L, G)
            for step, right in zip(steps, rights):
                b = right(L, G)  # each operand is evaluated once, and only while the chain holds
                result = step(a, b)
                if not (result if type(result) is bool else value_checks.truth(result)):
                    return result
                a = b
            return result
        return chain, MISSING

    def _IfExp(self, node: ast.IfExp, depth: int) -> Tuple[Closure, Any]:
        test, body, orelse = self.fns([node.test, node.body, node.orelse], depth)
        truth = value_checks.truth
        return (lambda L, G: body(L, G) if (v if type(v := test(L, G)) is bool else truth(v)) else orelse(L, G)), MISSING

    def _Call(self, node: ast.Call, depth: int) -> Tuple[Closure, Any]:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise self.refuse(node, "unpacking with * or ** is not allowed")
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in calls.METHODS:
            return self.method_call(node, func, depth), MISSING
        if isinstance(func, ast.Attribute):
            raise self.refuse(node, f"method .{func.attr}() is not allowed; calls are limited to {_METHODS_HINT}")
        spec = calls.CALLS.get(func.id) if isinstance(func, ast.Name) else None
        if spec is None:
            raise self.refuse(node, f"this call is not allowed; calls are limited to {', '.join(sorted(calls.CALLS))} "
                                    f"and {_METHODS_HINT}")
        impl, least, most, keywords = spec
        if not least <= len(node.args) <= most or any(k.arg not in keywords for k in node.keywords):
            allowed = f" and keyword {', '.join(keywords)}" if keywords else ""
            raise self.refuse(node, f"{func.id}() takes {least}..{most} positional arguments{allowed}")
        name, real = func.id, calls.VALUES[func.id]
        args, kw = self.fns(node.args, depth), [(k.arg, self.build(k.value, depth)[0]) for k in node.keywords]
        shadowed = f"{name!r} here is not the builtin {name}(); calls run only the allowed builtins"

        def check(L: Mapping[str, Any], G: Mapping[str, Any]) -> None:
            if (L[name] if name in L else G.get(name, real)) is not real:
                raise EvaluationError(shadowed)
        if len(args) == 1 and not kw:
            arg = args[0]

            def call_one(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
                if name in L or name in G:
                    check(L, G)
                return impl(arg(L, G))
            return call_one, MISSING

        def call_builtin(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            check(L, G)
            values = [a(L, G) for a in args]
            return impl(*values, **{k: f(L, G) for k, f in kw}) if kw else impl(*values)
        return call_builtin, MISSING

    def method_call(self, node: ast.Call, func: ast.Attribute, depth: int) -> Closure:
        if node.keywords:
            raise self.refuse(node, "keyword arguments to methods are not allowed")
        first = node.args[0] if node.args else None
        if func.attr == "get" and isinstance(first, ast.Constant) and self.redacted_key(first.value):
            raise self.refuse(node, f"names redacted identifier {first.value!r}; redacted values cannot be read")
        obj, args, name = self.build(func.value, depth)[0], self.fns(node.args, depth), func.attr
        table, slow, text_check = calls.METHODS[name], calls.call_method, calls.check_text
        if name == "get" and args and not isinstance(first, ast.Constant):  # d.get(computed name): checked too
            args = [self.unredacted(args[0])] + list(args[1:])
        atoms = value_checks.ATOMS
        if len(args) == 1:
            arg = args[0]

            def call_method_one(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
                o, a = obj(L, G), arg(L, G)
                entry = table.get(id(type(o)))
                if entry is None:
                    return slow(o, name, (a,))
                if entry[1] is not text_check or id(type(a)) not in atoms or len(o) > 1024:
                    entry[1](o, (a,))
                else:  # a short text with an atom argument costs next to nothing, unless it holds a secret
                    secret_shaped(o, "method")
                return entry[0](o, a)
            return call_method_one

        def call_method(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            o = obj(L, G)
            values = tuple([a(L, G) for a in args])
            entry = table.get(id(type(o)))
            if entry is None:
                return slow(o, name, values)
            entry[1](o, values)
            return entry[0](o, *values)
        return call_method


def _compare_one(sym: str, left: Closure, right: Closure, const: Any) -> Closure:
    """A closure for one comparison; an atom constant on the right skips its own type check."""
    if sym == "is":
        return lambda L, G: left(L, G) is right(L, G)
    if sym == "is not":
        return lambda L, G: left(L, G) is not right(L, G)
    atoms, slow, text, shaped = value_checks.ATOMS, operators.compare, value_checks.TEXT, work.compared
    what = f"'{sym}'"  # a text compared with a guess answers whether the guess is right: never a secret
    if sym in ("in", "not in"):
        fast_in = type(const) is tuple and all(id(type(c)) in atoms for c in const)
        texts_in = fast_in and any(id(type(c)) in text for c in const)
        negate = sym == "not in"

        def contains(L: Mapping[str, Any], G: Mapping[str, Any]) -> bool:
            a = left(L, G)
            if fast_in and id(type(a)) in atoms:
                if texts_in and id(type(a)) in text:
                    shaped(a, what)
                return (a in const) is not negate
            return slow(sym, a, right(L, G))
        return contains
    op, atoms = operators.COMPARE[sym][0], value_checks.ARITH_ATOMS  # a Decimal compared: operators charge it
    if const is not MISSING and id(type(const)) in atoms:
        if id(type(const)) not in text:  # a text against a number or None: the same answer whatever it holds
            return lambda L, G: op(a, const) if id(type(a := left(L, G))) in atoms else slow(sym, a, const)

        free_text = work.FREE_TEXT

        def against_text(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            a = left(L, G)
            if id(type(a)) in text and len(a) <= free_text:
                shaped(a, what)
                return op(a, const)
            return slow(sym, a, const)
        return against_text

    free_text = work.FREE_TEXT

    def compare(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
        a, b = left(L, G), right(L, G)
        if id(type(a)) in atoms and id(type(b)) in atoms and (id(type(a)) not in text or len(a) <= free_text):
            if id(type(a)) in text and id(type(b)) in text:
                shaped(a, what)
                shaped(b, what)
            return op(a, b)
        return slow(sym, a, b)  # a long text: charged what comparing it costs
    return compare