"""Every exception probebook raises on purpose, in one module; stdlib only, imports nothing of ours.

Each class is a `ProbebookError` and also the stdlib type a caller would catch, so
``except ProbebookError`` catches all of ours and ``except ValueError`` still catches a bad spec.
Messages are one line and say what to do.

    Exception
    └── ProbebookError
        ├── SpecError                 ValueError     a probe spec is malformed (`field` names the part)
        │   ├── LocationError         LookupError    `where` matches no code, or several candidates
        │   └── ExpressionError                      an expression is refused before it runs
        ├── EvaluationError           RuntimeError   an expression failed at a hit
        │   └── OverBudget                           it would spend more work than a hit may
        ├── ProbeNotFound             KeyError       no probe has that id
        ├── SourceNotFound            LookupError    no loaded module has a file with that path
        ├── UnsafeAccess              AttributeError reading it would run user code
        ├── TokenFileError            ValueError     a token file is missing, unreadable or malformed
        ├── ServerError               OSError        the agent's server could not start
        ├── RedisConnectionError      ConnectionError  the Redis server cannot be reached
        ├── RedisReplyError           RuntimeError   the Redis server answered with an error
        ├── ConnectorError            RuntimeError   a client to the outside failed
        │   ├── AgentUnreachable      ConnectionError  no answer from an agent or the broker
        │   ├── AgentRequestError                    the agent answered with an error status
        │   │   └── AgentAuthError    PermissionError  401/403/429: the token
        │   ├── FleetEmpty            LookupError    no live instance of the service
        │   ├── SourceUnreachable     ConnectionError  Prometheus, Alertmanager, Loki... cannot be reached
        │   │   └── SourceTimeout     TimeoutError   it did not answer in time
        │   ├── QueryRejected         ValueError     the source refused the query (PromQL, LogQL)
        │   └── TelemetryInputError   ValueError     a mistake in what was asked of a source
        │       └── AlertPayloadError                an alert payload of the wrong shape
        ├── EvidenceError             RuntimeError   the evidence store failed (cannot open, write)
        │   └── EvidenceQueryError    ValueError     the store refused a query (bad SQL, unknown table)
        ├── SessionError              ValueError     an investigation request that cannot be carried out
        ├── AssistantError            RuntimeError   the assistant cannot run as asked
        │   └── LlmError                             the model endpoint is not configured or failed
        └── LabError                  RuntimeError   the lab
            ├── ScenarioError         ValueError     an unknown or malformed scenario
            └── StartError                           a process of the lab did not come up

>>> try:
...     raise SourceTimeout("Prometheus at http://127.0.0.1:9090 did not answer within 2s")
... except TimeoutError as exc:
...     print(one_line(exc, limit=40))
Prometheus at http://127.0.0.1:9090 did…
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ProbebookError",
    "SpecError",
    "LocationError",
    "ExpressionError",
    "EvaluationError",
    "OverBudget",
    "ProbeNotFound",
    "SourceNotFound",
    "UnsafeAccess",
    "TokenFileError",
    "ServerError",
    "RedisConnectionError",
    "RedisReplyError",
    "ConnectorError",
    "AgentUnreachable",
    "AgentRequestError",
    "AgentAuthError",
    "FleetEmpty",
    "SourceUnreachable",
    "SourceTimeout",
    "QueryRejected",
    "TelemetryInputError",
    "AlertPayloadError",
    "EvidenceError",
    "EvidenceQueryError",
    "SessionError",
    "AssistantError",
    "LlmError",
    "LabError",
    "ScenarioError",
    "StartError",
    "one_line",
]


def one_line(text: Any, limit: int = 400) -> str:
    """`text` (an exception, a server's words) on one line of at most `limit` characters.

    >>> one_line("Binder Error:\\n  column  x not found", limit=24)
    'Binder Error: column x …'
    """
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ProbebookError(Exception):
    """Base of every error probebook raises on purpose."""


# ---------------------------------------------------------------------- the agent
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


class AgentUnavailable(ProbebookError, RuntimeError):
    """The agent runs but cannot place probes in this interpreter (a package it needs is missing)."""


class EvaluationError(ProbebookError, RuntimeError):
    """An expression failed while evaluating at a hit (missing name, wrong type, budget)."""


class OverBudget(EvaluationError):
    """An operation would spend more work than one probe hit may (the probe is disabled at once)."""


class ProbeNotFound(ProbebookError, KeyError):
    """No probe has that id."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message plain
        return str(self.args[0]) if self.args else "probe not found"


class SourceNotFound(ProbebookError, LookupError):
    """No loaded module has a file with that path."""


class UnsafeAccess(ProbebookError, AttributeError):
    """Reading the attribute would run user code, or it does not exist."""


class TokenFileError(ProbebookError, ValueError):
    """A token file is missing, unreadable or malformed."""


class ServerError(ProbebookError, OSError):
    """The agent's server could not start (address in use, bad certificate...)."""


class RedisConnectionError(ProbebookError, ConnectionError):
    """The Redis server cannot be reached, closed the connection, or did not answer in time."""


class RedisReplyError(ProbebookError, RuntimeError):
    """The Redis server answered a command with an error reply (``-ERR ...``)."""


# ---------------------------------------------------------------------- connectors
class ConnectorError(ProbebookError, RuntimeError):
    """Base of every error a connector (a client to agents or telemetry) raises."""


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


class SourceUnreachable(ConnectorError, ConnectionError):
    """A telemetry source cannot be reached: refused, reset, unknown host, or it answered garbage."""


class SourceTimeout(SourceUnreachable, TimeoutError):
    """The source did not answer within the timeout (a slow or stuck server)."""


class QueryRejected(ConnectorError, ValueError):
    """The source answered with an error about the query (bad PromQL, bad LogQL): `status` is the
    HTTP status, `error_type` the server's category (``bad_data``, ``timeout``, ...), the message its words."""

    def __init__(self, message: str, status: int = 0, error_type: str = "") -> None:
        super().__init__(message)
        self.status, self.error_type = status, error_type


class TelemetryInputError(ConnectorError, ValueError):
    """A mistake in what was asked (a bad duration, a glob matching nothing, no source configured)."""


class AlertPayloadError(TelemetryInputError):
    """An alert payload of the wrong shape; `status` is the HTTP status to answer (400 or 422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------- evidence, session, lab
class EvidenceError(ProbebookError, RuntimeError):
    """The evidence store failed: the file cannot be opened (in use, a folder, no permission) or written."""


class EvidenceQueryError(EvidenceError, ValueError):
    """The evidence store refused a query: bad SQL, an unknown table or column (DuckDB's words)."""


class SessionError(ProbebookError, ValueError):
    """A request to the investigation that cannot be carried out as asked (one line, what to do)."""


class AssistantError(ProbebookError, RuntimeError):
    """The assistant cannot run as asked (an unknown planner, a planner that cannot start)."""


class LlmError(AssistantError):
    """The LLM planner's endpoint is not configured (what to set is in the message) or failed."""


class LabError(ProbebookError, RuntimeError):
    """Base of every error the lab raises on purpose."""


class ScenarioError(LabError, ValueError):
    """A scenario id is unknown or its files are malformed."""


class StartError(LabError):
    """A process of the lab did not come up (a port taken, a crash at start, a missing binary)."""
