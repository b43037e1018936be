"""Reading the code a service runs, as the assistant needs it: the functions of a file, the calls a
function makes, the function that holds a line, where a text appears. Pure functions over the source
text the agent returned (`Investigation.source_file`), so what is read is what runs, not a checkout.

>>> src = '''
... class Quota:
...     def left(self, factor):
...         used = self.used()
...         return max(self.limit * factor - used, 0)
...     def used(self):
...         return len(self.events)
... '''
>>> [(f.qualname, f.start, f.end) for f in functions(src)]
[('Quota.left', 3, 5), ('Quota.used', 6, 7)]
>>> [c.name for c in callees(src, "Quota.left")]
['self.used', 'max']
>>> enclosing(src, 5).qualname
'Quota.left'
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import Callable, List, Optional, Union

__all__ = ["FunctionInfo", "Call", "functions", "callees", "enclosing", "find_text", "raises", "assigned_from",
           "returns", "names_in", "operands", "reads_into", "handlers", "argument_for",
           "passes_through", "next_line", "reads_state", "local_names", "waits",
           "SourceError", "guarded", "literals", "handler_at",
           "called_in", "own_nodes", "looped", "PURE_CALLS"]


_BUILTINS = set(dir(builtins))


class SourceError(ValueError):
    """The text is not Python this interpreter can parse, or the function is not in it."""


@dataclass(frozen=True)
class FunctionInfo:
    qualname: str
    start: int  # the `def` line (decorators excluded)
    end: int
    is_async: bool = False
    params: tuple = ()
    is_generator: bool = False  # a call returns before its body runs: its duration spans every resume


@dataclass(frozen=True)
class Call:
    name: str  # as written: ``self.store.get``, ``urlopen``
    line: int
    awaited: bool = False


_Def = Union[ast.FunctionDef, ast.AsyncFunctionDef]

# calls that compute in the process from their arguments alone: a value made with them is made here,
# and time spent in them is the caller's own work. Nothing that iterates or reads attributes (a user's
# generator or property may do I/O), nothing that reads files or code.
PURE_CALLS = {"abs", "bool", "chr", "complex", "divmod", "float", "format", "hash", "hex", "int", "isinstance",
              "issubclass", "len", "oct", "ord", "pow", "range", "repr", "round", "str", "Decimal"}


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise SourceError(f"cannot parse the source: {exc.msg} at line {exc.lineno}") from None


def _walk(node: ast.AST, prefix: str, out: List[tuple]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            qual = f"{prefix}{child.name}"
            out.append((qual, child))
            _walk(child, f"{qual}.<locals>.", out)
        elif isinstance(child, ast.ClassDef):
            _walk(child, f"{prefix}{child.name}.", out)
        else:
            _walk(child, prefix, out)


def _defs(source: str) -> List[tuple]:
    out: List[tuple] = []
    _walk(_parse(source), "", out)
    return out


def _info(qual: str, node: _Def) -> FunctionInfo:
    args = node.args
    names = [a.arg for a in (*getattr(args, "posonlyargs", ()), *args.args, *args.kwonlyargs)]
    gen = any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in own_nodes(node))
    return FunctionInfo(qual, node.lineno, getattr(node, "end_lineno", node.lineno) or node.lineno,
                        isinstance(node, ast.AsyncFunctionDef), tuple(names), gen)


def own_nodes(node: ast.AST) -> List[ast.AST]:
    """`node` and what it holds, not what functions, lambdas or classes inside it hold."""
    out, todo = [], [node]
    while todo:
        n = todo.pop()
        out.append(n)
        todo += [c for c in ast.iter_child_nodes(n)
                 if not isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))]
    return out


def functions(source: str) -> List[FunctionInfo]:
    """Every function and method in the file, in source order, with qualified names."""
    return [_info(q, n) for q, n in _defs(source)]


def find_def(source: str, qualname: str) -> _Def:
    for q, node in _defs(source):
        if q == qualname:
            return node
    short = [q for q, _ in _defs(source) if q.split(".")[-1] == qualname.split(".")[-1]]
    hint = f"; did you mean {', '.join(short[:3])}" if short else ""
    raise SourceError(f"no function {qualname!r} in this file{hint}")


def _dotted(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else f"?.{node.attr}"
    if isinstance(node, ast.Call):
        base = _dotted(node.func)
        return f"{base}()" if base else None
    return None


def callees(source: str, qualname: str) -> List[Call]:
    """The calls `qualname`'s own body makes (not those of nested functions), in line order."""
    fn = find_def(source, qualname)
    awaited = {id(n.value) for n in ast.walk(fn) if isinstance(n, ast.Await)}
    calls: List[Call] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Call):
                name = _dotted(child.func)
                if name:
                    calls.append(Call(name, child.lineno, id(child) in awaited))
            visit(child)

    for stmt in fn.body:
        if isinstance(stmt, ast.Call):  # pragma: no cover - a body holds statements
            continue
        visit(ast.Module(body=[stmt], type_ignores=[]))
    calls.sort(key=lambda c: c.line)
    return calls


