"""The investigation API: what magics, runbooks and the assistant call."""

from .collector import Collector
from .investigation import Investigation, ProbeRecord, SessionError, SnapshotResult

__all__ = ["Collector", "Investigation", "ProbeRecord", "SessionError", "SnapshotResult"]
