"""Errors of the notebook-side clients: one line each, saying which agent and what to do.

They are `ProbebookError`s, so one ``except ProbebookError`` catches agent and connector errors.
"""

from __future__ import annotations

from probebook.agent.errors import ProbebookError

__all__ = ["ConnectorError", "AgentUnreachable", "AgentRequestError", "AgentAuthError", "FleetEmpty"]


class ConnectorError(ProbebookError, RuntimeError):
    """Base of every error a connector raises."""


class AgentUnreachable(ConnectorError, ConnectionError):
    """No answer: refused, reset, timed out, or the broker is down (after the retries)."""


class AgentRequestError(ConnectorError):
    """The agent answered with an error status; `status` and the spec `field` at fault, if any."""

    def __init__(self, message: str, status: int = 0, field: str = "") -> None:
        super().__init__(message)
        self.status, self.field = status, field


class AgentAuthError(AgentRequestError, PermissionError):
    """401/403/429: the token is missing, wrong, or was tried wrong too often."""


class FleetEmpty(ConnectorError, LookupError):
    """No live instance of the service is registered, so a fleet command has nobody to run it."""
