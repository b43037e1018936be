"""A pool drained by a path that never gives back what it took (a connection leak).

The alerts say a pool (connections, workers, slots) is saturated. In the running source of the
services, a function that takes a resource into a name (``conn = self.pool.acquire()``) and leaves by
a ``return``/``raise`` on a path that never gives it back (no ``release(conn)``/``conn.close()``
before it on that path, and no ``finally`` around it that does), while another path does give it
back, is a leak path. Each is watched with a
snapshot on the leaving line that captures the pool; the pool's fields say how full it is (a count
in use against a size). A leak path that runs while the pool is full is proven there; one that runs
without the pool's fields telling how full it is stays `likely`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from probebook.evidence.predicate import Predicate, holds

from ..differential import captured, is_number
from ..model import Verdict

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["leaks", "leak_paths", "LeakPath"]

TAKE = ("acquire", "checkout", "check_out", "getconn", "get_connection", "borrow", "lease", "open_connection")
GIVE = ("release", "putconn", "checkin", "check_in", "put", "close", "give_back", "return_connection", "free")
_USED = ("in_use", "used", "busy", "checked_out", "leased", "active", "taken", "borrowed")
_SIZE = ("size", "max_size", "maxsize", "capacity", "limit", "max_connections", "pool_size", "maxconn")


@dataclass(frozen=True)
class LeakPath:
    function: str  # qualified name
    took: int  # the line that takes the resource
    line: int  # the return or raise that leaves with the resource
    name: str  # the local that holds the resource
    pool: str  # the source of what it was taken from ("self.pool")


def _gives(node: ast.AST, name: str) -> bool:
    """Does `node` hold a call that gives `name` back (``pool.release(name)``, ``name.close()``)?"""
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        f = call.func
        if not isinstance(f, ast.Attribute) or f.attr not in GIVE:
            continue
        if (isinstance(f.value, ast.Name) and f.value.id == name) or any(
                isinstance(a, ast.Name) and a.id == name for a in call.args):
            return True
    return False


def _taken(stmt: ast.stmt) -> Optional[Tuple[str, str]]:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
            and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Attribute) \
            and stmt.value.func.attr in TAKE:
        return stmt.targets[0].id, ast.unparse(stmt.value.func.value)
    return None


def _exits(body: List[ast.stmt], name: str, covered: bool, out: List[int]) -> None:
    """The lines of the returns/raises in `body` (and blocks within) reached with `name` still taken."""
    for i, stmt in enumerate(body):
        if covered or any(_gives(prev, name) for prev in body[:i]):
            return
        if isinstance(stmt, (ast.Return, ast.Raise)):
            out.append(stmt.lineno)
            return
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(stmt, ast.Try):
            safe = any(_gives(s, name) for s in stmt.finalbody)
            for block in [stmt.body, stmt.orelse] + [h.body for h in stmt.handlers]:
                _exits(block, name, safe, out)
            continue
        for field in ("body", "orelse"):
            block = getattr(stmt, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                _exits(block, name, False, out)


def leak_paths(source: str) -> List[LeakPath]:
    """The paths of a module's source that leave a function with a taken resource.

    >>> src = '''
    ... class Orders:
    ...     def create(self, sku):
    ...         conn = self.pool.acquire()
    ...         try:
    ...             self.reserve(sku)
    ...         except SoldOut:
    ...             return 409
    ...         try:
    ...             conn.execute("insert")
    ...         finally:
    ...             self.pool.release(conn)
    ...         return 201
    ... '''
    >>> leak_paths(src)
    [LeakPath(function='Orders.create', took=4, line=8, name='conn', pool='self.pool')]
    """
    out: List[LeakPath] = []

    def visit(node: ast.AST, scope: List[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qual = ".".join(scope + [child.name])
                for i, stmt in enumerate(child.body):
                    took = _taken(stmt)
                    if took is not None and _gives(child, took[0]):  # given back on some path, not on all
                        lines: List[int] = []
                        _exits(child.body[i + 1:], took[0], False, lines)
                        out.extend(LeakPath(qual, stmt.lineno, line, took[0], took[1]) for line in lines)
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, scope + [child.name])

    visit(ast.parse(source), [])
    return out


def _claim(path: LeakPath, evs: List[Dict[str, Any]]) -> Optional[str]:
    """``pool.in_use >= pool.size`` from the pool the events captured, when its fields have a count and a size."""
    return next((c for c in (_fullness(path.pool, captured(e, path.pool)) for e in evs) if c), None)


def _fullness(pool: str, value: Any) -> Optional[str]:
    fields: Dict[str, Any] = value if isinstance(value, dict) else {}
    nums = {k: v for k, v in fields.items() if is_number(v)}
    used = next((k for k in nums if k.lower().lstrip("_") in _USED), None)
    size = next((k for k in nums if k.lower().lstrip("_") in _SIZE), None)
    return f"{pool}.{used} >= {pool}.{size}" if used and size else None


def leaks(ctx: "Investigator", services: List[str]) -> Optional[Verdict]:
    """The leak path that runs while its pool is full; see the module docstring."""
    seen = ctx.watch_found(services, leak_paths, lambda path: path.line, lambda path: [path.pool],
                           lambda path: f"{path.function} leaves with {path.name} from {path.pool} still taken")
    if seen is None:
        ctx.progress("no path of the services' own code leaves with a resource it took")
        return None
    if not seen[0][3]:
        return _full_already(ctx, seen[0][0], seen[0][1], seen[0][2])
    service, file, path, evs = seen[0]
    locus = f"{file}:{path.function}"
    ctx.progress(f"{service}: {path.function} left by line {path.line} {len(evs)} times while watched, keeping "
                 f"{path.name}")
    claim = _claim(path, evs)
    ids = [e["evidence_id"] for e in evs]
    if claim is None:
        return Verdict("likely", service, locus, f"{path.function} never gives back {path.name} when it leaves by "
                       f"line {path.line} ({len(evs)} times while watched)", evidence=ids[:5])
    alias = ctx.place(service, "snapshot", f"{file}:{path.line}", capture=[claim], rate=20, light=True)
    pred = Predicate(capture=claim, op="==", value=True)
    got = [e for e in ctx.events(alias, 12) if holds(pred, e)]  # the pool fills one leak at a time
    cause = (f"{path.function} leaves by line {path.line} without giving back {path.name} (taken from "
             f"{path.pool}); it ran {len(evs)} times while watched, and there {claim}: the pool is full")
    return ctx.conclude("proven", service, locus, cause, pred, [e["evidence_id"] for e in got]) or \
        Verdict("likely", service, locus, cause, pred, evidence=ids[:5])


def _full_already(ctx: "Investigator", service: str, file: str, path: LeakPath) -> Optional[Verdict]:
    """No leak path ran: a full pool stops every caller at the take, so the leak cannot run again. The
    pool is captured where the first leaking function takes from it; full there, the leak path is the
    `likely` cause (caught in the act only after the pool is freed: a restart, with the probe placed)."""
    alias = ctx.place(service, "snapshot", f"{file}:{path.took}", capture=[path.pool], rate=20, light=True)
    evs = ctx.events(alias, 2)
    claim = _claim(path, evs)
    if claim is None:
        ctx.progress("no leaking path ran while watched, and the pool's fields do not say it is full")
        return None
    ctx.progress(f"{service}: no leaking path ran while watched; where {path.function} takes from {path.pool}, "
                 f"{claim}")
    return Verdict("likely", service, f"{file}:{path.function}", f"{path.function} leaves by line {path.line} "
                   f"without giving back {path.name} (taken from {path.pool}), and the pool is full now ({claim} "
                   f"where it takes): the leak cannot run again until connections are freed, so it is not caught "
                   f"in the act", Predicate(capture=claim, op="==", value=True),
                   evidence=[e["evidence_id"] for e in evs[:5]],
                   mitigation=f"restart {service} to free the pool; release {path.name} on every path of "
                              f"{path.function} (a with block or finally)",
                   check=f"after the restart, a probe at line {path.line} shows the path runs and {claim} never holds",
                   after_restart={"where": f"{file}:{path.line}", "capture": [claim],
                                  "cause": f"{path.function} leaves by line {path.line} without giving back "
                                           f"{path.name} (taken from {path.pool}); after the restart it ran again, "
                                           f"and there {claim}: the leak took the pool's last connection"})
