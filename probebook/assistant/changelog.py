"""The change log as containment reads it: per setting (a service's release, a config key, a flag), what
it was before the window and which change set it last; the changes on the verdict's own services are
what `containment.propose` undoes. A change on another service is proposed only where nothing on the
verdict's services is to undo and the proof's own words link it to the fault (`linked`): the change's
summary or details name a word of the literal every value the proof captured holds (`session` in
``key contains 'session='``: a deploy upstream that started sending it); it goes last, resting on that
link (`ranking`). So is a change on another service that set the very setting the proof's expression names
to a value with which that expression still holds the predicate (`same_setting`: ``backoff_s`` set to 0 on
the caller's retries too, where the proof is ``policy.backoff_s * attempt == 0``), whether or not the
verdict's own services changed. Any other is a lead said to the person (`changes_elsewhere`), never an action. For an
`outside` verdict, a config key of the service at the boundary is undone only where the boundary function's
class (or the function) names it (`names_key`): a setting that code never reads cannot change how it calls
the outside system.

>>> tokens(Predicate(capture="key", op="contains", value="session="))
['session']
>>> tokens(Predicate(capture="rate", op=">", value=0.2)), tokens(Predicate(capture="t", op="==", value="None"))
([], [])
"""

from __future__ import annotations

import ast
import json
import re
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from probebook.errors import ProbebookError
from probebook.evidence.predicate import Predicate, compare, holds, value_of
from probebook.session import Investigation

from .model import Verdict, epoch_of
from .proof import load_events

__all__ = ["CLAIMS", "boundary_source", "changed", "changes_elsewhere", "clock", "linked", "names_key", "same_setting",
           "services_of", "tokens", "undoable"]

CLAIMS = ("proven", "likely")  # verdicts that name a place; `inconclusive` names none to contain
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
_PLAIN = {"none", "null", "true", "false", "self", "error", "value", "http", "https", "json"}  # say nothing alone


def services_of(verdict: Verdict) -> List[str]:
    """The verdict's service and the service of ours at its boundary."""
    return [s for s in dict.fromkeys((verdict.service, verdict.boundary_service)) if s]


def tokens(pred: Predicate) -> List[str]:
    """The words of a predicate's literal text that a change could name: only for a text every captured
    value holds (``contains``, ``==``), words of four or more letters that are not plain."""
    if pred.op not in ("contains", "==") or not isinstance(pred.value, str):
        return []
    return [w for w in dict.fromkeys(_WORD.findall(pred.value)) if w.lower() not in _PLAIN]


