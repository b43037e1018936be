"""The quiet check: nothing fires and the reporter names no symptom. The requests the services
handle are measured at their entry points; when enough of them complete without raising, the
answer is `no-fault`, with those calls as its evidence (the gate wants at least 20)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, List, Optional

from probebook.evidence.predicate import Predicate

from ..entrypoints import is_app_file
from ..model import Verdict
from ..proof import NO_FAULT_MIN_HITS

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["quiet", "route_literals"]

_ROUTE = re.compile(r"""['"](/[A-Za-z0-9_\-/{}<>:.]*)['"]""")


def route_literals(text: str, limit: int = 5) -> List[str]:
    """String literals of a file that look like request paths (``"/orders"``), in order.

    >>> route_literals('app.add_get("/orders", h)\\nopen("/etc/x")\\nr = "/api/items/{id}"')
    ['/orders', '/api/items/{id}']
    """
    out: List[str] = []
    for m in _ROUTE.finditer(text):
        path = m.group(1)
        if path not in out and not path.startswith(("/tmp", "/etc", "/usr", "/var", "/dev", "/proc")):
            out.append(path)
    return out[:limit]


def quiet(ctx: "Investigator", services: List[str]) -> Optional[Verdict]:
    for service in services:
        if ctx.out_of_time():
            return None
        routes: List[str] = []
        for file in list(ctx.app_files(service))[:40]:
            if is_app_file(file):
                routes += [r for r in route_literals(ctx.text(service, file), 10) if r not in routes]
        eps: List[Any] = []
        for route in routes[:10]:  # each route's handler (one word at a time: entry points stop at the first)
            eps += [ep for ep in ctx.entries(service, [route], limit=2)
                    if all((ep.file, ep.function) != (e.file, e.function) for e in eps)]
        if not eps:
            continue
        # the entry points that serve traffic here (a file may hold handlers this process does not run)
        placed = [(ep, ctx.place(service, "metric", ctx.where(service, ep.file, ep.function), metric="entry_ms",
                                 rate=50)) for ep in eps[:6]]
        ctx.pause(max(ctx.wait_s, 10.0))
        ep, events = max(((ep, ctx.events(alias, NO_FAULT_MIN_HITS, timeout=1.0)) for ep, alias in placed),
                         key=lambda pair: len(pair[1]))
        if len(events) < NO_FAULT_MIN_HITS:
            ctx.progress(f"{service}: {ep.function} ran {len(events)} times while watched; not enough to say")
            continue
        failed = [e for e in events if e.get("error")]
        pred = Predicate(field="error", op="==", value=True)
        if failed:
            return Verdict("likely", service, f"{ep.file}:{ep.function}", f"{len(failed)} of {len(events)} calls of "
                           f"{ep.function} raised although no alert fires", pred,
                           evidence=[e["evidence_id"] for e in failed[:20]])
        v = Verdict("no-fault", service, f"{ep.file}:{ep.function}", f"no fault: {len(events)} calls of {ep.function} "
                    f"completed without raising while watched, and no alert fires", pred,
                    evidence=[e["evidence_id"] for e in events])
        checked = ctx.gate.check(v)
        ctx.progress(f"gate: {checked.kind}: {'; '.join(checked.reasons)[:200]}")
        if checked.kind == "no-fault":
            return checked
    return None
