"""What crosses between services, read from the running source: where a service answers an HTTP
status (a ``return`` or ``raise`` holding the number) and where it builds or reads a named field of a
payload. The errors strategies use it to follow a failure from the service that answered it to the
service whose value caused it.
"""

from __future__ import annotations

import ast
import re
from typing import List, Optional, Tuple

from .codeview import PURE_CALLS, _defs, _dotted, assigned_from, guarded, names_in, own_nodes

__all__ = ["answers", "field_sites", "field_reads", "read_of", "URL_HOST"]

URL_HOST = re.compile(r"\bhttps?://[^\s/'\"?#]+")  # a URL's scheme and host[:port], in any text: where a call goes


def answers(source: str, status: int) -> List[tuple]:
    """``(function, line, statement, test text, test line)`` of each ``return`` or ``raise`` in the file
    whose expression holds the integer `status` (``return Response(422, ...)``, ``raise
    HTTPException(status_code=422)``), not as a side of a comparison (``return status >= 502`` tests
    a status, it does not answer one): where a service may answer that status.

    >>> answers("def f(x):\\n    if x < 0:\\n        return {'e': 1}, 422\\n    return x", 422)
    [('f', 3, "({'e': 1}, 422)", 'x < 0', 2)]
    """
    def pick(node: ast.AST) -> Optional[str]:
        value = node.value if isinstance(node, ast.Return) else node.exc if isinstance(node, ast.Raise) else None
        if value is None:
            return None
        compared = {id(c) for n in ast.walk(value) if isinstance(n, ast.Compare) for c in ast.walk(n)}
        if any(isinstance(c, ast.Constant) and type(c.value) is int and c.value == status
                                     and id(c) not in compared for c in ast.walk(value)):
            return ast.unparse(value) if hasattr(ast, "unparse") else "?"
        return None
    return [(qual, *row) for qual, node in _defs(source) for row in guarded(node, pick)]


def field_sites(source: str, field: str) -> List[tuple]:
    """``(function, line, value expression)`` of each dict entry keyed `field` the file builds
    (``{"currency": cur}``, ``dict(currency=cur)``); the line is the statement's first, where a probe
    sees the value's names bound.

    >>> field_sites("def f(u):\\n    c = u['c'].lower()\\n    return {'id': 1,\\n            'c': c}", "c")
    [('f', 3, 'c')]
    """
    out: List[tuple] = []
    for qual, fn in _defs(source):
        for stmt in own_nodes(fn):
            if not isinstance(stmt, ast.stmt) or hasattr(stmt, "body"):  # simple statements of its own body
                continue
            for node in ast.walk(stmt):
                values = []
                if isinstance(node, ast.Dict):
                    values = [v for k, v in zip(node.keys, node.values)
                              if isinstance(k, ast.Constant) and k.value == field]
                elif isinstance(node, ast.Call) and _dotted(node.func) == "dict":
                    values = [kw.value for kw in node.keywords if kw.arg == field]
                out += [(qual, stmt.lineno, ast.unparse(v)) for v in values if hasattr(ast, "unparse")]
    return sorted(set(out), key=lambda r: (r[1], r[2]))


def _item_read(node: ast.AST) -> Optional[Tuple[str, ast.AST]]:
    """``(field, what it is read from)`` when `node` reads an item by name: ``x.get("k", ...)``, ``x["k"]``."""
    key, base = None, None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
            and node.args and isinstance(node.args[0], ast.Constant):
        key, base = node.args[0].value, node.func.value
    elif isinstance(node, ast.Subscript) and isinstance(getattr(node, "slice", None), ast.Constant):
        key, base = node.slice.value, node.value
    return (key, base) if isinstance(key, str) and base is not None else None


def field_reads(source: str, qualname: str, expression: str, field: str) -> List[str]:
    """Where `expression`, or a name it is assigned from in the function, reads the item `field` of
    something (``body.get("currency", "USD")``, ``req["currency"]``), as source text. A value read under
    the name it is sent on under is passed on, not made.

    >>> field_reads("def f(body):\\n    cur = str(body.get('currency', 'USD'))\\n    return cur", "f", "cur",
    ...             "currency")
    ["body.get('currency', 'USD')"]
    """
    seen, todo, out = set(), [expression], []
    while todo:
        try:
            tree = ast.parse(todo.pop(), mode="eval")
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            read = _item_read(node)
            if read is not None and read[0] == field and hasattr(ast, "unparse") and ast.unparse(node) not in out:
                out.append(ast.unparse(node))
        for name in names_in(ast.unparse(tree) if hasattr(ast, "unparse") else ""):
            if name not in seen:
                seen.add(name)
                todo += [e for _, e in assigned_from(source, qualname, name)]
    return out


def read_of(expression: str) -> Tuple[Optional[str], Optional[str]]:
    """``(field, name)`` when `expression` is an item read of a name, through conversions and defaults;
    ``(None, None)`` otherwise.

    >>> read_of('str(body.get("currency", "") or "USD")'), read_of("price * qty")
    (('currency', 'body'), (None, None))
    """
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return None, None
    while True:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in PURE_CALLS \
                and len(node.args) == 1:
            node = node.args[0]
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            node = node.values[0]
        else:
            break
    read = _item_read(node)
    if read is None or not isinstance(read[1], ast.Name):
        return None, None
    return read[0], read[1].id
