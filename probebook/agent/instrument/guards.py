"""Inline guards: the cheap prefix of a condition, compiled into the probed code (every Python).

A condition such as ``x < 0`` or ``order_id == 42 and user is not None`` over the function's own
parameters is checked by a few injected instructions, so a probe whose condition is false costs
about as much as a no-op hook. Each comparison runs only after an exact type check (``type(x) is
int``), so no user ``__lt__``/``__eq__`` can ever run; if a type check fails the hook is called
and the full, checked evaluator decides. The guard can only skip the hook when the condition is
certainly false, never the other way round.

>>> import types
>>> def f(x, name): pass
>>> inline_guard("x < 0 and name == 'bob'", f.__code__)
(Conjunct(name='x', op='<', const=0), Conjunct(name='name', op='==', const='bob'))
>>> inline_guard("len(x) > 2", f.__code__) is None
True
"""

from __future__ import annotations

import ast
import dis
import itertools
import operator
import sys
from dataclasses import dataclass
from types import CodeType
from typing import Any, Callable, Mapping, Optional, Tuple

from .locate import parameter_names

__all__ = ["Conjunct", "SkipCount", "inline_guard", "safe_parameters", "certainly_false"]

_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
        ast.Is: "is", ast.IsNot: "is not"}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!=", "is": "is", "is not": "is not"}
_GUARDED_TYPES = (int, float, str)


@dataclass(frozen=True)
class Conjunct:
    """`name op const`; `is`/`is not` take only None, True or False and need no type check."""

    name: str
    op: str
    const: Any


class SkipCount:
    """How many hooks an injected guard skipped: at each skip the guard takes one item from `items`, an
    `itertools.repeat` that counts down in C (an int `+= 1` allocated a new int on every skip: ~20 ns).

    >>> skips = SkipCount()
    >>> for _ in range(3): _ = next(skips.items)
    >>> skips.count
    3
    """

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items = itertools.repeat(None, sys.maxsize)

    @property
    def count(self) -> int:
        return sys.maxsize - operator.length_hint(self.items)


def safe_parameters(code: CodeType) -> frozenset:
    """Parameters that are always bound, plain fast locals: never deleted, not cells."""
    params = set(parameter_names(code)) - set(code.co_cellvars)
    deleted = {ins.argval for ins in dis.get_instructions(code) if ins.opname == "DELETE_FAST"}
    return frozenset(params - deleted)


def inline_guard(source: Optional[str], code: CodeType,
                 secret: Callable[[str], bool] = lambda text: False) -> Optional[Tuple[Conjunct, ...]]:
    """Conjuncts for `source` when all of it can be guarded inline in `code`, else None.

    A text is only compared for (in)equality, and only with a constant that `secret` (the redaction's
    value check) does not take for a secret: the guard skips without asking the evaluator, which refuses
    to compare a secret-shaped text with a guess, so an ordering or a secret-shaped guess would answer
    whether the guess is right.

    >>> def g(url): pass
    >>> inline_guard("url < 'm'", g.__code__) is None
    True
    >>> inline_guard("url == 'a:b@c'", g.__code__, secret=lambda t: "@" in t) is None
    True
    """
    if not source:
        return None
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError:
        return None
    parts = tree.values if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And) else [tree]
    params = safe_parameters(code)
    out = []
    for part in parts:
        c = _conjunct(part, params, secret)
        if c is None:
            return None
        out.append(c)
    return tuple(out)


def _conjunct(node: ast.AST, params: frozenset, secret: Callable[[str], bool]) -> Optional[Conjunct]:
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _OPS):
        return None
    op = _OPS[type(node.ops[0])]
    left, right = node.left, node.comparators[0]
    if isinstance(right, ast.Name) and isinstance(left, ast.Constant):
        left, right, op = right, left, _FLIP[op]
    if not (isinstance(left, ast.Name) and isinstance(right, ast.Constant) and left.id in params):
        return None
    const = right.value
    if op in ("is", "is not"):
        return Conjunct(left.id, op, const) if const is None or const is True or const is False else None
    if type(const) not in _GUARDED_TYPES:
        return None
    if type(const) is str and (op not in ("==", "!=") or secret(const)):
        return None
    return Conjunct(left.id, op, const)


_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
        "!=": operator.ne, "is": operator.is_, "is not": operator.is_not}


def certainly_false(conjuncts: Tuple[Conjunct, ...]) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over a frame's locals that is True only when the condition is certainly false.

    The same rule as the injected guard, for the monitoring-only backend (>= 3.12 without swaps), which
    reads the frame's locals: anything unexpected (a missing name, another type) answers False, and the
    full evaluator decides.

    >>> check = certainly_false(inline_guard("x < 0", (lambda x: x).__code__))
    >>> check({"x": 5}), check({"x": -1}), check({"x": "5"})
    (True, False, False)
    """
    checks = [(c.name, _CMP[c.op], c.const, None if c.op in ("is", "is not") else type(c.const))
              for c in conjuncts]
    if len(checks) == 1:  # the common case, without the loop: this runs on every hit
        name, cmp, const, tp = checks[0]

        def check_one(f_locals: Mapping[str, Any]) -> bool:
            try:
                value = f_locals[name]
            except KeyError:
                return False
            return (tp is None or type(value) is tp) and not cmp(value, const)

        return check_one

    def check(f_locals: Mapping[str, Any]) -> bool:
        for name, cmp, const, tp in checks:
            try:
                value = f_locals[name]
            except KeyError:
                return False
            if tp is not None and type(value) is not tp:
                return False
            if not cmp(value, const):
                return True
        return False

    return check
