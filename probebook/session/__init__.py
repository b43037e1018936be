"""The investigation API: what magics, runbooks and the assistant call."""

from .collector import Collector
from .handles import ServiceHandle, ServiceRow, SourceReader
from .inprocess import InProcessHandle
from .investigation import Investigation, ProbeRecord, SessionError, SnapshotResult
from .telemetry import FetchInfo, PartialResultWarning, Telemetry, TelemetrySources

__all__ = ["Collector", "FetchInfo", "InProcessHandle", "Investigation", "PartialResultWarning", "ProbeRecord",
           "ServiceHandle", "ServiceRow", "SessionError", "SnapshotResult", "SourceReader", "Telemetry",
           "TelemetrySources"]
