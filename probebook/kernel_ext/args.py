"""Parsing the magics' lines, and turning every user mistake into a one-line `UsageError`.

>>> MagicParser("%mark", '"text"').add_argument("text")                   # doctest: +SKIP
>>> parse_metric("order_total:histogram=order.total")
{'name': 'order_total', 'type': 'histogram', 'value': 'order.total'}
>>> parse_range("lab/sample.py:30-42")
('lab/sample.py', 30, 42)
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shlex
from typing import Dict, Iterator, List, Optional, Tuple

from IPython.core.error import UsageError

from probebook.errors import ProbebookError, one_line
from probebook.protocol.spec import METRIC_TYPES, parse_duration

__all__ = ["MagicError", "MagicParser", "user_errors", "parse_metric", "parse_range", "parse_seconds", "split_line"]


class MagicError(UsageError):
    """A magic's failure: one line for the person, and a failed cell for whatever runs the notebook.

    IPython prints a plain `UsageError` without a traceback, and a notebook runner (nbval, papermill,
    `nbconvert --execute`) never learns that the cell failed. IPython treats exactly `UsageError` that
    way; this subclass takes the traceback path, where `_render_traceback_` keeps it to the one line."""

    def _render_traceback_(self) -> List[str]:
        return [f"UsageError: {self}"]


@contextlib.contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Our errors (bad spec, unknown service, agent refusal, unreachable agent) as `UsageError`."""
    try:
        yield
    except ProbebookError as exc:
        raise MagicError(one_line(f"{prefix}{exc}")) from None


def split_line(line: str, magic: str) -> List[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:  # an unclosed quote
        raise MagicError(f"{magic}: {exc}; quote expressions and templates whole, e.g. --when \"x > 1\"") from None


class MagicParser(argparse.ArgumentParser):
    """argparse that answers a mistake with `UsageError("%magic: what is wrong; usage: ...")`."""

    def __init__(self, magic: str, usage: str) -> None:
        super().__init__(prog=magic, usage=usage, add_help=False, allow_abbrev=False)
        self.magic = magic

    def error(self, message: str) -> None:  # type: ignore[override]
        raise MagicError(one_line(f"{self.magic}: {message}; usage: {self.usage}"))

    def parse(self, line: str) -> argparse.Namespace:
        return self.parse_args(split_line(line, self.magic))


_METRIC = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.]*)(?::(?P<type>[a-z]+))?(?:=(?P<value>.+))?$", re.S)


def parse_metric(text: Optional[str]) -> Optional[Dict[str, str]]:
    """``NAME[:TYPE][=EXPR]``: ``requests`` (a count), ``latency:duration``, ``total=order.total`` (a
    gauge), ``total:histogram=order.total``."""
    if text is None:
        return None
    m = _METRIC.match(text.strip())
    if not m or (m.group("type") and m.group("type") not in METRIC_TYPES):
        raise MagicError(f"--metric {text!r}: expected NAME[:TYPE][=EXPRESSION] with TYPE one of "
                         f"{', '.join(METRIC_TYPES)}, e.g. total:histogram=order.total")
    spec = {"name": m.group("name")}
    if m.group("type"):
        spec["type"] = m.group("type")
    if m.group("value"):
        spec["value"] = m.group("value").strip()
        spec.setdefault("type", "gauge")
    return spec


def parse_range(text: str) -> Tuple[str, Optional[int], Optional[int]]:
    """``FILE``, ``FILE:N`` or ``FILE:A-B`` (lines, 1-based, inclusive)."""
    m = re.match(r"^(?P<file>.+?)(?::(?P<a>\d+)(?:-(?P<b>\d+))?)?$", text)
    if not m:
        raise MagicError(f"%source: {text!r}: expected FILE, FILE:LINE or FILE:A-B")
    a = int(m.group("a")) if m.group("a") else None
    b = int(m.group("b")) if m.group("b") else a
    if a is not None and b is not None and (a < 1 or b < a):
        raise MagicError(f"%source: lines {a}-{b}: expected 1 <= A <= B")
    return m.group("file"), a, b


def parse_seconds(value: str, flag: str) -> float:
    """A duration flag (``30s``, ``2m``) in seconds."""
    with user_errors():
        return parse_duration(value, flag)