def looped(source: str, qualname: str) -> set:
    r"""Lines of the calls the function makes in a loop or a comprehension (how often they run, the
    source does not say).

    >>> sorted(looped("def f(xs):\n    g()\n    return [k(x) for x in xs]", "f"))
    [3]
    """
    fn = find_def(source, qualname)
    loops = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
    return {c.lineno for n in ast.walk(fn) if isinstance(n, loops) for c in ast.walk(n) if isinstance(c, ast.Call)}


def enclosing(source: str, line: int) -> Optional[FunctionInfo]:
    """The innermost function whose body holds `line`."""
    best: Optional[FunctionInfo] = None
    for q, node in _defs(source):
        info = _info(q, node)
        if info.start <= line <= info.end and (best is None or info.start >= best.start):
            best = info
    return best


def find_text(source: str, text: str) -> List[int]:
    """Line numbers (1-based) whose text contains `text`."""
    return [i for i, ln in enumerate(source.splitlines(), 1) if text in ln]


def guarded(fn: ast.AST, pick: Callable[[ast.AST], Optional[str]]) -> List[tuple]:
    """``(line, what pick said, test text, test line)`` of each statement of the function's own body that
    `pick` names; the test is the source of the innermost ``if`` whose body holds it (what must hold
    for it to happen), empty when none does."""
    out: List[tuple] = []

    def visit(node: ast.AST, guard: str, gline: int) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.If):
                test = ast.unparse(child.test) if hasattr(ast, "unparse") else ""
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), test, child.lineno)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), "", 0)
                continue
            what = pick(child)
            if what is not None:
                out.append((child.lineno, what, guard, gline))
            visit(child, guard, gline)

    visit(fn, "", 0)
    return sorted(out)


def raises(source: str, qualname: str) -> List[tuple]:
    """``(line, exception name, test text, test line)`` of each ``raise`` in the function; the test is
    the source of the innermost ``if`` whose body holds the raise (what must hold for it to happen)."""
    def pick(node: ast.AST) -> Optional[str]:
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            return _dotted(exc) or "?"
        return None
    return guarded(find_def(source, qualname), pick)


def assigned_from(source: str, qualname: str, name: str) -> List[tuple]:
    """``(line, expression text)`` of each binding of `name` in the function: assignments, ``with ... as
    name`` (the context expression) and ``for name in ...`` (the iterable)."""
    fn = find_def(source, qualname)
    out = []
    text = getattr(ast, "unparse", lambda n: "")
    for node in ast.walk(fn):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_binds(t, name) for t in targets):
                out.append((node.lineno, text(node.value)))
        elif isinstance(node, (ast.With, ast.AsyncWith)):  # `with open_thing() as name:`
            out += [(node.lineno, text(i.context_expr)) for i in node.items
                    if i.optional_vars is not None and _binds(i.optional_vars, name)]
        elif isinstance(node, (ast.For, ast.AsyncFor)) and _binds(node.target, name):
            out.append((node.lineno, text(node.iter)))
    return sorted(out)


def _binds(target: ast.AST, name: str) -> bool:
    if isinstance(target, ast.Name):
        return target.id == name
    if isinstance(target, (ast.Tuple, ast.List)):
        return any(_binds(t, name) for t in target.elts)
    return False


def returns(source: str, qualname: str) -> List[tuple]:
    """``(line, expression text)`` of each ``return <expr>`` in the function's own body."""
    fn = find_def(source, qualname)
    out = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Return) and child.value is not None:
                out.append((child.lineno, ast.unparse(child.value) if hasattr(ast, "unparse") else ""))
            visit(child)

    visit(fn)
    return sorted(out)


def argument_for(source: str, qualname: str, line: int, callee: str, params: tuple, param: str) -> Optional[str]:
    """The source of the argument that `qualname`, at `line`, passes as `param` to a call of `callee`
    (matched by its last name; `params` are the callee's parameter names, ``self`` included)."""
    fn = find_def(source, qualname)
    for node in ast.walk(fn):
        if not (isinstance(node, ast.Call) and node.lineno <= line <= (getattr(node, "end_lineno", line) or line)):
            continue
        name = _dotted(node.func) or ""
        if name.split(".")[-1] != callee:
            continue
        for kw in node.keywords:
            if kw.arg == param:
                return ast.unparse(kw.value) if hasattr(ast, "unparse") else None
        names = [p for p in params if p not in ("self", "cls")] if isinstance(node.func, ast.Attribute) else list(params)
        if param in names and names.index(param) < len(node.args):
            arg = node.args[names.index(param)]
            return ast.unparse(arg) if hasattr(ast, "unparse") else None
    return None


def operands(expression: str) -> List[str]:
    """The non-constant sides of each comparison in a condition, as source text, in order
    (``resp.status >= 500 and not ok`` -> ``resp.status``); the names for a bare truth test."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return []
    out: List[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if not isinstance(side, ast.Constant) and hasattr(ast, "unparse"):
                    text = ast.unparse(side)
                    if text not in out:
                        out.append(text)
    return out


def handlers(source: str, qualname: str) -> List[tuple]:
    """``(line, name, calls)`` of each ``except ... as name`` in the function's own body: the line of the
    handler's first statement (where a probe sees `name` bound) and the calls its ``try`` body makes."""
    fn = find_def(source, qualname)
    out = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Try):
            tried = [_dotted(c.func) for stmt in node.body for c in ast.walk(stmt) if isinstance(c, ast.Call)]
            for h in node.handlers:
                if h.name and h.body:
                    out.append((h.body[0].lineno, h.name, [t for t in tried if t]))
    return sorted(out)


