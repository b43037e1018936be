"""The evidence store: one DuckDB file per investigation; frames come out as polars.

>>> store = EvidenceStore(":memory:")
>>> store.ingest([{"kind": "log", "seq": 1, "ts": 1700000000.0, "probe_id": "p1", "message": "total=3"}],
...              service="orders", instance_id="i1").inserted
{'logs': 1}
>>> store.sql("SELECT evidence_id, message FROM logs").rows()
[('log:orders:i1:1', 'total=3')]

Writes are serialised by a lock; each reading thread gets its own DuckDB cursor (a connection is
not thread-safe). Each instance's events carry increasing sequence numbers, so ingesting a stream
again after a reconnect stores nothing twice.

DuckDB's errors do not leave the store: a query it refuses is an `EvidenceQueryError` (a
`ValueError`), anything else an `EvidenceError`, each in DuckDB's words on one line.

>>> store.sql("SELECT nope FROM logs")
Traceback (most recent call last):
...
probebook.errors.EvidenceQueryError: Binder Error: Referenced column "nope" not found in FROM clause! ...
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, TypeVar

import duckdb
import polars as pl
import pyarrow as pa

from probebook.errors import EvidenceError, EvidenceQueryError, one_line

from .schema import HEADER_COLUMNS, KIND_TABLE, TABLES, ddl, sql_list

__all__ = ["EvidenceStore", "IngestResult"]

_JSON_COLS = {table: {c for c, t in cols if t == "JSON"} for table, cols in TABLES.items()}
_ARROW = {"VARCHAR": pa.string(), "JSON": pa.string(), "BIGINT": pa.int64(), "INTEGER": pa.int32(),
          "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}


_SOURCE_SCHEMA = {table: pa.schema([(c, _ARROW[t.split()[0]]) for c, t in HEADER_COLUMNS + cols])
                  for table, cols in TABLES.items()}
_PREFIX = {table: prefix for table, prefix in KIND_TABLE.values()}
_TABLE_OF = {kind: table for kind, (table, _) in KIND_TABLE.items()}


def _json(value: Any) -> Optional[str]:
    return None if value is None else json.dumps(value, default=str)


_F = TypeVar("_F", bound=Callable[..., Any])


def _ours(method: _F) -> _F:
    """DuckDB's errors out of a public method as ours: the query's fault (bad SQL, an unknown table
    or column, a bad cast) is an `EvidenceQueryError`, the store's (cannot open, I/O) an `EvidenceError`."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except duckdb.Error as exc:
            query_fault = isinstance(exc, (duckdb.ProgrammingError, duckdb.DataError))
            raise (EvidenceQueryError if query_fault else EvidenceError)(one_line(exc)) from exc

    return call  # type: ignore[return-value]


@dataclass
class IngestResult:
    inserted: Dict[str, int] = field(default_factory=dict)  # rows stored per table
    skipped: int = 0  # events of an unknown kind or without a sequence number
    duplicates: int = 0  # events already stored (sequence numbers at or below the stored ones)


