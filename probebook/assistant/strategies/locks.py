"""A function whose time is a wait for a lock that its other calls hold: the cause is what they do
while they hold it.

A latency descent can end at a function that spends its time in a call out of our code which takes
a lock: ``conn.execute("BEGIN IMMEDIATE")`` (or EXCLUSIVE, ``LOCK TABLE``, ``SELECT ... FOR UPDATE``),
``self._lock.acquire()``, ``with self._lock:``. Its calls queue for the lock, and each waits for the
sections of those before it: the wait is long because the section is. Log probes on the line that
takes the lock, on the section's first line and on the lines that give it back (``COMMIT``,
``ROLLBACK``, ``release()``, the line after a ``with``), and duration probes on the functions of ours
called inside the section, are paired per thread: each call's wait (take to first line), its hold
(first line to release, or to the function's exit), and how much of the holds each callee's calls fill.
A take that gives up (a lock timeout) counts its wait up to the exit. When one callee fills most of
the holds, and the waits and that callee's part of the holds are at least half of a call's time, the
descent goes on into that callee: what it does (a scan, a slow call) is what every waiter waits for.
"""

from __future__ import annotations

import ast
import re
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from ..codeview import callees, find_def, first_code, next_line, own_nodes

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator
    from .latency import Timing

__all__ = ["Section", "lock_sections", "pair_marks", "held_by"]

_TAKE_SQL = re.compile(r"\s*(BEGIN\s+(IMMEDIATE|EXCLUSIVE)\b|LOCK\s+TABLES?\b|SELECT\b.*\bFOR\s+(UPDATE|SHARE)\b)",
                       re.I | re.S)
_FREE_SQL = re.compile(r"\s*(COMMIT|ROLLBACK|END)\b", re.I)
_LOCKISH = re.compile(r"(lock|mutex|semaphore|sem|latch)$", re.I)
_RUN_SQL = ("execute", "exec_driver_sql", "executescript")
EXPLAINS = 0.5  # the waits and the callee's part of the holds explain at least this share of a call
FILLS = 0.6  # a callee filling this share of the holds is what the waiters wait for
_MEASURED = 3  # callees inside the section timed at once (the marks take up to five probes)


@dataclass(frozen=True)
class Section:
    """Where a function takes a lock, holds it and gives it back."""

    take: int  # the line that takes the lock (a call there waits for it)
    first: int  # the first line run with the lock held
    ends: Tuple[int, ...]  # the lines that give it back (none: the function's exit does)
    last: int  # the last line of the section: calls up to it run with the lock held
    what: str  # how it is taken, as written


def _sql(call: ast.Call, pattern: "re.Pattern[str]") -> bool:
    f = call.func
    return isinstance(f, ast.Attribute) and f.attr in _RUN_SQL and bool(call.args) and \
        isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str) and \
        bool(pattern.match(call.args[0].value))


def _lockish(node: ast.AST) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return bool(_LOCKISH.search(name.lstrip("_")))


