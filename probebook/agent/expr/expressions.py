"""The restricted expression language of probe conditions, captured expressions and log templates.

Source is parsed with `ast`, checked against a small read-only subset of Python before anything
runs, then turned into nested closures. The user's text is never compiled to bytecode: Python
bytecode would call user dunders. The runtime guards live in `_expr_ops`; docs/expressions.md is
the user-facing reference.

>>> expr = compile_expression("user.id == 42 and total > 100")
>>> sorted(expr.names)
['total', 'user']
>>> compile_template("total={total} ok={{x}}").render({"total": 7}, {}, repr)
'total=7 ok={x}'
"""

from __future__ import annotations

import ast
import functools
import keyword
import operator
from typing import Any, Callable, FrozenSet, List, Mapping, Optional, Tuple, Union

from . import _expr_ops as ops
from ..errors import EvaluationError, ExpressionError, ProbebookError
from ..capture.safe_access import MISSING, safe_getattr

__all__ = ["Expression", "Template", "compile_expression", "compile_template", "MAX_SOURCE_CHARS"]

MAX_SOURCE_CHARS = 1000
_MAX_DEPTH = 64
_Fn = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
_NOT_REDACTED: Callable[[str], bool] = lambda name: False  # noqa: E731

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
           ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^"}
_CMPOPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
           ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_UNARY = {ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}
_IDENTITY = {"is": operator.is_, "is not": operator.is_not}
_CONSTANT_TYPES = (int, float, complex, str, bytes, bool, type(None))
# immutable builtins whose formatting runs no user code: a template keeps them to format later
_KEPT = frozenset(_CONSTANT_TYPES)
_ALLOWED = ("allowed: names, attributes, [] on builtin containers, literals, comparisons, and/or/not, "
            "arithmetic, `a if c else b`, calls to " + ", ".join(sorted(ops.CALLS)) + " and pure methods of builtin types")
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
_STATEMENTS = {ast.Assign: "assignment", ast.AugAssign: "assignment", ast.AnnAssign: "assignment",
               ast.Import: "import", ast.ImportFrom: "import", ast.Delete: "del"}


class Expression:
    """A checked, compiled expression; `evaluate` raises only `EvaluationError`.

    >>> compile_expression("len(items) > 2").evaluate({"items": [1, 2, 3]}, {})
    True
    """

    __slots__ = ("source", "names", "field", "_fn")

    def __init__(self, source: str, names: FrozenSet[str], field: str, fn: _Fn) -> None:
        self.source = source
        self.names = names  # root names read from the frame (allowed builtins are not listed)
        self.field = field
        self._fn = fn

    def evaluate(self, f_locals: Mapping[str, Any], f_globals: Mapping[str, Any]) -> Any:
        """The value in a frame: names resolve in locals, then globals, then the allowed builtins."""
        try:
            return self._fn(f_locals, f_globals)
        except EvaluationError:
            raise
        except RecursionError:
            message = "the expression ran out of stack at this call depth"
        except Exception as exc:  # builtin errors: TypeError, ZeroDivisionError, UnsafeAccess, ...
            message = exception_message(exc)
        raise EvaluationError(message)  # outside the handler: no chained traceback holding frames

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def exception_message(exc: BaseException) -> str:
    """A one-line message for an exception, read without calling its `__str__`."""
    args = exc.args
    text = " ".join(args[0].split()) if len(args) == 1 and type(args[0]) is str else ""
    if len(text) > 200:
        text = text[:197] + "..."
    if text and issubclass(type(exc), ProbebookError):  # ours (and UnsafeAccess) already read as a sentence
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def compile_expression(source: str, *, field: str = "when",
                       is_redacted_name: Callable[[str], bool] = _NOT_REDACTED) -> Expression:
    """Check and compile `source`; refuse anything outside the language with a one-line `ExpressionError`.

    >>> compile_expression("user.__class__")
    Traceback (most recent call last):
    ...
    probebook.agent.errors.ExpressionError: when: dunder attribute '__class__' is not allowed (column 1: `user.__class__`)
    """
    if not isinstance(source, str):
        raise ExpressionError(f"{field}: an expression must be a string, not {type(source).__name__}", field)
    text = source.strip()
    if not text:
        raise ExpressionError(f"{field}: the expression is empty; write one such as `x > 5`", field)
    if len(text) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"{field}: the expression is {len(text)} characters; the limit is {MAX_SOURCE_CHARS}", field)
    tree = _parse(text, field)
    compiler = _Compiler(text, field, is_redacted_name)
    try:
        fn, _ = compiler.build(tree.body, 0)
    except RecursionError:
        raise ExpressionError(f"{field}: the expression nests too deeply", field) from None
    return Expression(source, frozenset(compiler.names), field, fn)


