"""Errors of the telemetry connectors (Prometheus, Alertmanager, Loki, log files, git).

Each is a `ConnectorError` (so a `ProbebookError`) and the stdlib type that fits; messages are one
line, name the source, and say what to do.

>>> try:
...     raise SourceTimeout("Prometheus at http://127.0.0.1:9090 did not answer within 2s")
... except TimeoutError as exc:
...     print(exc)
Prometheus at http://127.0.0.1:9090 did not answer within 2s
"""

from __future__ import annotations

from .errors import ConnectorError

__all__ = ["SourceUnreachable", "SourceTimeout", "QueryRejected", "TelemetryInputError"]


class SourceUnreachable(ConnectorError, ConnectionError):
    """The source cannot be reached: refused, reset, unknown host, or it answered garbage."""


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
