"""The evidence store: DuckDB tables of everything an investigation captured, as polars frames."""

from .store import EvidenceStore, IngestResult

__all__ = ["EvidenceStore", "IngestResult"]