def lock_sections(source: str, qualname: str) -> List[Section]:
    """The sections of a function that run with a lock held, in line order.

    >>> src = '''
    ... def reserve(conn, items):
    ...     conn.execute("BEGIN IMMEDIATE")
    ...     try:
    ...         for item in items:
    ...             check(conn, item)
    ...         conn.execute("COMMIT")
    ...     except BaseException:
    ...         conn.execute("ROLLBACK")
    ...         raise
    ... '''
    >>> lock_sections(src, "reserve")
    [Section(take=3, first=5, ends=(7, 9), last=9, what="conn.execute('BEGIN IMMEDIATE')")]
    >>> two = '''
    ... def move(conn):
    ...     conn.execute("BEGIN IMMEDIATE")
    ...     take(conn)
    ...     conn.execute("COMMIT")
    ...     conn.execute("BEGIN IMMEDIATE")
    ...     put(conn)
    ...     conn.execute("COMMIT")
    ... '''
    >>> [(s.take, s.ends) for s in lock_sections(two, "move")]  # the second's COMMIT is not the first's
    [(3, (5,)), (6, (8,))]
    """
    fn = find_def(source, qualname)
    nodes = own_nodes(fn)
    calls = [n for n in nodes if isinstance(n, ast.Call)]
    out: List[Section] = []
    # a later take of the same kind starts another section: the releases after it are that one's
    takes = sorted(c.lineno for c in calls if _sql(c, _TAKE_SQL) or isinstance(c.func, ast.Attribute)
                   and c.func.attr == "acquire" and _lockish(c.func.value))
    for stmt in sorted((n for n in nodes if isinstance(n, (ast.Expr, ast.With, ast.AsyncWith))),
                       key=lambda n: n.lineno):
        after = next_line(source, qualname, stmt.lineno)
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            held = [i.context_expr for i in stmt.items if _lockish(i.context_expr)]
            if held and stmt.body:
                first = first_code(stmt.body[0])
                out.append(Section(stmt.lineno, first, (after,) if after else (),
                                   stmt.end_lineno or stmt.lineno, f"with {ast.unparse(held[0])}"))
            continue
        call = stmt.value
        if not isinstance(call, ast.Call) or after is None:
            continue
        if _sql(call, _TAKE_SQL):
            ends = [c.lineno for c in calls if c.lineno > stmt.lineno and (
                _sql(c, _FREE_SQL) or isinstance(c.func, ast.Attribute) and c.func.attr in ("commit", "rollback"))]
        elif isinstance(call.func, ast.Attribute) and call.func.attr == "acquire" and _lockish(call.func.value):
            base = ast.unparse(call.func.value)
            ends = [c.lineno for c in calls if c.lineno > stmt.lineno and isinstance(c.func, ast.Attribute)
                    and c.func.attr == "release" and ast.unparse(c.func.value) == base]
        else:
            continue
        upto = next((t for t in takes if t > stmt.lineno), None)
        ends = sorted({e for e in ends if upto is None or e < upto})
        out.append(Section(stmt.lineno, after, tuple(ends), max(ends) if ends else fn.end_lineno or after,
                           ast.unparse(call)))
    return out


def pair_marks(marks: List[Tuple[float, str, str]]) -> Tuple[List[float], List[Tuple[str, float, float]]]:
    """From ``(ts, thread, mark)`` with mark ``take``/``first``/``end``/``exit`` (the function returned or
    raised): the waits (take to first, or to the exit of a take that gave up: a lock timeout) and the holds
    ``(thread, start, end)`` (first to the next end or exit), each within one thread.

    >>> pair_marks([(0.0, "a", "take"), (0.3, "a", "first"), (0.1, "b", "first"), (0.35, "a", "first"),
    ...             (0.4, "a", "end"), (0.2, "b", "end"), (0.5, "a", "take"), (1.5, "a", "exit")])
    ([0.3, 1.0], [('b', 0.1, 0.2), ('a', 0.3, 0.4)])
    """
    waits: List[float] = []
    holds: List[Tuple[str, float, float]] = []
    state: Dict[str, Tuple[str, float]] = {}
    for ts, thread, mark in sorted(marks):
        prev = state.get(thread)
        if prev and mark == "first" and prev[0] == "first":
            continue  # the first line again (a loop's head): the hold began at its first run
        if prev and mark in ("first", "exit") and prev[0] == "take":
            waits.append(ts - prev[1])
        elif prev and mark in ("end", "exit") and prev[0] == "first":
            holds.append((thread, prev[1], ts))
        state[thread] = (mark, ts)
    return waits, holds


def _filled(holds: List[Tuple[str, float, float]], evs: List[dict]) -> float:
    """The share of the holds' time that the duration events (ending at `ts`, lasting `value` ms) fill: each
    event counts its overlap with a hold of its thread, so an exit stamped a little late (the thread was
    switched out between the call's end and the event's clock) still counts for what it held.

    >>> holds = [("i/t", 0.0, 0.100)]
    >>> late = {"ts": 0.104, "value": 96.0, "instance_id": "i", "thread": "t"}  # ran 0.008-0.104, stamped late
    >>> round(_filled(holds, [late]), 2), _filled(holds, [{**late, "thread": "u"}])
    (0.92, 0.0)
    """
    total = sum(end - start for _, start, end in holds)
    inside = 0.0
    for e in evs:
        end, took = _ts(e), float(e.get("value") or 0.0) / 1000
        inside += max([min(end, stop) - max(end - took, start) for t, start, stop in holds if t == _who(e)] + [0.0])
    return min(1.0, inside / total) if total > 0 else 0.0


