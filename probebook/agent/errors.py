"""The agent's exception tree.

Every error the agent raises at its API boundary is a `ProbebookError`, and also the stdlib type
that fits, so callers may catch either. Messages are one line and say what to do.
"""

from __future__ import annotations

__all__ = [
    "ProbebookError",
    "SpecError",
    "LocationError",
    "ExpressionError",
    "EvaluationError",
    "ProbeNotFound",
]


class ProbebookError(Exception):
    """Base of every error probebook raises on purpose."""


class SpecError(ProbebookError, ValueError):
    """A probe spec is malformed: the message names the field and what is allowed."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class LocationError(SpecError, LookupError):
    """A `where` matches no code, several candidates, or a line that holds no code."""

    def __init__(self, message: str, field: str = "where") -> None:
        super().__init__(message, field)


class ExpressionError(SpecError):
    """An expression is refused before it runs (unsafe, unknown syntax, redacted name)."""

    def __init__(self, message: str, field: str = "when") -> None:
        super().__init__(message, field)


class EvaluationError(ProbebookError, RuntimeError):
    """An expression failed while evaluating at a hit (missing name, wrong type, budget)."""


class ProbeNotFound(ProbebookError, KeyError):
    """No probe has that id."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message plain
        return str(self.args[0]) if self.args else "probe not found"
