"""Retries that multiply the load: a loop of ours that calls again after a failure, with no wait between.

The alerts say the calls are amplified (more attempts than requests). In the running source of the
services, a retry loop is a ``while``/``for`` whose ``try`` leaves the loop on success (a ``return`` or
``break``) and has a handler that does not always leave (its last statement is not a
``raise``/``return``/``break``): after a failure the loop goes round again. (A loop that carries on
to the next item after a failure is a batch, not a retry.) The handler's
wait (a call to ``sleep`` and its argument) and the loop's counter (the ``for`` target, or a name the
loop adds to) are captured by a snapshot on the line that runs only when the loop retries.

The loop that retries most while watched is the amplifier (the deepest one: every attempt of an outer
loop runs the inner one again). Its retries with no wait at all (the captured wait is 0, or the handler
never sleeps) are the claim, proven there. A loop that waits between attempts is only `likely`: the
amplification is real, but a timeout, the attempt count or the peer's slowness may be what to fix.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple

from probebook.evidence.predicate import Predicate

from ..differential import captured
from ..model import Hypothesis, Verdict

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["retries", "retry_loops", "RetryLoop"]


@dataclass(frozen=True)
class RetryLoop:
    function: str  # qualified name
    line: int  # the statement that runs only when the loop goes round again (the wait, else the handler's last)
    wait: str  # the source of the sleep's argument ("" when the handler never sleeps)
    counters: Tuple[str, ...]  # the loop's counters: the for target, names the loop adds to


def _exits(stmt: ast.stmt) -> bool:
    return isinstance(stmt, (ast.Raise, ast.Return, ast.Break))


def _sleep(handler: ast.ExceptHandler) -> Optional[ast.Call]:
    for node in ast.walk(ast.Module(body=handler.body, type_ignores=[])):
        if isinstance(node, ast.Call) and node.args:
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name == "sleep":
                return node
    return None


def retry_loops(source: str) -> List[RetryLoop]:
    """The retry loops of a module's source, by function.

    >>> src = '''
    ... def call(policy):
    ...     attempt = 0
    ...     while True:
    ...         attempt += 1
    ...         try:
    ...             return send()
    ...         except IOError as err:
    ...             if attempt >= policy.max:
    ...                 raise
    ...             time.sleep(policy.backoff * attempt)
    ... '''
    >>> retry_loops(src)
    [RetryLoop(function='call', line=11, wait='policy.backoff * attempt', counters=('attempt',))]
    """
    tree = ast.parse(source)
    out: List[RetryLoop] = []

    def visit(node: ast.AST, scope: List[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = scope + [child.name]
                if not isinstance(child, ast.ClassDef):
                    out.extend(_loops_in(child, ".".join(inner), source))
                visit(child, inner)

    visit(tree, [])
    return out


def _loops_in(fn: ast.AST, qualname: str, source: str) -> List[RetryLoop]:
    found: List[RetryLoop] = []
    for loop in ast.walk(fn):
        if not isinstance(loop, (ast.While, ast.For, ast.AsyncFor)):
            continue
        counters = [n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)] if not isinstance(
            loop, ast.While) else []
        counters += [n.target.id for n in ast.walk(loop) if isinstance(n, ast.AugAssign)
                     and isinstance(n.target, ast.Name) and n.target.id not in counters]
        for t in (n for stmt in loop.body for n in ast.walk(stmt) if isinstance(n, ast.Try)):
            done = [n for stmt in t.body + t.orelse for n in ast.walk(stmt) if isinstance(n, (ast.Return, ast.Break))]
            if not done:  # success does not leave the loop: it goes on to the next item, it does not retry
                continue
            for h in t.handlers:
                if not h.body or _exits(h.body[-1]):
                    continue
                call = _sleep(h)
                wait = ast.get_source_segment(source, call.args[0]) or "" if call is not None else ""
                line = call.lineno if call is not None else h.body[-1].lineno
                found.append(RetryLoop(qualname, line, wait, tuple(counters)))
    return found


def retries(ctx: "Investigator", services: List[str]) -> Optional[Verdict]:
    """The loop of ours that retries most, and whether it waits between attempts; see the module docstring."""
    seen = ctx.watch_found(services, retry_loops, lambda loop: loop.line,
                           lambda loop: ([loop.wait] if loop.wait else []) + list(loop.counters),
                           lambda loop: f"{loop.function} retries after a failure")
    if seen is None:
        ctx.progress("no retry loop in the services' own code")
        return None
    if not seen[0][3]:
        ctx.progress("no retry loop went round while watched")
        return None
    service, file, loop, evs = seen[0]
    ids = [e["evidence_id"] for e in evs]
    counts = [v for e in evs for c in loop.counters[:1] for v in [captured(e, c)] if isinstance(v, (int, float))]
    most = f", up to attempt {int(max(counts))}" if counts else ""
    ctx.progress(f"{service}: {loop.function} went round {len(evs)} times while watched{most}")
    locus = f"{file}:{loop.function}"
    if not loop.wait:  # it never waits: every retry is immediate
        pred = Predicate(capture=loop.counters[0], op=">=", value=2) if loop.counters else None
        if pred is None:
            return Verdict("likely", service, locus, f"{loop.function} retries at once, with no wait", evidence=ids)
        return ctx.conclude("proven", service, locus, f"{loop.function} retries at once after a failure, with no "
                            f"wait between attempts ({len(evs)} retries while watched{most})", pred, ids) or \
            Verdict("likely", service, locus, f"{loop.function} retries with no wait", pred, evidence=ids)
    waits = [captured(e, loop.wait) for e in evs]
    zero = [e["evidence_id"] for e, w in zip(evs, waits) if isinstance(w, (int, float)) and w == 0]
    pred = Predicate(capture=loop.wait, op="==", value=0)
    if len(zero) >= 2 and 2 * len(zero) > len(evs):
        return ctx.conclude("proven", service, locus, f"{loop.function} retries with no backoff: it waits "
                            f"{loop.wait} = 0 s between attempts ({len(zero)} of {len(evs)} retries while "
                            f"watched{most}), so each failure is sent again at once", pred, zero) or \
            Verdict("likely", service, locus, f"{loop.function} retries with no backoff", pred, evidence=zero)
    ctx.hypotheses.append(Hypothesis(f"{loop.function} amplifies the calls ({len(evs)} retries while watched)",
                                     service, locus, score=0.4, evidence=ids[:5]))
    return Verdict("likely", service, locus, f"{loop.function} retries ({len(evs)} times while watched{most}), "
                   f"waiting {loop.wait} between attempts: the amplification is there, its cause may be the "
                   f"timeout, the attempt count or the peer's slowness", evidence=ids[:5])
