"""An error swallowed under a log line: the reporter quotes a message ("the worker logs 'job failed,
will retry' with no reason"), the running source holds it inside an ``except`` handler that never
reads what it caught, so no log, metric or trace says what failed.

Exception probes on the functions of ours the ``try`` calls capture the exception as it passes, with
every frame; the innermost function of ours in those frames is where it was raised. When a call out
of our code raised it there (a full disk, a refused connection), the claim (its message) is proven
at that function. When our own ``raise`` did (a pool that timed out, a check that failed), the
raise is a symptom and nothing is claimed here. A message logged with its exception is left to the errors strategy,
which follows the bad value to where it is made.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from probebook.errors import ProbebookError
from probebook.evidence.predicate import Predicate, holds
from probebook.protocol.capture_tree import plain

from ..codeview import enclosing, find_text, handler_at
from ..entrypoints import innermost_ours
from ..model import Verdict

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["logged", "quotes"]

_QUOTED = re.compile(r"'([^']{6,160})'|\"([^\"]{6,160})\"|\u2018([^\u2019]{6,160})\u2019|\u201c([^\u201d]{6,160})\u201d")
_FIELDS = re.compile(r"(\s+\w+=\S*)+$")  # `request failed error=TypeError`: the message, then its fields


def quotes(text: str) -> List[str]:
    """The log messages a text quotes, without the key=value fields a structured log appends.

    >>> quotes("the worker logs 'job failed, will retry' and \\"request failed error=TypeError\\"")
    ['job failed, will retry', 'request failed']
    """
    out = []
    for groups in _QUOTED.findall(text):
        q = _FIELDS.sub("", next(g for g in groups if g)).strip()
        if len(q) >= 6 and q not in out:
            out.append(q)
    return out


def logged(ctx: "Investigator", services: List[str], text: str) -> Optional[Verdict]:
    """Where the error swallowed under a quoted log line is raised; None when no quote is such a line."""
    said = quotes(text)
    for service in services if said else []:
        for file in ctx.app_files(service):
            try:
                src = ctx.text(service, file)
            except ProbebookError:
                continue
            for q in said:
                for line in find_text(src, f'"{q}') + find_text(src, f"'{q}"):
                    fn = enclosing(src, line)
                    handler = handler_at(src, fn.qualname, line) if fn else None
                    if fn is None or handler is None or not handler[2]:
                        continue
                    ctx.progress(f"{service}: {fn.qualname} logs {q!r} in an except handler that drops what "
                                 f"it caught ({file}:{line})")
                    found = _raised(ctx, service, file, fn.qualname, handler[1])
                    if found is not None:
                        return found
    return None


def _raised(ctx: "Investigator", service: str, file: str, fn: str, tried: List[str]) -> Optional[Verdict]:
    targets = list(dict.fromkeys(t for t in (ctx.resolve(service, name, file) for name in tried) if t))
    if not targets:
        ctx.progress(f"{fn}: its try calls no function of ours to watch")
        return None
    probes = [ctx.place(service, "exception", ctx.where(service, tfile, tfunc), rate=20) for tfile, tfunc in targets[:4]]
    sites: Dict[Tuple[str, str], List[dict]] = {}
    for alias in probes:
        for e in ctx.events(alias, 3):
            inner = innermost_ours(e.get("frames") or [])
            if inner is not None:
                sites.setdefault((inner["file"], inner["function"]), []).append(e)
    if not sites:
        ctx.progress(f"{fn}: nothing was raised through {', '.join(t[1] for t in targets[:4])} while watched")
        return None
    (rfile, rfunc), evs = max(sites.items(), key=lambda kv: len(kv[1]))
    line = (innermost_ours(evs[0]["frames"]) or {}).get("line") or 0
    lines = ctx.text(service, rfile).splitlines()
    at = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    if at.startswith("raise"):  # our own rule refused (a pool timed out, a check failed): a symptom, not a cause
        ctx.progress(f"{rfunc} raises {evs[0].get('exc_type')} by its own rule ({at[:80]}): what makes it do so "
                     f"is elsewhere")
        return None
    message = str(plain(evs[0].get("message")) or "")
    words = re.findall(r"[A-Za-z][A-Za-z ,.-]{5,}[A-Za-z]", message)  # the words, not the path or the number
    stable = max(words, key=len)[:80] if words else message[:80]
    pred = Predicate(field="message", op="contains", value=stable)
    ids = [e["evidence_id"] for e in evs if holds(pred, e)]
    ctx.progress(f"{service}: {len(evs)} x {evs[0].get('exc_type')} raised in {rfunc}: {message[:120]}")
    return ctx.conclude("proven", service, f"{rfile}:{rfunc}",
                        f"{rfunc} raises {evs[0].get('exc_type')} ({message[:100]}); {fn} catches it and logs a line "
                        f"without it, so nothing else says what failed", pred, ids)
