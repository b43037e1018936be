"""Restricted expressions: probe conditions, captured expressions and the parts of log templates.

Source is parsed with `ast`, checked against a small read-only subset of Python before anything
runs (`compiler`), then evaluated as nested closures; the runtime guards live in `value_checks`,
`operators` and `calls`, log templates in `template`. docs/expressions.md is the user-facing
reference.

>>> expr = compile_expression("user.id == 42 and total > 100")
>>> sorted(expr.names)
['total', 'user']
>>> expr.evaluate({"user": None, "total": 7}, {})
Traceback (most recent call last):
...
probebook.errors.EvaluationError: NoneType object has no attribute 'id'
"""

from __future__ import annotations

import ast
from typing import Any, Callable, FrozenSet, Mapping, Optional

from probebook.errors import EvaluationError, ExpressionError, ProbebookError

from .compiler import Closure, ClosureCompiler
from .work import arm

__all__ = ["Expression", "compile_expression", "exception_message", "never_redacted", "MAX_SOURCE_CHARS"]

MAX_SOURCE_CHARS = 1000
_STATEMENTS = {ast.Assign: "assignment", ast.AugAssign: "assignment", ast.AnnAssign: "assignment",
               ast.Import: "import", ast.ImportFrom: "import", ast.Delete: "del"}


def never_redacted(name: str) -> bool:
    """The default `is_redacted_name`: no identifier is redacted."""
    return False


class Expression:
    """A checked, compiled expression; `evaluate` raises only `EvaluationError`.

    >>> compile_expression("len(items) > 2").evaluate({"items": [1, 2, 3]}, {})
    True
    """

    __slots__ = ("source", "names", "field", "_fn", "_redacted")

    def __init__(self, source: str, names: FrozenSet[str], field: str, fn: Closure,
                 redacted: Any = None) -> None:
        self.source = source
        self.names = names  # root names read from the frame (allowed builtins are not listed)
        self.field = field
        self._fn = fn
        self._redacted = redacted  # the redaction rules operations apply (work.arm), or None

    def evaluate(self, f_locals: Mapping[str, Any], f_globals: Mapping[str, Any]) -> Any:
        """The value in a frame: names resolve in locals, then globals, then the allowed builtins.
        It has a work budget of its own (`work.WORK_BUDGET`)."""
        arm(self._redacted)
        return self.run(f_locals, f_globals)

    def run(self, f_locals: Mapping[str, Any], f_globals: Mapping[str, Any]) -> Any:
        """`evaluate` within the budget this thread's probe hit has left (the probe arms it as the hit starts)."""
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


class _NamesOnly:
    """Redaction rules of names alone, for an expression evaluated outside a probe (`Expression.evaluate`);
    a probe arms its agent's whole rules."""

    __slots__ = ("is_redacted_name",)

    def __init__(self, is_redacted_name: Callable[[str], bool]) -> None:
        self.is_redacted_name = is_redacted_name

    def is_redacted_value(self, text: str) -> bool:
        return False


def compile_expression(source: str, *, field: str = "when",
                       is_redacted_name: Callable[[str], bool] = never_redacted) -> Expression:
    """Check and compile `source`; refuse anything outside the language with a one-line `ExpressionError`.

    >>> compile_expression("user.__class__")
    Traceback (most recent call last):
    ...
    probebook.errors.ExpressionError: when: dunder attribute '__class__' is not allowed (column 1: `user.__class__`)
    """
    if not isinstance(source, str):
        raise ExpressionError(f"{field}: an expression must be a string, not {type(source).__name__}", field)
    text = source.strip()
    if not text:
        raise ExpressionError(f"{field}: the expression is empty; write one such as `x > 5`", field)
    if len(text) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"{field}: the expression is {len(text)} characters; the limit is {MAX_SOURCE_CHARS}", field)
    tree = _parse(text, field)
    compiler = ClosureCompiler(text, field, is_redacted_name)
    try:
        fn, _ = compiler.build(tree.body, 0)
    except RecursionError:
        raise ExpressionError(f"{field}: the expression nests too deeply", field) from None
    return Expression(source, frozenset(compiler.names), field, fn,
                      None if is_redacted_name is never_redacted else _NamesOnly(is_redacted_name))


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