def handler_at(source: str, qualname: str, line: int) -> Optional[tuple]:
    """``(name, calls, swallowed)`` of the innermost ``except`` handler of the function whose body holds
    `line`: the name it binds ("" for none), the calls its ``try`` body makes, and whether its body
    never reads the exception (what was caught leaves no trace); None when no handler holds it."""
    best = None
    for node in ast.walk(find_def(source, qualname)):
        if isinstance(node, ast.Try):
            for h in node.handlers:
                end = getattr(h, "end_lineno", None) or h.lineno
                if h.body and h.body[0].lineno <= line <= end and (best is None or h.lineno > best[0]):
                    tried = [_dotted(c.func) for stmt in node.body for c in ast.walk(stmt) if isinstance(c, ast.Call)]
                    used = any(isinstance(n, ast.Name) and n.id == h.name for b in h.body for n in ast.walk(b))
                    best = (h.lineno, h.name or "", [t for t in tried if t], not used)
    return best[1:] if best else None


def passes_through(expression: str, params: tuple) -> bool:
    """Is the expression only a parameter, or a part of one (``items``, ``cart.lines[0]``)? Then a value
    bound from it was made by the caller, not here."""
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return False
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Name) and node.id in params


def next_line(source: str, qualname: str, line: int) -> Optional[int]:
    """The first line of the statement that runs after the one at `line` in the same block (reached only
    when that statement completes; for an ``if`` whose body returns, only when its test was false), or
    None when it is the last of its block."""
    fn = find_def(source, qualname)
    for node in ast.walk(fn):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            for i, stmt in enumerate(block):
                end = getattr(stmt, "end_lineno", stmt.lineno) or stmt.lineno
                if isinstance(stmt, ast.stmt) and (stmt.lineno == line or stmt.lineno <= line <= end
                                                   and not hasattr(stmt, "body")):
                    return first_code(block[i + 1]) if i + 1 < len(block) else None
    return None


def first_code(stmt: ast.stmt) -> int:
    """The first line of `stmt` that runs code: a ``try:`` line runs none, its body's first does."""
    while isinstance(stmt, ast.Try) and stmt.body:
        stmt = stmt.body[0]
    return stmt.lineno


def literals(source: str, qualname: str) -> List[str]:
    """The string constants in the function's own body, in source order (a path a client is called with)."""
    found = [n for n in own_nodes(find_def(source, qualname)) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return [n.value for n in sorted(found, key=lambda n: (n.lineno, n.col_offset))]


def called_in(source: str, qualname: str, expressions: List[str]) -> List[str]:
    """The calls the function makes (as written: ``self.prices.price``) whose name is called in one of
    `expressions`: what made a value bound from them."""
    return [c.name for c in callees(source, qualname) if any(c.name.split(".")[-1] + "(" in e for e in expressions)]


def waits(source: str, qualname: str) -> List[str]:
    """Where the function's own body may wait without a call of ours to show for it: ``await``s and
    ``with`` on an object rather than a call (a lock). Their time looks like the function's own."""
    fn = find_def(source, qualname)
    text = getattr(ast, "unparse", lambda n: "?")
    out: List[str] = []
    for n in ast.walk(fn):
        if isinstance(n, ast.Await):
            out.append(f"await {text(n.value)}")
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            out += [f"with {text(i.context_expr)}" for i in n.items if not isinstance(i.context_expr, ast.Call)]
    return out


def local_names(source: str, qualname: str) -> tuple:
    """Parameters and every name the function binds: what is not among them is a global."""
    fn = find_def(source, qualname)
    names = set(_info(qualname, fn).params)
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
    return tuple(sorted(names))


def reads_state(expression: str, local_names: tuple = ()) -> bool:
    """Does the expression read state rather than compute: an attribute, an item, or a global name
    (not a local, not a builtin)? ``CONFIG["rate"]``, ``self.rate`` and ``RATE`` read state;
    ``subtotal * (1 - rate)`` computes (with `subtotal` and `rate` local)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        return True
    for n in ast.walk(tree):
        if isinstance(n, (ast.Attribute, ast.Subscript)):
            return True
        if isinstance(n, ast.Name) and n.id not in local_names and n.id not in _BUILTINS:
            return True
    return False


def reads_into(expression: str) -> bool:
    """Does the expression read an attribute, an item or call something (a value made elsewhere), rather
    than compute only with names and constants (``n % 7``: computed here)?"""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return True
    return any(isinstance(n, (ast.Attribute, ast.Subscript, ast.Call)) for n in ast.walk(tree))


def names_in(expression: str) -> List[str]:
    """Bare names an expression reads, in order (``total < 0 or rate > 1`` -> total, rate)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        return []
    seen: List[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in seen:
            seen.append(node.id)
    return seen
