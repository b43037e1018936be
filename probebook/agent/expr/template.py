"""Log-line templates: literal text with `{expression}` parts, read in the probed frame, formatted later.

Each part is a restricted expression (`expressions.compile_expression`). A probe reads the parts'
values at the hit (`Template.read`) and may leave the formatting to another thread
(`Template.finish`); a part that fails renders inline as `{source: reason}`, never raises.

>>> compile_template("total={total} ok={{x}}").render({"total": 7}, {}, repr)
'total=7 ok={x}'
"""

from __future__ import annotations

import keyword
from typing import Any, Callable, List, Mapping, Optional, Tuple, Union

from probebook.errors import ExpressionError, OverBudget

from ..capture.safe_access import MISSING, safe_getattr
from .compiler import LITERAL_TYPES
from .expressions import Expression, compile_expression, exception_message, never_redacted
from .work import arm

__all__ = ["Template", "compile_template"]

# immutable builtins whose formatting runs no user code: a template keeps them to format later
# each part is formatted on the host's thread at every hit: a template's size bounds that work
MAX_TEMPLATE_CHARS = 4000
MAX_TEMPLATE_PARTS = 32
_KEPT = frozenset(id(t) for t in LITERAL_TYPES)  # type ids: hashing a type could run a metaclass __hash__


class Template:
    """A log-line template: literal text with `{expression}` parts; `{{` and `}}` are literal braces.

    >>> t = compile_template("user={user} n={len(items)}")
    >>> t.render({"user": "ann", "items": [1]}, {}, str)
    'user=ann n=1'
    """

    __slots__ = ("source", "expressions", "evaluates", "_parts", "_reads")

    def __init__(self, source: str, parts: List[Union[str, Expression]]) -> None:
        self.source = source
        self._parts = parts
        self.expressions: Tuple[Expression, ...] = tuple(p for p in parts if isinstance(p, Expression))
        # a part that is a bare name (`{user}`, the common case) is a dict read of the frame's
        # locals: the same answer as evaluating it, without the evaluator's calls
        # likewise `{order.total}`: a read of the root, then attribute reads without the evaluator
        self._reads = tuple((e, *(_dotted(e.source) or (None, ()))) for e in self.expressions)
        # whether a part runs the evaluator (and so a probe arms the work budget for it): not for dotted reads
        self.evaluates = any(root is None for _, root, _ in self._reads)

    def render(self, f_locals: Mapping[str, Any], f_globals: Mapping[str, Any],
               format_value: Callable[[Any], str]) -> str:
        """The text; a part that fails renders inline as `{source: reason}`; raises only `OverBudget`."""
        arm(self.expressions[0]._redacted if self.expressions else None)
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
                    value = part.run(f_locals, f_globals)
                else:
                    for attr in attrs:
                        value = safe_getattr(value, attr)
            except OverBudget:
                raise  # the hit stops here and the probe is disabled (ProbeRuntime)
            except Exception as exc:  # EvaluationError, or UnsafeAccess from an attribute
                out.append((_failed(part, exc),))
                continue
            tp = type(value)
            if keep_chars and id(tp) in _KEPT:
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
                     is_redacted_name: Callable[[str], bool] = never_redacted) -> Template:
    """Split a template into text and expressions, compiling each like `compile_expression`.

    >>> compile_template("total={cart.total} {{literal}}").expressions
    (Expression('cart.total'),)
    """
    if not isinstance(template, str):
        raise ExpressionError(f"{field}: a template must be a string, not {type(template).__name__}", field)
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ExpressionError(f"{field}: the template is {len(template)} characters; the limit is "
                              f"{MAX_TEMPLATE_CHARS}", field)
    parts: List[Union[str, Expression]] = []
    text: List[str] = []
    expressions = 0
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
            if expressions >= MAX_TEMPLATE_PARTS:
                raise ExpressionError(f"{field}: more than {MAX_TEMPLATE_PARTS} {{expressions}} in one template; "
                                      f"capture the rest with a snapshot probe", field)
            expressions += 1
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