def _values(value: Any) -> List[str]:
    """The texts in a change's details, its keys left out (``set``, ``before`` name no fault)."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in _values(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _values(v)]
    return [str(value)] if value is not None else []


def boundary_source(inv: Investigation, verdict: Verdict) -> Optional[str]:
    """The source of the code of ours that calls the outside system at an `outside` verdict's boundary: the
    boundary function's class (its `__init__` may read what its calls use), or the function itself, as its
    service runs it; None when it cannot be read (then nothing is left out for it)."""
    path, _, qualname = (verdict.boundary_locus or "").rpartition(":")
    if verdict.kind != "outside" or not verdict.boundary_service or not path or not qualname:
        return None
    try:
        text = "\n".join(t for _, t in inv.source_file(verdict.boundary_service, path).lines)
        top = qualname.split(".")[0]
        node = next((n for n in ast.parse(text).body if getattr(n, "name", None) == top), None)
    except (ProbebookError, SyntaxError, ValueError):
        return None
    return "\n".join(text.splitlines()[node.lineno - 1:node.end_lineno]) if node is not None else None


def _has_word(text: str, word: str, flags: int = 0) -> bool:
    """Does `text` hold `word` as a whole word (no letter, digit or underscore on either side)?"""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", text, flags) is not None


def names_key(source: Optional[str], key: str) -> bool:
    """Does `source` name the config `key` (as a whole word)? True where the source is not known.

    >>> names_key('t = settings.get("provider_timeout_s")', "provider_timeout_s"), names_key("x = 1", "risk")
    (True, False)
    """
    return source is None or _has_word(source, key)


Changes = Tuple[Dict[tuple, Any], Dict[tuple, tuple]]  # `changed`'s answer


def linked(inv: Investigation, verdict: Verdict, changes: Changes) -> Dict[str, str]:
    """Of `changes` (`changed`'s answer), those on other services, before the verdict's first evidence and not
    undone since, whose summary or details' values name a word of the proof's literal (`tokens`) as a whole
    word, where every cited event holds the predicate: evidence id -> why (the word, said)."""
    pred = verdict.predicate
    words = tokens(pred) if pred is not None else []
    out: Dict[str, str] = {}
    for row, details, _ in _elsewhere(inv, verdict, changes, bool(words)):
        text = " ".join([str(row.get("summary") or "")] + _values(details))
        word = next((w for w in words if _has_word(text, w, re.IGNORECASE)), None)
        if word:
            out[str(row.get("evidence_id"))] = (f"it names {word!r}, which every value the proof captured holds: "
                                                f"{pred.describe() if pred else ''}")
    return out


def same_setting(inv: Investigation, verdict: Verdict, changes: Changes) -> Dict[str, str]:
    """Of `changes`, config changes on other services, before the verdict's first evidence and not undone
    since, that set a setting the proof's expression names (a key, or a key of the value set) to a value
    with which that expression, over what the proof's first cited event captured, still holds the predicate:
    the same fault set on another service (each layer's retries configured with no wait): evidence id -> why.
    """
    pred = verdict.predicate
    try:
        tree = ast.parse(pred.capture, mode="eval").body if pred is not None and pred.capture else None
    except SyntaxError:
        tree = None
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} if tree is not None else set()
    names = {n for n in names if len(n) >= 4 and n.lower() not in _PLAIN}
    out: Dict[str, str] = {}
    for row, details, event in _elsewhere(inv, verdict, changes, bool(names)):
        for key, value in _set_items(details.get("set") if row.get("kind") == "config" else None):
            if key not in names or isinstance(value, (bool, dict, list)):
                continue
            try:
                ok = compare(_evaluate(tree, key, value, event), pred.op, pred.value)  # type: ignore[union-attr]
            except (ValueError, TypeError, ArithmeticError):
                ok = False
            if ok and pred is not None:
                out[str(row.get("evidence_id"))] = (f"it set {key}={json.dumps(value)}, the setting in the proof's "
                                                    f"{pred.capture}: with it {pred.describe()} holds there too")
                break
    return out


def _elsewhere(inv: Investigation, verdict: Verdict, changes: Changes, wanted: bool) -> List[tuple]:
    """(row, details, the first cited event) of each change on another service than the verdict's, before its
    first evidence and not undone since, where every cited event holds the predicate; none unless `wanted`."""
    pred = verdict.predicate
    events = list(load_events(inv.store, verdict.evidence).values()) if wanted and verdict.kind in CLAIMS else []
    if pred is None or not events or not all(holds(pred, e) for e in events):
        return []
    events.sort(key=lambda e: epoch_of(e.get("ts")))
    seen = epoch_of(events[0].get("ts"))
    first, last = changes
    ours = services_of(verdict)
    out = []
    for key, (row, before, after) in last.items():
        if key[1] in ours or not undoable(key, row, before, after, first) or epoch_of(row.get("ts")) >= seen:
            continue
        details = row.get("details")
        details = json.loads(details) if isinstance(details, str) else dict(details or {})
        out.append((row, details, events[0]))
    return out


def _set_items(value: Any) -> List[tuple]:
    """(key, value) of every setting a config change set, nested ones too (``orders.backoff_s``)."""
    if not isinstance(value, dict):
        return []
    return [kv for k, v in value.items() for kv in [(str(k), v)] + _set_items(v)]


_ARITH = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
          ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}


def _evaluate(node: Any, key: str, value: Any, event: Mapping[str, Any]) -> Any:
    """The arithmetic expression `node` with the setting `key` (a name, or an attribute's name) as `value` and
    any other name as `event` captured it; ValueError for anything else, or where `key` does not occur.

    >>> tree = ast.parse("policy.backoff_s * attempt", mode="eval").body
    >>> _evaluate(tree, "backoff_s", 0.0, {"locals": {"attempt": 3}})
    0.0
    >>> _evaluate(tree, "timeout_s", 0.0, {"locals": {"attempt": 3}})
    Traceback (most recent call last):
    ValueError: policy.backoff_s was not captured as a number
    """
    used = []

    def ev(n: Any) -> Any:
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return n.value
        if isinstance(n, (ast.Name, ast.Attribute)):
            if (n.id if isinstance(n, ast.Name) else n.attr) == key:
                used.append(key)
                return value
            got = value_of(Predicate(capture=ast.unparse(n)), event)
            if isinstance(got, (int, float)) and not isinstance(got, bool):
                return got
            raise ValueError(f"{ast.unparse(n)} was not captured as a number")
        if isinstance(n, ast.BinOp) and type(n.op) in _ARITH:
            return _ARITH[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -ev(n.operand)
        raise ValueError(f"{ast.unparse(n)} is not arithmetic")

    result = ev(node)
    if not used:
        raise ValueError(f"{key} is not in the expression")
    return result


def changed(inv: Investigation, since: str) -> Changes:
    """Per setting (a service's release, a config key, a flag) changed within `since`: its value before the
    window, and (the change that set it last, the value before it, after it)."""
    # a change log that cannot be read, or a bad `since`, is said (one line), never taken for "nothing changed"
    rows = sorted(inv.telemetry.changes(since=since).to_dicts(), key=lambda r: epoch_of(r.get("ts")))
    first: Dict[tuple, Any] = {}
    last: Dict[tuple, tuple] = {}
    for row in rows:
        details = row.get("details")
        details = json.loads(details) if isinstance(details, str) else dict(details or {})
        for key, before, after in _settings(str(row.get("kind") or ""), str(row.get("service") or ""), details):
            first.setdefault(key, before)
            last[key] = (row, before, after)
    return first, last


def changes_elsewhere(inv: Investigation, verdict: Verdict, since: str = "6h", most: int = 2) -> List[str]:
    """The newest changes (at most `most`) within `since` on services other than the verdict's that came
    before its first evidence, one line each with the change's evidence id: leads for a person where
    nothing changed on the verdict's service (a deploy upstream may feed the fault new inputs). Never
    proposed as actions: nothing links them to the fault. A change after the fault was first seen
    cannot have started it and is left out."""
    if not verdict.evidence or not (verdict.kind in CLAIMS or verdict.kind == "outside"):
        return []  # nothing is proposed for it either: no change log read, no error from one
    seen = min((epoch_of(e.get("ts")) for e in load_events(inv.store, verdict.evidence).values()), default=0.0)
    first, last = changed(inv, since)
    services = services_of(verdict)
    rows = {str(row.get("evidence_id")): row for key, (row, before, after) in last.items()
            if key[1] not in services and undoable(key, row, before, after, first) and epoch_of(row.get("ts")) < seen}
    newest = sorted(rows.values(), key=lambda r: -epoch_of(r.get("ts")))[:most]
    return [f"{r.get('kind')} of {r.get('service')} at {clock(r.get('ts'))}: {r.get('summary')} "
            f"({r.get('evidence_id')})"
            for r in newest]


def undoable(key: tuple, row: Mapping[str, Any], before: Any, after: Any, first: Mapping[tuple, Any]) -> bool:
    """A setting not back where it was before the window; a rollback is someone's undo, never undone (that
    would bring the bad release back)."""
    return first[key] != after and (key[0] != "release" or bool(before and row.get("kind") != "rollback"))


def _settings(kind: str, service: str, details: Dict[str, Any]) -> List[tuple]:
    """What a change-log entry set: (setting, value before, value after) for each setting it touched."""
    if kind in ("deploy", "rollback") and details.get("to_version"):
        return [(("release", service, ""), details.get("from_version"), details["to_version"])]
    if kind == "config" and isinstance(details.get("set"), dict):
        before = details.get("before") if isinstance(details.get("before"), dict) else {}
        return [(("config", service, str(k)), before.get(k), v) for k, v in details["set"].items()]
    if kind == "flag" and details.get("flag"):
        return [(("flag", service, str(details["flag"])), details.get("before"), details.get("value"))]
    return []


def clock(value: Any) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch_of(value))) + "Z"
