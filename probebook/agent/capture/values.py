"""Capture values, a frame's locals and its stack: bounded, redacted, and without running any user code.

A captured value is a dict with a `"type"` and, by kind, `"value"`, `"elements"`, `"entries"`,
`"fields"`, `"args"` or `"summary"`; what a limit, redaction or cycle cut says so with
`"not_captured"` (`depth`, `limit`, `redacted`, `cycle`, `error`) or `"truncated": true`
(docs/capture.md). Each call shares one budget (`writers.Budget`) among all the nodes it writes.
Probes call the `_raw` forms at the hit: they write a flat token stream (`tree`) that `as_tree`
and `as_stack` turn into the documented trees later, on the reader's thread.

>>> from probebook.agent.capture.redaction import Redactor
>>> capture_value({"user": "ada", "password": "hunter2"}, CaptureLimits(), Redactor())["entries"][1]
[{'type': 'str', 'value': 'password'}, {'type': 'str', 'not_captured': 'redacted'}]
>>> as_tree(capture_value_raw([1, "a"], CaptureLimits(), Redactor()))
{'type': 'list', 'elements': [{'type': 'int', 'value': 1}, {'type': 'str', 'value': 'a'}], 'size': 2}
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from probebook.errors import SpecError

from ..instrument.locate import code_name
from .redaction import Redactor
from .safe_repr import safe_repr
from .tree import CLOSE, OPEN, as_stack, as_tree
from .writers import Budget, deadline_for, write_cut, write_value

__all__ = ["CaptureLimits", "capture_value", "capture_locals", "capture_stack", "capture_value_raw",
           "capture_locals_raw", "capture_stack_raw", "deadline_for"]

_MAX_DEPTH_CEILING = 32  # capture recurses once per level; stay far from the recursion limit
# what one capture may be raised to, at most (a probe asking for more is refused: a 120 MB event held the
# host's GIL for 13 s to read)
CEILINGS = {"max_depth": _MAX_DEPTH_CEILING, "max_items": 10_000, "max_string": 65_536, "max_fields": 1_000,
            "max_bytes": 8 << 20, "max_frames": 200, "max_ms": 100}


@dataclass(frozen=True)
class CaptureLimits:
    """How much one capture may read; every cut is marked in the tree.

    >>> CaptureLimits.from_mapping({"max_depth": 3}).max_depth
    3
    """

    max_depth: int = 2  # levels of containers/objects that are expanded
    max_items: int = 100  # elements or entries per collection
    max_string: int = 255  # characters per string, bytes per bytes object
    max_fields: int = 20  # fields per object
    max_bytes: int = 1 << 17  # approximate JSON size of one capture call (and the text its secret scan read)
    max_frames: int = 20  # stack frames
    max_ms: int = 10  # CPU time one hit's captures may spend on the host's thread; the rest is cut ("time")

    def __post_init__(self) -> None:
        for f in fields(self):
            value, ceiling = getattr(self, f.name), CEILINGS.get(f.name)
            if type(value) is not int or value < 1 or (ceiling is not None and value > ceiling):
                allowed = f"an integer from 1 to {ceiling}" if ceiling else "a positive integer"
                raise SpecError(f"limits.{f.name}: must be {allowed}, got {safe_repr(value, 40)}", field=f"limits.{f.name}")

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> "CaptureLimits":
        """Limits from a spec's `limits` object; an unknown key or a bad value raises `SpecError`."""
        allowed = [f.name for f in fields(cls)]
        for key in d:
            if key not in allowed:
                raise SpecError(f"limits.{key}: unknown limit; allowed: {', '.join(allowed)}", field=f"limits.{key}")
        return cls(**dict(d))


def capture_value(value: Any, limits: CaptureLimits, redactor: Redactor, name: Optional[str] = None,
                  deadline: Optional[int] = None) -> dict:
    """Capture one value; when `name` is a sensitive identifier the value is not read.

    >>> capture_value(7, CaptureLimits(), Redactor())
    {'type': 'int', 'value': 7}
    """
    return as_tree(capture_value_raw(value, limits, redactor, name, deadline))


def capture_value_raw(value: Any, limits: CaptureLimits, redactor: Redactor, name: Optional[str] = None,
                      deadline: Optional[int] = None) -> tuple:
    """`capture_value` as a token stream, for `as_tree` later (see `tree`). `deadline` (a
    `time.thread_time_ns`) is shared by the captures of one hit; by default `limits.max_ms` from now."""
    b = Budget(limits, redactor.snapshot(), deadline)
    if name is not None and b.name_redacted(name):
        write_cut(b.out, value, "redacted")
    else:
        write_value(value, 0, b)
    return tuple(b.out)


def capture_locals(f_locals: Mapping[str, Any], limits: CaptureLimits, redactor: Redactor,
                   deadline: Optional[int] = None) -> Dict[str, dict]:
    """Capture a frame's locals under one budget; redacted names are marked and their values unread."""
    return as_tree(capture_locals_raw(f_locals, (), limits, redactor, deadline)[1])


def capture_locals_raw(f_locals: Mapping[str, Any], arguments: Iterable[str], limits: CaptureLimits,
                       redactor: Redactor, deadline: Optional[int] = None) -> Tuple[tuple, tuple]:
    """The `arguments` among `f_locals`, and the other locals, as two token streams of `{name: node}`
    captured under one budget (arguments first; among them `self` and `cls` last: an object's own state is
    often the largest value of a frame, and the budget goes first to the values a call was given)."""
    b = Budget(limits, redactor.snapshot(), deadline)
    items = dict.items(f_locals) if issubclass(type(f_locals), dict) else f_locals.items()
    wanted = set(arguments)
    args_out: List[Any] = [OPEN]
    b.out = args_out
    rest, owner = [], []
    for item in items:
        if item[0] in wanted:
            if item[0] in _OWNERS:
                owner.append(item)
            else:
                _named(item, b)
        else:
            rest.append(item)
    for item in owner:
        _named(item, b)
    args_out.append(CLOSE)
    b.out = [OPEN]
    for item in rest:
        _named(item, b)
    b.out.append(CLOSE)
    return tuple(args_out), tuple(b.out)


_OWNERS = ("self", "cls")


def _named(item: Tuple[str, Any], b: Budget) -> None:
    """Write `name, node` for one local."""
    name, value = item
    b.out.append(name)
    if b.name_redacted(name):
        write_cut(b.out, value, "redacted")
    else:
        write_value(value, 0, b)


def capture_stack(frame: Any, limits: CaptureLimits, redactor: Redactor, with_locals_for_top: bool = False) -> List[dict]:
    """Up to `max_frames` frames from `frame` outwards; the last notes how many were left off."""
    out = as_stack(capture_stack_raw(frame, limits))
    if with_locals_for_top and out:
        out[0]["locals"] = capture_locals(frame.f_locals, limits, redactor)
    return out


def capture_stack_raw(frame: Any, limits: CaptureLimits) -> tuple:
    """`capture_stack` as one flat tuple (function, file, line, module per frame, then the number
    of frames left off), for `as_stack` later."""
    out: List[Any] = []
    f = frame
    n = 0
    while f is not None and n < limits.max_frames:
        code, g = f.f_code, f.f_globals
        module = dict.get(g, "__name__") if issubclass(type(g), dict) else None
        out += (code_name(code), code.co_filename, f.f_lineno,
                module if type(module) is str else None)
        f = f.f_back
        n += 1
    omitted = 0
    while f is not None:
        omitted, f = omitted + 1, f.f_back
    out.append(omitted)
    return tuple(out)
