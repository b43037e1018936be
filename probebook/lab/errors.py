"""The lab's errors: one line each that names what to fix. They are `ProbebookError`s."""

from __future__ import annotations

from probebook.agent.errors import ProbebookError

__all__ = ["LabError", "ScenarioError", "StartError"]


class LabError(ProbebookError, RuntimeError):
    """Base of every error the lab raises on purpose."""


class ScenarioError(LabError, ValueError):
    """A scenario id is unknown or its files are malformed."""


class StartError(LabError):
    """A process of the lab did not come up (a port taken, a crash at start, a missing binary)."""