class EvidenceStore:
    """Evidence of one investigation. `path` is a file (created if missing) or ``":memory:"``."""

    @_ours
    def __init__(self, path: str = ":memory:", read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only  # a saved investigation read again (a postmortem): nothing is written
        self._con = duckdb.connect(path, read_only=read_only)
        self._write = threading.Lock()
        self._local = threading.local()
        self._high: Dict[tuple, int] = {}  # (service, instance) -> highest seq stored
        if read_only:  # its times read the same wherever it is opened (a postmortem re-run compares them)
            self._con.execute("SET TimeZone = 'UTC'")
            return
        if path != ":memory:":
            # fewer, larger checkpoints while evidence streams in; the WAL keeps every commit durable
            self._con.execute("SET checkpoint_threshold = '256MB'")
        for stmt in ddl():
            self._con.execute(stmt)

    # ------------------------------------------------------------------ writing
    @_ours
    def ingest(self, events: Iterable[Mapping[str, Any]], service: str, instance_id: str) -> IngestResult:
        """Store agent events (`Event.to_dict()` shapes) from one instance of a service.

        Arrow reads the events into a batch with the table's schema, and the derived columns
        (evidence id, timestamp, service, instance) are computed by DuckDB in the INSERT.
        """
        by_table: Dict[str, List[Mapping[str, Any]]] = {}
        result = IngestResult()
        with self._write:
            key = (service, instance_id)
            high = self._high.get(key)
            if high is None:
                high = self._stored_high(service, instance_id)
            top = high
            table_of, skipped, duplicates = _TABLE_OF.get, 0, 0
            for ev in events:
                table = table_of(ev.get("kind"))  # type: ignore[arg-type]
                seq = ev.get("seq")
                if table is None or type(seq) is not int:
                    skipped += 1
                elif seq <= high:  # already stored: a stream read again after a reconnect
                    duplicates += 1
                else:
                    if seq > top:
                        top = seq
                    rows = by_table.get(table)
                    if rows is None:
                        rows = by_table[table] = []
                    rows.append(ev)
            result.skipped, result.duplicates = skipped, duplicates
            self._high[key] = top
            if not by_table:
                return result
            self._con.execute("BEGIN TRANSACTION")  # one commit (one WAL flush) per batch
            try:
                for table, rows in by_table.items():
                    self._insert(table, rows, service, instance_id)
                    result.inserted[table] = len(rows)
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                self._high[key] = high  # nothing of this batch is stored: it may come again
                raise
        return result

    def _insert(self, table: str, rows: List[Mapping[str, Any]], service: str, instance_id: str) -> None:
        json_cols = _JSON_COLS[table]
        schema = _SOURCE_SCHEMA[table]
        if not json_cols:  # metrics, logs, spans: Arrow reads the dicts itself (faster than a column at a time: docs/performance.md)
            batch = pa.Table.from_pylist(rows, schema=schema)
        else:  # nested captures travel as JSON text (snapshots and exceptions: few, large)
            batch = pa.Table.from_arrays([pa.array([_json(r.get(f.name)) for r in rows] if f.name in json_cols
                                                   else [r.get(f.name) for r in rows], type=f.type) for f in schema],
                                         schema=schema)
        self._con.register("_pb_batch", batch)
        try:
            extra = ", ".join(c for c, _ in TABLES[table])
            self._con.execute(
                f"INSERT INTO {table} SELECT $prefix || ':' || $service || ':' || $instance || ':' || "
                f"seq, make_timestamp(CAST(ts * 1000000 AS BIGINT)), $service, $instance, probe_id, seq, file, line, "
                f"function, thread, trace_id, {extra} FROM _pb_batch",
                {"prefix": _PREFIX[table], "service": service, "instance": instance_id})
        finally:
            self._con.unregister("_pb_batch")

    def _stored_high(self, service: str, instance_id: str) -> int:
        parts = " UNION ALL ".join(f"SELECT max(seq) AS m FROM {t} WHERE service = $s AND instance_id = $i"
                                   for t in TABLES)
        row = self._con.execute(f"SELECT coalesce(max(m), 0) FROM ({parts})",
                                {"s": service, "i": instance_id}).fetchall()
        return int(row[0][0])

    @_ours
    def write(self, statement: str, params: Optional[Any] = None) -> None:
        """Run one writing statement (DDL, INSERT, UPDATE) under the store's write lock."""
        with self._write:
            self._con.execute(statement, params) if params is not None else self._con.execute(statement)

    @_ours
    def insert_rows(self, table: str, rows: List[Mapping[str, Any]], schema: "pa.Schema") -> int:
        """Append `rows` (dicts) to `table`, whose columns are `schema`'s, in that order."""
        if not rows:
            return 0
        with self._write:
            self._con.register("_pb_rows", pa.Table.from_pylist(rows, schema=schema))
            try:
                self._con.execute(f"INSERT INTO {table} SELECT * FROM _pb_rows")
            finally:
                self._con.unregister("_pb_rows")
        return len(rows)

    @_ours
    def add_timeline(self, text: str, source: str = "mark", ref: Optional[str] = None,
                     ts: Optional[float] = None) -> str:
        """A timeline entry (a person's note, a probe placed, an alert); returns its evidence id."""
        when = time.time() if ts is None else ts
        eid = f"tl:{source}:{int(when * 1_000_000)}"
        with self._write:
            self._con.execute("INSERT OR IGNORE INTO timeline VALUES (?, to_timestamp(?), ?, ?, ?)",
                              [eid, when, source, text, ref])
        return eid

    @_ours
    def save_copy(self, path: str) -> str:
        """Write everything in the store to a new DuckDB file at `path`, which another process can then
        open read-only while this store keeps writing (a postmortem of a live investigation)."""
        if os.path.exists(path):
            raise EvidenceError(f"{path} exists; give a new file name for the copy")
        with self._write:
            here = self._con.execute("SELECT current_database()").fetchone()[0]
            self._con.execute(f"ATTACH {sql_list([path])} AS pb_copy")
            try:
                self._con.execute(f'COPY FROM DATABASE "{here}" TO pb_copy')
            finally:
                self._con.execute("DETACH pb_copy")
        return path

    def record_probe(self, probe_id: str, service: str, kind: str, location: str, spec: Mapping[str, Any],
                     alias: Optional[str] = None) -> None:
        with self._write:
            self._con.execute(
                "INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?, ?, now(), ?)",
                [probe_id, service, kind, location, json.dumps(dict(spec), default=str), alias])

    # ------------------------------------------------------------------ reading
    def _cursor(self) -> "duckdb.DuckDBPyConnection":
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self._con.cursor()
        return cur

    @_ours
    def sql(self, query: str) -> pl.DataFrame:
        """Run SQL over the evidence; the result as a polars DataFrame (Arrow, no copies)."""
        return self._cursor().sql(query).pl()

    @_ours
    def frame(self, table: str) -> pl.DataFrame:
        if table not in TABLES and table not in ("probes", "timeline", "audit"):
            raise EvidenceQueryError(f"unknown table {table!r}; tables: {', '.join(self.tables())}")
        return self.sql(f"SELECT * FROM {table} ORDER BY 1")

    @_ours
    def tables_read(self, query: str) -> List[str]:
        """The tables (and files named in place of one) a query would read, bound against this store."""
        return sorted(self._cursor().get_table_names(query))

    @_ours
    def tables(self) -> List[str]:
        rows = self._cursor().sql("SELECT table_name FROM information_schema.tables").fetchall()
        return sorted(r[0] for r in rows)

    @_ours
    def count(self, table: str) -> int:
        return int(self._cursor().sql(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    @_ours
    def close(self) -> None:
        with self._write:
            self._con.close()
