"""A cache (or any map of ours) that grows without bound because its keys never repeat.

The alerts say something grows (memory, entries). In the running source of the services, every store
into a map held by an object or a module (``self._entries[key] = ...``, ``.setdefault(key, ...)``)
is watched, capturing the key and the map's size. A map that grows while watched, with a new key on
(nearly) every store, is the one. Its keys are taken apart (``a=1&b=2`` by name, else by position):
the one part with a new value every time, while the others repeat, is what makes them unbounded
(``session=...``). The claim `key contains "session="` is then followed to where the key is made:
passed in -> what the caller passed, and the function of ours that returned it (probed at its
``return``); made in the storing function -> that function.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from probebook.evidence.predicate import Predicate, holds

from ..codeview import PURE_CALLS, assigned_from, called_in, functions
from ..differential import captured
from ..model import Verdict
from .errors import from_caller, probe_producers

if TYPE_CHECKING:  # pragma: no cover
    from ..investigator import Investigator

__all__ = ["growth", "map_stores", "MapStore", "unbounded_part"]

_SPLIT = re.compile(r"[&;,|\s]+")


@dataclass(frozen=True)
class MapStore:
    function: str  # qualified name
    line: int
    container: str  # "self._entries"
    key: str  # the key's source: "key"


def map_stores(source: str) -> List[MapStore]:
    """Stores into a map held by an object or a module, under a key that is not a constant.

    >>> map_stores('''
    ... class Cache:
    ...     def put(self, key, page):
    ...         self._entries[key] = page
    ...         self._hits["total"] = 0
    ... ''')
    [MapStore(function='Cache.put', line=4, container='self._entries', key='key')]
    """
    out: List[MapStore] = []

    def visit(node: ast.AST, scope: List[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.extend(_stores_in(child, ".".join(scope + [child.name])))
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, scope + [child.name])

    visit(ast.parse(source), [])
    return out


def _stores_in(fn: Any, qualname: str) -> List[MapStore]:
    out: List[MapStore] = []
    params = {a.arg for a in fn.args.args + fn.args.kwonlyargs} - {"self", "cls"}
    for n in ast.walk(fn):
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Subscript):
            target, key = n.targets[0].value, n.targets[0].slice
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "setdefault" and n.args:
            target, key = n.func.value, n.args[0]
        else:
            continue
        held = isinstance(target, ast.Attribute) or (isinstance(target, ast.Name) and target.id not in params
                                                     and not _assigned_locally(fn, target.id))
        if held and not isinstance(key, ast.Constant):
            out.append(MapStore(qualname, n.lineno, ast.unparse(target), ast.unparse(key)))
    return out


def _assigned_locally(fn: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store) for n in ast.walk(fn))


def unbounded_part(keys: List[Any]) -> Optional[str]:
    """The part of text keys that is new in (nearly) every key while the other parts repeat, as the text
    that names it (``"session="``), or None.

    >>> unbounded_part([f"sku={i % 3}&region=eu&session={i}" for i in range(10)])
    'session='
    >>> unbounded_part([f"order-{i}" for i in range(10)]) is None  # unique as a whole: no part to name
    True
    """
    texts = [k for k in keys if isinstance(k, str)]
    if len(texts) < 5 or len(texts) < 0.8 * len(keys):
        return None
    parts: Dict[str, List[str]] = {}
    for t in texts:
        for i, piece in enumerate(p for p in _SPLIT.split(t) if p):
            name, eq, value = piece.partition("=")
            parts.setdefault(f"{name}=" if eq else f"#{i}", []).append(value if eq else piece)
    n = len(texts)
    varying = [p for p, vals in parts.items() if len(set(vals)) >= 0.8 * n]
    steady = [p for p, vals in parts.items() if len(set(vals)) < 0.5 * n]
    named = [p for p in varying if not p.startswith("#")]
    return named[0] if len(named) == 1 and len(varying) == 1 and steady else None


def _grew(store: MapStore, evs: List[Dict[str, Any]]) -> bool:
    sizes = [captured(e, f"len({store.container})") for e in evs]
    sizes = [s for s in sizes if isinstance(s, int)]
    keys = [repr(captured(e, store.key)) for e in evs]
    return len(sizes) >= 5 and sizes[-1] > sizes[0] and len(set(keys)) >= 0.8 * len(keys)


def growth(ctx: "Investigator", services: List[str]) -> Optional[Verdict]:
    """The map that grows with a new key on every store, and where its keys are made."""
    seen = ctx.watch_found(services, map_stores, lambda st: st.line, lambda st: [st.key, f"len({st.container})"],
                           lambda st: f"{st.function} stores into {st.container}")
    if seen is None:
        ctx.progress("no map of the services' own code is stored into under a computed key")
        return None
    grown = sorted([x for x in seen if x[3] and _grew(x[2], x[3])], key=lambda x: services.index(x[0]))  # focus first
    if not grown:
        ctx.progress("no map grew with new keys while watched")
        return None
    service, file, store, evs = grown[0]
    keys = [captured(e, store.key) for e in evs]
    part = unbounded_part(keys)
    ids = [e["evidence_id"] for e in evs]
    ctx.progress(f"{service}: {store.container} grows with a new key on {len(set(map(repr, keys)))} of {len(keys)} "
                 f"stores; the part that is new every time: {part or 'none stands out'}")
    said = f"{store.container} in {store.function} grows without bound: almost every key stored is new"
    if part is None:
        return Verdict("likely", service, f"{file}:{store.function}", said, evidence=ids[:5])
    pred = Predicate(capture=store.key, op="contains", value=part)
    effect = f"makes {store.container} grow (every {part}... is a new entry)"
    fn = next((f for f in functions(ctx.text(service, file)) if f.qualname == store.function), None)
    base = store.key if store.key.isidentifier() else ""
    if fn is not None and base in fn.params:
        stack = list(reversed(evs[0].get("stack") or []))  # innermost last, as an exception's frames
        found = from_caller(ctx, service, store.function, base, pred, stack, effect)
        if found is not None:
            return found
    elif base:
        made = [expr for _, expr in assigned_from(ctx.text(service, file), store.function, base)]
        calls = [c for c in called_in(ctx.text(service, file), store.function, made)
                 if c.split(".")[-1] not in PURE_CALLS]
        found = probe_producers(ctx, service, file, calls, pred, store.function, base, effect) if calls else None
        if found is not None:
            return found
        if made and not calls:  # made here, from its own inputs
            good = [e["evidence_id"] for e in evs if holds(pred, e)]
            return ctx.conclude("proven", service, f"{file}:{store.function}", f"{said}: its keys carry {part}",
                                pred, good) or Verdict("likely", service, f"{file}:{store.function}", said, pred,
                                                       evidence=ids[:5])
    return Verdict("likely", service, f"{file}:{store.function}", f"{said}: its keys carry {part}", pred,
                   evidence=[e["evidence_id"] for e in evs if holds(pred, e)][:5])