def _who(e: dict) -> str:
    """The thread an event ran in, in its process (thread names repeat across a service's instances)."""
    return f"{e.get('instance_id')}/{e.get('thread')}"


def _ts(e: dict) -> float:
    ts = e.get("ts")
    return ts.timestamp() if hasattr(ts, "timestamp") else float(ts or 0.0)


def held_by(ctx: "Investigator", service: str, file: str, function: str,
            top: "Timing") -> Optional[Tuple[str, str]]:
    """The callee of ours that fills the holds of the lock `function` waits for (see the module
    docstring); None when it does not wait for a lock, or no callee fills the holds."""
    if not ctx.is_plain(service, file, function):  # coroutines share one thread: marks cannot be paired
        return None
    src = ctx.text(service, file)
    try:
        sections = lock_sections(src, function)
    except (SyntaxError, ValueError):
        return None
    for sec in sections[:2]:
        inside = [c for c in callees(src, function) if sec.first <= c.line <= sec.last]
        marks = {"take": [sec.take], "first": [sec.first], "end": list(sec.ends)[:3]}
        # within the live-probe budget with the marks and the function's own probe (placing past it would
        # take away the oldest of ours: the take's mark)
        room = min(_MEASURED, ctx.tools.budget.max_live - sum(map(len, marks.values())) - 1)
        kids = list(dict.fromkeys(t for t in (ctx.resolve(service, c.name, file) for c in inside)
                                  if t and t != (file, function)))[:max(0, room)]
        probes = {(mark, line): ctx.place(service, "log", f"{file}:{line}", template=mark, rate=50, light=True)
                  for mark, lines in marks.items() for line in lines}
        exits = ctx.place(service, "metric", ctx.where(service, file, function), metric="locked_ms", rate=50)
        timed = {k: ctx.place(service, "metric", ctx.where(service, *k), metric="in_lock_ms", rate=50) for k in kids}
        ctx.pause(max(ctx.wait_s / 2, 3.0))  # the marks come with every call: half the usual window
        seen = [(_ts(e), _who(e), mark) for (mark, _), alias in probes.items() if alias
                for e in ctx.tools.events_of(alias, limit=2000)]
        done = ctx.tools.events_of(exits, limit=2000) if exits else []
        waits, holds = pair_marks(seen + [(_ts(e), _who(e), "exit") for e in done])
        fills = {k: _filled(holds, ctx.tools.events_of(a, limit=2000)) for k, a in timed.items() if a}
        for alias in [*probes.values(), exits, *timed.values()]:
            if alias:
                ctx.call("remove_probe", probe=alias)
        if len(waits) < 3 or len(holds) < 3:
            ctx.progress(f"locks: {function} took the lock at line {sec.take} ({sec.what}) too few times while "
                         f"watched ({len(waits)} waits, {len(holds)} holds)")
            continue
        # a call's time is its wait for the lock and its own hold; both are what the holds are filled with
        # (the waits are heavy-tailed: a busy handler's backoff, an unfair lock; so means, not medians)
        took = statistics.mean(e["value"] for e in done if isinstance(e.get("value"), (int, float))) \
            if len(done) >= 3 else top.total_ms / max(top.calls, 1)
        wait_ms, hold_ms = 1000 * statistics.mean(waits), 1000 * statistics.mean(h[2] - h[1] for h in holds)
        best = max(fills, key=fills.get, default=None)  # type: ignore[arg-type]
        fill = fills[best] if best is not None else 0.0
        explained = (wait_ms + fill * hold_ms) / took if took > 0 else 0.0
        ctx.progress(f"locks: {function} ({took:.1f} ms a call on average) waits {wait_ms:.1f} ms at line {sec.take} "
                     f"({sec.what}) for a lock its calls hold {hold_ms:.1f} ms; of the holds, " + (", ".join(
                         f"{k[1]} fills {100 * v:.0f}%" for k, v in fills.items()) or "no call of ours fills any"))
        if best is not None and fill >= FILLS and explained >= EXPLAINS:
            return best
        ctx.progress(f"locks: the lock and what fills it explain {100 * explained:.0f}% of {function}'s time")
    return None
