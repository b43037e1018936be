"""Tables of the evidence store: one per kind of evidence, every row with a stable evidence id.

An evidence id names where a fact came from and is the same every time the same event is
ingested, so re-reading a stream never duplicates and a verdict can cite it:
``log:orders:3f9a1c:42`` is the log event with sequence 42 from instance 3f9a1c of service orders.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

__all__ = ["TABLES", "KIND_TABLE", "COMMON", "ddl", "evidence_id"]

# (column, DuckDB type) shared by every event table, in order
COMMON: List[Tuple[str, str]] = [
    ("evidence_id", "VARCHAR"),  # unique by construction; no index (it would halve ingestion)
    ("ts", "TIMESTAMPTZ"),
    ("service", "VARCHAR"),
    ("instance_id", "VARCHAR"),
    ("probe_id", "VARCHAR"),
    ("seq", "BIGINT"),
    ("file", "VARCHAR"),
    ("line", "INTEGER"),
    ("function", "VARCHAR"),
    ("thread", "VARCHAR"),
    ("trace_id", "VARCHAR"),
]

TABLES: Dict[str, List[Tuple[str, str]]] = {
    "logs": [("message", "VARCHAR")],
    "snapshots": [("arguments", "JSON"), ("locals", "JSON"), ("expressions", "JSON"), ("stack", "JSON")],
    "metrics": [("name", "VARCHAR"), ("metric_type", "VARCHAR"), ("value", "DOUBLE"), ("unit", "VARCHAR"),
                ("error", "BOOLEAN")],
    "spans": [("name", "VARCHAR"), ("span_id", "VARCHAR"), ("parent_span_id", "VARCHAR"), ("start_ns", "BIGINT"),
              ("duration_ns", "BIGINT"), ("error", "VARCHAR"), ("otel", "BOOLEAN")],
    "exceptions": [("exc_type", "VARCHAR"), ("message", "JSON"), ("frames", "JSON")],
    "probe_status": [("status", "VARCHAR"), ("reason", "VARCHAR")],
}

# event kind -> (table, evidence id prefix)
KIND_TABLE: Dict[str, Tuple[str, str]] = {
    "log": ("logs", "log"), "snapshot": ("snapshots", "snap"), "metric": ("metrics", "metric"),
    "span": ("spans", "span"), "exception": ("exceptions", "exc"), "status": ("probe_status", "status"),
}

_EXTRA = {
    "probes": [("probe_id", "VARCHAR"), ("service", "VARCHAR"), ("kind", "VARCHAR"), ("location", "VARCHAR"),
               ("spec", "JSON"), ("placed_at", "TIMESTAMPTZ"), ("alias", "VARCHAR"),
               ("PRIMARY KEY", "(probe_id, service)")],
    "timeline": [("evidence_id", "VARCHAR PRIMARY KEY"), ("ts", "TIMESTAMPTZ"), ("source", "VARCHAR"),
                 ("text", "VARCHAR"), ("ref", "VARCHAR")],
    "audit": [("evidence_id", "VARCHAR PRIMARY KEY"), ("ts", "TIMESTAMPTZ"), ("who", "VARCHAR"),
              ("action", "VARCHAR"), ("target", "VARCHAR"), ("result", "VARCHAR")],
}


def ddl() -> List[str]:
    """CREATE TABLE statements for every table (idempotent)."""
    out = []
    for table, cols in TABLES.items():
        body = ", ".join(f"{c} {t}" for c, t in COMMON + cols)
        out.append(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
    for table, cols in _EXTRA.items():
        body = ", ".join(f"{c} {t}" for c, t in cols)
        out.append(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
    return out


def evidence_id(kind: str, service: str, instance_id: str, seq: int) -> str:
    """`prefix:service:instance:seq`, e.g. ``log:orders:3f9a1c:42``."""
    return f"{KIND_TABLE[kind][1]}:{service}:{instance_id}:{seq}"
