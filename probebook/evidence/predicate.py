"""One predicate model: what a piece of evidence must show to prove a cause.

The lab's ground truth (``[evidence.proof]`` in ``ground_truth.toml``) and the assistant's verdicts
state their claim with the same `Predicate`, and both are judged by `holds`/`judge` here, so a
scenario's answer and an investigation's proof can never mean two different things.

A predicate looks at one thing in an event: a captured expression (`capture`, looked up in the
snapshot's expressions, then its locals, then its arguments), an event field (`field`: a metric's
``value``, an exception's ``exc_type``), or a frame of the stack (`stack`); and compares it with
`op` against `value`. ``agg = "median"`` judges the median over at least `min_events` events;
``absent`` says that no event may arrive at all.

>>> exc = {"type": "OSError", "args": {"type": "tuple", "elements": [
...     {"type": "int", "value": 28}, {"type": "str", "value": "No space left on device"}]}}
>>> holds(Predicate(capture="exc", op="contains", value="No space"), {"expressions": {"exc": exc}})
True
>>> judge(Predicate(field="value", op=">", value=3, agg="median", min_events=3),
...       [{"value": v} for v in (1, 5, 7)])
'median 5 over 3 events > 3'
"""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional

from probebook.protocol.capture_tree import plain

__all__ = ["Predicate", "OPS", "AGGS", "compare", "value_of", "holds", "judge", "brief"]

OPS = ("==", "!=", ">", ">=", "<", "<=", "contains", "matches", "type")
AGGS = ("any", "median")


@dataclass(frozen=True)
class Predicate:
    """What one event (or the median of many) must show; see the module docstring."""

    capture: str = ""
    field: str = ""
    stack: str = ""
    op: str = "=="
    value: Any = None
    absent: bool = False
    agg: str = "any"
    min_events: int = 1

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"predicate op {self.op!r} unknown; use one of {', '.join(OPS)}")
        if self.agg not in AGGS:
            raise ValueError(f"predicate agg {self.agg!r} unknown; use any or median")
        if not (self.capture or self.field or self.stack or self.absent):
            raise ValueError("a predicate needs one of capture, field, stack or absent = true")

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None, False) or k == "value"}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Predicate":
        """From the ground-truth/JSON shape; unknown keys are refused with their names."""
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ValueError(f"predicate: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
        return cls(str(raw.get("capture", "")), str(raw.get("field", "")), str(raw.get("stack", "")),
                   str(raw.get("op", "==")), raw.get("value"), bool(raw.get("absent", False)),
                   str(raw.get("agg", "any")), int(raw.get("min_events", 1)))

    def describe(self) -> str:
        """The claim in words, e.g. ``rate > 1`` or ``median of value > 3 over >= 20 events``."""
        if self.absent:
            return "no event arrives"
        if self.stack:
            return f"the stack holds {self.stack}"
        what = self.capture or self.field
        claim = f"{what} {self.op} {self.value!r}"
        return f"median of {claim} over >= {self.min_events} events" if self.agg == "median" else claim


def compare(actual: Any, op: str, expected: Any) -> bool:
    """`actual op expected`; a comparison that cannot be made is False, never an error."""
    try:
        if op == "==":
            return bool(actual == expected)
        if op == "!=":
            return bool(actual != expected)
        if op == "contains":
            return str(expected) in str(actual)
        if op == "matches":
            return re.search(str(expected), str(actual)) is not None
        if op in (">", ">=", "<", "<="):
            if isinstance(actual, bool) or actual is None:
                return False
            a, b = float(actual), float(expected)
            return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]
    except (TypeError, ValueError):
        return False
    return False


def value_of(pred: Predicate, event: Mapping[str, Any]) -> Any:
    """What `pred` looks at in one event: a capture (plain, or the node for op "type"), a field, the stack."""
    if pred.capture:
        node = None
        for part in ("expressions", "locals", "arguments"):
            node = (event.get(part) or {}).get(pred.capture)
            if node is not None:
                break
        if node is None and event.get("frames"):  # an exception: the innermost frame that has it
            for frame in reversed(event["frames"]):
                node = (frame.get("locals") or {}).get(pred.capture)
                if node is not None:
                    break
        return node if pred.op == "type" else plain(node)
    if pred.field:  # a field of the event; a captured one (an exception's message) as its plain value
        return plain(event.get(pred.field))
    frames = event.get("stack") or event.get("frames") or []
    return [f.get("function") for f in frames if isinstance(f, Mapping)]


def holds(pred: Predicate, event: Mapping[str, Any]) -> bool:
    """Does this one event show what `pred` asks for?"""
    actual = value_of(pred, event)
    if pred.stack:
        return any(f == pred.stack or str(f).endswith("." + pred.stack) for f in (actual or []))
    if pred.op == "type":
        return isinstance(actual, Mapping) and actual.get("type") == pred.value
    return compare(actual, pred.op, pred.value)


def judge(pred: Predicate, events: Iterable[Mapping[str, Any]]) -> Optional[str]:
    """Why `events` prove `pred` (one line), or None while they do not (yet)."""
    seen: List[Mapping[str, Any]] = list(events)
    if pred.absent:
        return None if seen else "no event arrived"
    if len(seen) < pred.min_events:
        return None
    if pred.agg == "median":
        values = [v for v in (value_of(pred, e) for e in seen) if isinstance(v, (int, float))
                  and not isinstance(v, bool)]
        if len(values) >= pred.min_events and compare(statistics.median(values), pred.op, pred.value):
            return f"median {statistics.median(values):g} over {len(values)} events {pred.op} {pred.value}"
        return None
    for event in seen:
        if holds(pred, event):
            return f"stack holds {pred.stack}" if pred.stack else f"{brief(pred, event)} {pred.op} {pred.value!r}"
    return None


def brief(pred: Predicate, event: Mapping[str, Any]) -> str:
    """``name=value`` of what `pred` looks at, cut to a line."""
    name = pred.capture or pred.field or "stack"
    return f"{name}={repr(value_of(pred, event))[:120]}"