def _parse(text: str, field: str) -> ast.Expression:
    try:
        return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        error = exc
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        raise ExpressionError(f"{field}: cannot parse the expression ({exception_message(exc)})", field) from None
    try:
        statement = ast.parse(text, mode="exec").body[0]
    except (SyntaxError, ValueError, RecursionError, MemoryError, IndexError):
        statement = None
    if statement is not None and not isinstance(statement, ast.Expr):
        kind = _STATEMENTS.get(type(statement), f"a statement ({type(statement).__name__})")
        raise ExpressionError(f"{field}: {kind} is not allowed; an expression is read-only and computes one value", field)
    line, column = error.lineno or 1, error.offset or 0
    where = "the end" if column < 1 else f"line {line} column {column}" if line > 1 else f"column {column}"
    raise ExpressionError(f"{field}: syntax error at {where}: {error.msg}", field)


class _Compiler:
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

    def build(self, node: ast.AST, depth: int) -> Tuple[_Fn, Any]:
        """(closure, constant value or MISSING) for `node`."""
        if depth > _MAX_DEPTH:
            raise self.refuse(node, f"the expression nests more than {_MAX_DEPTH} levels")
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise self.refuse(node, _REFUSED.get(type(node)) or f"{type(node).__name__} is not allowed; {_ALLOWED}")
        return method(node, depth + 1)

    def fns(self, nodes: List[ast.AST], depth: int) -> List[_Fn]:
        return [self.build(n, depth)[0] for n in nodes]

    def _Constant(self, node: ast.Constant, depth: int) -> Tuple[_Fn, Any]:
        value = node.value
        if type(value) not in _CONSTANT_TYPES:
            raise self.refuse(node, f"the literal {value!r} is not allowed")
        return (lambda L, G: value), value

    def _Name(self, node: ast.Name, depth: int) -> Tuple[_Fn, Any]:
        name = node.id
        self.check_name(node, name, "name")
        fallback = ops.VALUES.get(name, MISSING)
        if fallback is MISSING:
            self.names.add(name)
        missing = f"name {name!r} is not defined"

        def load(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            if name in L:
                return L[name]
            if name in G:
                return G[name]
            if fallback is MISSING:
                raise EvaluationError(missing)
            return fallback
        return load, MISSING

    def _Attribute(self, node: ast.Attribute, depth: int) -> Tuple[_Fn, Any]:
        name = node.attr
        self.check_name(node, name, "attribute")
        obj = self.build(node.value, depth)[0]
        return (lambda L, G: safe_getattr(obj(L, G), name)), MISSING

    def _Subscript(self, node: ast.Subscript, depth: int) -> Tuple[_Fn, Any]:
        key_node = node.slice
        if isinstance(key_node, ast.Constant) and isinstance(key_node.value, str) and self.redacted(key_node.value):
            raise self.refuse(node, f"names redacted identifier {key_node.value!r}; redacted values cannot be read")
        obj, key = self.build(node.value, depth)[0], self.build(key_node, depth)[0]
        item = ops.item
        return (lambda L, G: item(obj(L, G), key(L, G))), MISSING

    def _Slice(self, node: ast.Slice, depth: int) -> Tuple[_Fn, Any]:
        none = lambda L, G: None  # noqa: E731
        lo, hi, st = (self.build(n, depth)[0] if n is not None else none for n in (node.lower, node.upper, node.step))
        return (lambda L, G: slice(lo(L, G), hi(L, G), st(L, G))), MISSING

    def _Tuple(self, node: ast.Tuple, depth: int) -> Tuple[_Fn, Any]:
        parts = [self.build(n, depth) for n in node.elts]
        if all(c is not MISSING for _, c in parts):
            value = tuple(c for _, c in parts)
            return (lambda L, G: value), value
        fns = [f for f, _ in parts]
        return (lambda L, G: tuple([f(L, G) for f in fns])), MISSING

    def _List(self, node: ast.List, depth: int) -> Tuple[_Fn, Any]:
        fns = self.fns(node.elts, depth)
        return (lambda L, G: [f(L, G) for f in fns]), MISSING

    def _Set(self, node: ast.Set, depth: int) -> Tuple[_Fn, Any]:
        fns, deep = self.fns(node.elts, depth), ops.deep

        def build_set(L: Mapping[str, Any], G: Mapping[str, Any]) -> set:
            values = [f(L, G) for f in fns]
            for v in values:
                deep(v, ops.HASH, "a set display")
            return set(values)
        return build_set, MISSING

    def _Dict(self, node: ast.Dict, depth: int) -> Tuple[_Fn, Any]:
        if any(k is None for k in node.keys):
            raise self.refuse(node, "unpacking with ** is not allowed")
        pairs = list(zip(self.fns(node.keys, depth), self.fns(node.values, depth)))  # type: ignore[arg-type]
        deep = ops.deep

        def build_dict(L: Mapping[str, Any], G: Mapping[str, Any]) -> dict:
            out = {}
            for k, v in pairs:
                key = k(L, G)
                deep(key, ops.HASH, "a dict key")
                out[key] = v(L, G)
            return out
        return build_dict, MISSING

    def _BoolOp(self, node: ast.BoolOp, depth: int) -> Tuple[_Fn, Any]:
        fns, truth, is_and = self.fns(node.values, depth), ops.truth, isinstance(node.op, ast.And)
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

    def _UnaryOp(self, node: ast.UnaryOp, depth: int) -> Tuple[_Fn, Any]:
        operand, atoms = self.build(node.operand, depth)[0], ops.ATOMS
        if isinstance(node.op, ast.Not):
            truth = ops.truth
            return (lambda L, G: not (v if type(v := operand(L, G)) is bool else truth(v))), MISSING
        sym = _UNARY[type(node.op)]
        fn, slow = ops.UNARY[sym][0], ops.unary
        return (lambda L, G: fn(v) if id(type(v := operand(L, G))) in atoms else slow(sym, v)), MISSING

    def _BinOp(self, node: ast.BinOp, depth: int) -> Tuple[_Fn, Any]:
        sym = _BINOPS.get(type(node.op))
        if sym is None:
            raise self.refuse(node, _REFUSED.get(type(node.op), "this operator is not allowed"))
        left, right = self.build(node.left, depth)[0], self.build(node.right, depth)[0]
        fn, slow, atoms = ops.BINARY[sym][0], ops.binary, ops.ATOMS

        def binop(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            a, b = left(L, G), right(L, G)
            if id(type(a)) in atoms and id(type(b)) in atoms:
                return fn(a, b)
            return slow(sym, a, b)
        return binop, MISSING

    def _Compare(self, node: ast.Compare, depth: int) -> Tuple[_Fn, Any]:
        syms = [_CMPOPS[type(op)] for op in node.ops]
        left, right_const = self.build(node.left, depth)[0], self.build(node.comparators[0], depth)
        if len(syms) == 1:
            return _compare_one(syms[0], left, *right_const), MISSING
        steps = [_IDENTITY.get(sym) or functools.partial(ops.compare, sym) for sym in syms]
        rights = [right_const[0]] + self.fns(node.comparators[1:], depth)

        def chain(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
            a = left(L, G)
            for step, right in zip(steps, rights):
                b = right(L, G)  # each operand is evaluated once, and only while the chain holds
                result = step(a, b)
                if not (result if type(result) is bool else ops.truth(result)):
                    return result
                a = b
            return result
        return chain, MISSING

    def _IfExp(self, node: ast.IfExp, depth: int) -> Tuple[_Fn, Any]:
        test, body, orelse = self.fns([node.test, node.body, node.orelse], depth)
        truth = ops.truth
        return (lambda L, G: body(L, G) if (v if type(v := test(L, G)) is bool else truth(v)) else orelse(L, G)), MISSING

    def _Call(self, node: ast.Call, depth: int) -> Tuple[_Fn, Any]:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise self.refuse(node, "unpacking with * or ** is not allowed")
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ops.METHODS:
            return self.method_call(node, func, depth), MISSING
        if isinstance(func, ast.Attribute):
            raise self.refuse(node, f"method .{func.attr}() is not allowed; calls are limited to {_METHODS_HINT}")
        spec = ops.CALLS.get(func.id) if isinstance(func, ast.Name) else None
        if spec is None:
            raise self.refuse(node, f"this call is not allowed; calls are limited to {', '.join(sorted(ops.CALLS))} "
                                    f"and {_METHODS_HINT}")
        impl, least, most, keywords = spec
        if not least <= len(node.args) <= most or any(k.arg not in keywords for k in node.keywords):
            allowed = f" and keyword {', '.join(keywords)}" if keywords else ""
            raise self.refuse(node, f"{func.id}() takes {least}..{most} positional arguments{allowed}")
        name, real = func.id, ops.VALUES[func.id]
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

    def method_call(self, node: ast.Call, func: ast.Attribute, depth: int) -> _Fn:
        if node.keywords:
            raise self.refuse(node, "keyword arguments to methods are not allowed")
        first = node.args[0] if node.args else None
        if func.attr == "get" and isinstance(first, ast.Constant) and isinstance(first.value, str) \
                and self.redacted(first.value):
            raise self.refuse(node, f"names redacted identifier {first.value!r}; redacted values cannot be read")
        obj, args, name = self.build(func.value, depth)[0], self.fns(node.args, depth), func.attr
        table, slow, atoms, text_check = ops.METHODS[name], ops.call_method, ops.ATOMS, ops.check_text
        if len(args) == 1:
            arg = args[0]

            def call_method_one(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
                o, a = obj(L, G), arg(L, G)
                entry = table.get(id(type(o)))
                if entry is None:
                    return slow(o, name, (a,))
                if entry[1] is not text_check or id(type(a)) not in atoms:
                    entry[1](o, (a,))
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


def _compare_one(sym: str, left: _Fn, right: _Fn, const: Any) -> _Fn:
    """A closure for one comparison; an atom constant on the right skips its own type check."""
    if sym == "is":
        return lambda L, G: left(L, G) is right(L, G)
    if sym == "is not":
        return lambda L, G: left(L, G) is not right(L, G)
    atoms, slow = ops.ATOMS, ops.compare
    if sym in ("in", "not in"):
        fast_in = type(const) is tuple and all(id(type(c)) in atoms for c in const)
        negate = sym == "not in"

        def contains(L: Mapping[str, Any], G: Mapping[str, Any]) -> bool:
            a = left(L, G)
            if fast_in and id(type(a)) in atoms:
                return (a in const) is not negate
            return slow(sym, a, right(L, G))
        return contains
    op = ops.COMPARE[sym][0]
    if const is not MISSING and id(type(const)) in atoms:
        return lambda L, G: op(a, const) if id(type(a := left(L, G))) in atoms else slow(sym, a, const)

    def compare(L: Mapping[str, Any], G: Mapping[str, Any]) -> Any:
        a, b = left(L, G), right(L, G)
        if id(type(a)) in atoms and id(type(b)) in atoms:
            return op(a, b)
        return slow(sym, a, b)
    return compare


class Template:
    """A log-line template: literal text with `{expression}` parts; `{{` and `}}` are literal braces.

    >>> t = compile_template("user={user} n={len(items)}")
    >>> t.render({"user": "ann", "items": [1]}, {}, str)
    'user=ann n=1'
    """

    __slots__ = ("source", "expressions", "_parts", "_reads")

    def __init__(self, source: str, parts: List[Union[str, Expression]]) -> None:
        self.source = source
        self._parts = parts
        self.expressions: Tuple[Expression, ...] = tuple(p for p in parts if isinstance(p, Expression))
        # a part that is a bare name (`{user}`, the common case) is a dict read of the frame's
        # locals: the same answer as evaluating it, without the evaluator's calls
        # likewise `{order.total}`: a read of the root, then attribute reads without the evaluator
        self._reads = tuple((e, *(_dotted(e.source) or (None, ()))) for e in self.expressions)

    def render(self, f_locals: Mapping[str, Any], f_globals: Mapping[str, Any],
               format_value: Callable[[Any], str]) -> str:
        """The text; a part that fails renders inline as `{source: reason}` and never raises."""
        return self.finish(self.read(f_locals, f_globals, format_value, 0), format_value)

    def read(self, f_locals: Mapping[str, Any], f_globals: Mapping[str, Any],
             format_value: Callable[[Any], str], keep_chars: int) -> Tuple[Any, ...]:
        """Each part's value, read now in the probed frame; `finish` turns them into the text.

        With `keep_chars` > 0, immutable builtin values (numbers, None, exact `str`/`bytes`, the
        latter cut to `keep_chars`) are kept as they are, so formatting them can wait for another
        thread with the same result. Anything else is formatted now and kept as `(text,)`.
        """
        out: List[Any] = []
        for part, root, attrs in self._reads:
            try:
                value = f_locals.get(root, MISSING) if root is not None else MISSING
                if value is MISSING:
                    value = part.evaluate(f_locals, f_globals)
                else:
                    for attr in attrs:
                        value = safe_getattr(value, attr)
            except Exception as exc:  # EvaluationError, or UnsafeAccess from an attribute
                out.append((_failed(part, exc),))
                continue
            tp = type(value)
            if keep_chars and tp in _KEPT:
                out.append(value[:keep_chars] if (tp is str or tp is bytes) and len(value) > keep_chars else value)
            else:
                out.append((_formatted(part, value, format_value),))
        return tuple(out)  # of immutable values: the garbage collector stops tracking it

    def finish(self, values: Tuple[Any, ...], format_value: Callable[[Any], str]) -> str:
        """The text from `read`'s values; never raises."""
        out = []
        i = 0
        for part in self._parts:
            if type(part) is str:
                out.append(part)
                continue
            value = values[i]
            i += 1
            out.append(value[0] if type(value) is tuple else _formatted(part, value, format_value))
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def _formatted(part: Expression, value: Any, format_value: Callable[[Any], str]) -> str:
    """`format_value(value)`, or the part's inline failure text; never raises."""
    try:
        text = format_value(value)
    except Exception as exc:
        return _failed(part, exc)
    return text if type(text) is str else f"{{{part.source}: format_value returned no str}}"


def _failed(part: Expression, exc: BaseException) -> str:
    return f"{{{part.source}: {exception_message(exc)}}}"


def _dotted(source: str) -> Optional[Tuple[str, Tuple[str, ...]]]:
    """`(name, (attr, ...))` when `source` is just `name` or `name.a.b`, else None.

    >>> _dotted(" order.user.id "), _dotted("user"), _dotted("len(x)")
    (('order', ('user', 'id')), ('user', ()), None)
    """
    names = source.strip().split(".")
    if not all(n.isidentifier() and not keyword.iskeyword(n) for n in names):
        return None
    return names[0], tuple(names[1:])


def compile_template(template: str, *, field: str = "template",
                     is_redacted_name: Callable[[str], bool] = _NOT_REDACTED) -> Template:
    """Split a template into text and expressions, compiling each like `compile_expression`.

    >>> compile_template("total={cart.total} {{literal}}").expressions
    (Expression('cart.total'),)
    """
    if not isinstance(template, str):
        raise ExpressionError(f"{field}: a template must be a string, not {type(template).__name__}", field)
    parts: List[Union[str, Expression]] = []
    text: List[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch in "{}" and template.startswith(ch * 2, i):
            text.append(ch)
            i += 2
        elif ch == "}":
            raise ExpressionError(f"{field}: single '}}' at column {i + 1}; write '}}}}' for a literal brace", field)
        elif ch == "{":
            end = _closing_brace(template, i + 1)
            if end < 0:
                raise ExpressionError(f"{field}: '{{' at column {i + 1} is never closed; write '{{{{' for a literal brace", field)
            if text:
                parts.append("".join(text))
                text = []
            parts.append(compile_expression(template[i + 1:end].strip() or " ", field=field,
                                            is_redacted_name=is_redacted_name))
            i = end + 1
        else:
            text.append(ch)
            i += 1
    if text:
        parts.append("".join(text))
    return Template(template, parts)


def _closing_brace(text: str, i: int) -> int:
    """Index of the `}` that closes an expression starting at `i`, skipping nested brackets and strings."""
    depth, quote = 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if ch == "}" and depth == 0:
                return i
            depth -= 1
        i += 1
    return -1
