"""Tables of the evidence store: one per kind of evidence, every row with a stable evidence id.
The columns are the fields of the protocol's event records (`probebook.protocol.events`), so a field
an event gains is a column without a second edit here.

An evidence id names where a fact came from and is the same every time the same event is
ingested, so re-reading a stream never duplicates and a verdict can cite it:
``log:orders:3f9a1c:42`` is the log event with sequence 42 from instance 3f9a1c of service orders.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Tuple, Union

from probebook.protocol.events import HEADER, RECORDS, fields_of
from probebook.protocol.kinds import STATUS_KIND, Kind

__all__ = ["TABLES", "KIND_TABLE", "PREFIX_TABLE", "COMMON", "HEADER_COLUMNS", "ddl", "duckdb_type", "evidence_id",
           "decode_row", "sql_list"]

# event kind -> (table, evidence id prefix)
KIND_TABLE: Dict[str, Tuple[str, str]] = {
    Kind.LOG.value: ("logs", "log"), Kind.SNAPSHOT.value: ("snapshots", "snap"),
    Kind.METRIC.value: ("metrics", "metric"), Kind.SPAN.value: ("spans", "span"),
    Kind.EXCEPTION.value: ("exceptions", "exc"), STATUS_KIND: ("probe_status", "status"),
}


def sql_list(values: Iterable[Any]) -> str:
    """`values` as SQL string literals (quotes doubled), comma-separated: for an ``IN (...)`` or, with one
    value, an ``=``. Every literal the house writes into a query goes through here.

    >>> sql_list(["log:a:1", "it's"])
    "'log:a:1', 'it''s'"
    """
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


_SCALARS = {str: "VARCHAR", int: "BIGINT", float: "DOUBLE", bool: "BOOLEAN"}
_NARROW = {"line": "INTEGER"}  # a line number fits 32 bits


def duckdb_type(name: str, py_type: Any) -> str:
    """The column type for a record field: scalars as themselves, dicts and lists (capture trees,
    frames) as JSON.

    >>> duckdb_type("value", float), duckdb_type("line", int), duckdb_type("frames", List[Dict[str, Any]])
    ('DOUBLE', 'INTEGER', 'JSON')
    >>> from typing import Optional
    >>> duckdb_type("cpu_ms", Optional[float])  # a column is nullable: None is NULL
    'DOUBLE'
    """
    args = getattr(py_type, "__args__", ())
    if getattr(py_type, "__origin__", None) is Union and len(args) == 2 and type(None) in args:
        py_type = next(a for a in args if a is not type(None))
    return _NARROW.get(name) or _SCALARS.get(py_type, "JSON")


# the header of every event as the agent sends it (`ts` in epoch seconds), in the records' order
HEADER_COLUMNS: List[Tuple[str, str]] = [(name, duckdb_type(name, t)) for name, t in HEADER]
_HEADER_NAMES = {name for name, _ in HEADER}

# (column, DuckDB type) shared by every event table, in order: where the row came from, then the header
COMMON: List[Tuple[str, str]] = [
    ("evidence_id", "VARCHAR"),  # unique by construction; no index (it would halve ingestion)
    ("ts", "TIMESTAMPTZ"),
    ("service", "VARCHAR"),
    ("instance_id", "VARCHAR"),
] + [(name, t) for name, t in HEADER_COLUMNS if name != "ts"]

# table -> the columns of its kind's record beyond the header
TABLES: Dict[str, List[Tuple[str, str]]] = {
    table: [(name, duckdb_type(name, t)) for name, t in fields_of(RECORDS[kind]) if name not in _HEADER_NAMES]
    for kind, (table, _) in KIND_TABLE.items()
}

# evidence id prefix -> table, and table -> its kind and the columns stored as JSON (capture trees, frames)
PREFIX_TABLE: Dict[str, str] = {prefix: table for table, prefix in KIND_TABLE.values()}
_TABLE_KIND = {table: kind for kind, (table, _) in KIND_TABLE.items()}
_JSON_COLUMNS = {table: {c for c, t in cols if t == "JSON"} for table, cols in TABLES.items()}


def decode_row(table: str, row: Dict[str, Any]) -> Dict[str, Any]:
    """A stored row of an event table as the event it was: JSON columns parsed, `kind` set (in place).

    >>> decode_row("snapshots", {"locals": '{"n": {"type": "int", "value": 1}}'})["locals"]["n"]["value"]
    1
    >>> decode_row("logs", {"message": "42"})  # a log line stays text, whatever it looks like
    {'message': '42', 'kind': 'log'}
    """
    for column in _JSON_COLUMNS[table] & set(row):
        if isinstance(row[column], str):
            try:
                row[column] = json.loads(row[column])
            except ValueError:
                pass
    row["kind"] = _TABLE_KIND[table]
    return row


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
    """CREATE TABLE statements for every table (idempotent); a store written by an older version gets
    the columns added since (an event record grows at its end, so its columns stay in order)."""
    out = []
    for table, cols in TABLES.items():
        body = ", ".join(f"{c} {t}" for c, t in COMMON + cols)
        out.append(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
        out += [f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {c} {t}" for c, t in cols]
    for table, cols in _EXTRA.items():
        body = ", ".join(f"{c} {t}" for c, t in cols)
        out.append(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
    # a captured value as plain text, by its expression or name: captured(expressions, 'order.total')
    # instead of expressions->>'$."order.total".value' (NULL for a container, a cut or an error)
    out.append("""CREATE OR REPLACE MACRO captured(tree, name) AS """
               """json_extract_string(tree, '$."' || replace(name, '"', '') || '".value')""")
    return out


def evidence_id(kind: str, service: str, instance_id: str, seq: int) -> str:
    """`prefix:service:instance:seq`, e.g. ``log:orders:3f9a1c:42``."""
    return f"{KIND_TABLE[kind][1]}:{service}:{instance_id}:{seq}"
