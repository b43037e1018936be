"""Evidence from the existing telemetry: alerts, metric samples, log lines and changes, each row
with a stable evidence id and the query that fetched it, so a verdict can cite it and a
postmortem can run the query again (`telemetry_queries` holds each fetch's exact parameters).

Evidence ids (the same fact fetched again gets the same id, and is stored once):

    alert:<fingerprint>:<start epoch s>          an alert (a fresh firing of it is a new row)
    prom:<expr>:<series>:<epoch ms>             one sample of one series of one PromQL expression
    logline:<service>:<hash of the line>        one log line (the same after rotation or re-reads)
    change:<service>:<commit | tag:name | hash> one commit, tag or change-log entry
    q:<kind>:<hash of source and parameters>    one fetch (`telemetry_queries`)

>>> from probebook.evidence import EvidenceStore
>>> store = EvidenceStore(":memory:")
>>> ensure_tables(store)
>>> sorted(t for t in store.tables() if t in TELEMETRY_TABLES)
['alerts', 'changes', 'log_lines', 'metric_series', 'telemetry_queries']
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

import polars as pl
import pyarrow as pa

if TYPE_CHECKING:  # the evidence side does not import connectors at run time
    from probebook.connectors.alertmanager import Alert
    from probebook.connectors.changes import ChangeResult
    from probebook.connectors.logs import LogResult
    from probebook.connectors.prometheus import PromResult

    from .store import EvidenceStore

__all__ = ["TELEMETRY_TABLES", "ensure_tables", "record_query", "store_alerts", "close_missing_alerts",
           "store_metric_samples", "store_log_lines", "store_changes", "alerts_frame", "short_hash"]

_TS = pa.timestamp("us", tz="UTC")
_ARROW = {"VARCHAR": pa.string(), "JSON": pa.string(), "DOUBLE": pa.float64(), "BIGINT": pa.int64(),
          "INTEGER": pa.int32(), "BOOLEAN": pa.bool_(), "TIMESTAMPTZ": _TS}

# table -> (column, DuckDB type); evidence_id is the primary key of each, so re-fetching stores nothing twice
TELEMETRY_TABLES: Dict[str, List[Tuple[str, str]]] = {
    "alerts": [("evidence_id", "VARCHAR"), ("ts", "TIMESTAMPTZ"), ("name", "VARCHAR"), ("service", "VARCHAR"),
               ("severity", "VARCHAR"), ("status", "VARCHAR"), ("summary", "VARCHAR"), ("ends", "TIMESTAMPTZ"),
               ("fingerprint", "VARCHAR"), ("labels", "JSON"), ("annotations", "JSON"), ("source_url", "VARCHAR"),
               ("source", "VARCHAR"), ("query", "VARCHAR"), ("first_seen", "TIMESTAMPTZ"),
               ("last_seen", "TIMESTAMPTZ")],
    "metric_series": [("evidence_id", "VARCHAR"), ("ts", "TIMESTAMPTZ"), ("service", "VARCHAR"),
                      ("metric", "VARCHAR"), ("series", "VARCHAR"), ("labels", "JSON"), ("value", "DOUBLE"),
                      ("query", "VARCHAR"), ("source", "VARCHAR"), ("query_id", "VARCHAR")],
    "log_lines": [("evidence_id", "VARCHAR"), ("ts", "TIMESTAMPTZ"), ("service", "VARCHAR"), ("level", "VARCHAR"),
                  ("message", "VARCHAR"), ("trace_id", "VARCHAR"), ("fields", "JSON"), ("source", "VARCHAR"),
                  ("byte_offset", "BIGINT"), ("query", "VARCHAR"), ("query_id", "VARCHAR")],
    "changes": [("evidence_id", "VARCHAR"), ("ts", "TIMESTAMPTZ"), ("kind", "VARCHAR"), ("service", "VARCHAR"),
                ("summary", "VARCHAR"), ("author", "VARCHAR"), ("ref", "VARCHAR"), ("details", "JSON"),
                ("source", "VARCHAR"), ("query", "VARCHAR"), ("query_id", "VARCHAR")],
    "telemetry_queries": [("evidence_id", "VARCHAR"), ("ts", "TIMESTAMPTZ"), ("kind", "VARCHAR"),
                          ("source", "VARCHAR"), ("query", "VARCHAR"), ("params", "JSON"), ("rows", "BIGINT"),
                          ("partial", "BOOLEAN"), ("notes", "JSON")],
}
_SCHEMA = {t: pa.schema([(c, _ARROW[k]) for c, k in cols]) for t, cols in TELEMETRY_TABLES.items()}
_READY: "weakref.WeakSet[Any]" = weakref.WeakSet()


def short_hash(*parts: Any, n: int = 12) -> str:
    return hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:n]


def _us(ts: Optional[float]) -> Optional[int]:
    return None if ts is None else int(round(ts * 1_000_000))


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def ensure_tables(store: "EvidenceStore") -> None:
    """Create the telemetry tables in `store` (once; they survive in its file)."""
    if store in _READY:
        return
    for table, cols in TELEMETRY_TABLES.items():
        body = ", ".join(f"{c} {t}{' PRIMARY KEY' if c == 'evidence_id' else ''}" for c, t in cols)
        store.write(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
    _READY.add(store)


def _insert_new(store: "EvidenceStore", table: str, rows: List[Mapping[str, Any]]) -> None:
    """Append the rows whose evidence id is not stored yet (a staging table, then INSERT OR IGNORE)."""
    if not rows:
        return
    stage = f"_pb_stage_{uuid.uuid4().hex[:12]}"
    store.write(f"CREATE TEMP TABLE {stage} AS SELECT * FROM {table} LIMIT 0")
    try:
        store.insert_rows(stage, rows, _SCHEMA[table])
        store.write(f"INSERT OR IGNORE INTO {table} SELECT * FROM {stage}")
    finally:
        store.write(f"DROP TABLE IF EXISTS {stage}")


def _timeline(store: "EvidenceStore", eid: str, ts: float, source: str, text: str, ref: str) -> None:
    # our own ids: alerts of one rule evaluation share a start time, which add_timeline's ids would merge
    store.write("INSERT OR IGNORE INTO timeline VALUES (?, to_timestamp(?), ?, ?, ?)", [eid, ts, source, text, ref])


def record_query(store: "EvidenceStore", kind: str, source: str, query: str, params: Mapping[str, Any],
                 rows: int, partial: bool = False, notes: Sequence[str] = ()) -> str:
    """One fetch: what was asked of which source, how many rows came back, whether all of them."""
    ensure_tables(store)
    qid = f"q:{kind}:{short_hash(source, query, _json(params))}"
    store.write("INSERT OR REPLACE INTO telemetry_queries VALUES (?, to_timestamp(?), ?, ?, ?, ?, ?, ?, ?)",
                [qid, time.time(), kind, source, query, _json(params), rows, partial, _json(list(notes))])
    return qid


# ---------------------------------------------------------------------- alerts
def alert_id(alert: "Alert") -> str:
    return f"alert:{alert.fingerprint}:{int(alert.started or 0)}"


def store_alerts(store: "EvidenceStore", alerts: Sequence["Alert"], source: str, query: str) -> List[str]:
    """Insert or update each alert (status, end, summary change; the first sighting stays); their ids."""
    ensure_tables(store)
    now, ids = time.time(), []
    for a in alerts:
        eid = alert_id(a)
        store.write(
            "INSERT INTO alerts VALUES (?, to_timestamp(?), ?, ?, ?, ?, ?, to_timestamp(?), ?, ?, ?, ?, ?, ?, "
            "to_timestamp(?), to_timestamp(?)) ON CONFLICT (evidence_id) DO UPDATE SET status = excluded.status, "
            "ends = excluded.ends, summary = excluded.summary, severity = excluded.severity, labels = excluded.labels, "
            "annotations = excluded.annotations, source_url = excluded.source_url, source = excluded.source, "
            "query = excluded.query, last_seen = excluded.last_seen",
            [eid, a.started, a.name, a.service, a.severity, a.status, a.summary, a.ends, a.fingerprint,
             _json(a.labels), _json(a.annotations), a.source_url, source, query, now, now])
        where = f" on {a.service}" if a.service else ""
        if a.status == "resolved":
            _timeline(store, f"tl:alert-resolved:{eid[6:]}", a.ends or now, "alert", f"alert {a.name} resolved{where}",
                      eid)
        else:
            _timeline(store, f"tl:alert:{eid[6:]}", a.started or now, "alert",
                      f"alert {a.name} {a.status}{where}: {a.summary}".rstrip(": "), eid)
        ids.append(eid)
    return ids


def close_missing_alerts(store: "EvidenceStore", present: Sequence["Alert"], source: str) -> int:
    """Alerts last polled from `source` as open that it no longer holds ended while nobody
    listened: mark them resolved as of now. Answers how many."""
    ensure_tables(store)
    keep = {alert_id(a) for a in present}
    open_rows = store.sql(f"SELECT evidence_id FROM alerts WHERE status <> 'resolved' AND source = "
                          f"'{source.replace(chr(39), '')}'")["evidence_id"].to_list()
    gone = [eid for eid in open_rows if eid not in keep]
    for eid in gone:
        store.write("UPDATE alerts SET status = 'resolved', ends = to_timestamp(?), last_seen = to_timestamp(?), "
                    "source = ? WHERE evidence_id = ?", [time.time(), time.time(), source, eid])
    return len(gone)


def alerts_frame(store: "EvidenceStore", recent_s: float = 3600.0) -> pl.DataFrame:
    """Open alerts, then those resolved within `recent_s` seconds; newest first within each."""
    ensure_tables(store)
    cutoff = float(time.time() - recent_s)
    return store.sql(
        "SELECT status, name, service, severity, summary, ts AS started, ends, evidence_id, fingerprint, source_url, "
        "labels, source, last_seen FROM alerts WHERE status <> 'resolved' OR coalesce(ends, last_seen) >= "
        f"to_timestamp({cutoff!r}) ORDER BY status = 'resolved', ts DESC")


# ---------------------------------------------------------------------- metrics
def store_metric_samples(store: "EvidenceStore", result: "PromResult") -> Tuple[pl.DataFrame, str]:
    """Store every sample of `result`; answer its frame with an ``evidence_id`` column first, and the query id."""
    ensure_tables(store)
    qid = record_query(store, f"promql_{result.kind}", result.source, result.query, result.params,
                       result.frame.height, result.partial, result.warnings)
    frame = result.frame
    if frame.height == 0:
        return frame.insert_column(0, pl.Series("evidence_id", [], pl.Utf8)), qid
    expr = short_hash(result.source, result.query, n=10)
    series = frame["series"].unique().to_list()
    sid = {s: short_hash(s, n=8) for s in series}
    frame = frame.with_columns(pl.concat_str([pl.lit(f"prom:{expr}:"), pl.col("series").replace_strict(sid),
                                              pl.lit(":"), pl.col("ts").dt.epoch("ms").cast(pl.Utf8)])
                               .alias("evidence_id")).select(["evidence_id", *result.frame.columns])
    labels = {s: _json(_labels_of(frame, s, result.label_columns)) for s in series}
    service_col = "service" if "service" in result.label_columns else None
    rows = [{"evidence_id": r["evidence_id"], "ts": r["ts"], "service": r[service_col] if service_col else None,
             "metric": r["metric"], "series": r["series"], "labels": labels[r["series"]], "value": r["value"],
             "query": result.query, "source": result.source, "query_id": qid} for r in frame.iter_rows(named=True)]
    _insert_new(store, "metric_series", rows)
    return frame, qid


def _labels_of(frame: pl.DataFrame, series: str, columns: Sequence[str]) -> Dict[str, Any]:
    first = frame.filter(pl.col("series") == series).row(0, named=True)
    out = {c: first[c] for c in columns if first[c] is not None}
    if first["metric"]:
        out["__name__"] = first["metric"]
    return out


# ---------------------------------------------------------------------- logs
_LOG_SCHEMA = {"evidence_id": pl.Utf8, "ts": pl.Datetime("us", "UTC"), "service": pl.Utf8, "level": pl.Utf8,
               "message": pl.Utf8, "trace_id": pl.Utf8, "source": pl.Utf8, "byte_offset": pl.Int64, "fields": pl.Utf8}


def store_log_lines(store: "EvidenceStore", result: "LogResult", kind: str = "logs") -> Tuple[pl.DataFrame, str]:
    """Store the lines of `result`; answer them as a frame (oldest first) and the query id."""
    ensure_tables(store)
    source = ", ".join(result.sources)
    query = _json(result.query)
    qid = record_query(store, kind, source, query, result.query, len(result.lines), result.partial, result.notes)
    rows = [{"evidence_id": f"logline:{l.service or '-'}:{l.line_hash}", "ts": _us(l.ts), "service": l.service,
             "level": l.level, "message": l.message, "trace_id": l.trace_id, "fields": _json(l.fields),
             "source": l.source, "byte_offset": l.offset, "query": query, "query_id": qid} for l in result.lines]
    _insert_new(store, "log_lines", rows)
    frame = pl.DataFrame([{k: r[k] for k in _LOG_SCHEMA} for r in rows],
                         schema={**_LOG_SCHEMA, "ts": pl.Int64}, orient="row") if rows else \
        pl.DataFrame(schema={**_LOG_SCHEMA, "ts": pl.Int64})
    return frame.with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC"))), qid


# ---------------------------------------------------------------------- changes
_CHANGE_SCHEMA = {"evidence_id": pl.Utf8, "ts": pl.Int64, "kind": pl.Utf8, "service": pl.Utf8, "summary": pl.Utf8,
                  "author": pl.Utf8, "ref": pl.Utf8, "source": pl.Utf8, "details": pl.Utf8}


def store_changes(store: "EvidenceStore", results: Sequence["ChangeResult"]) -> Tuple[pl.DataFrame, List[str]]:
    """Store the changes of `results` (one per source) with timeline entries; answer them oldest
    first as one frame, and the query ids."""
    ensure_tables(store)
    rows, qids = [], []
    for result in results:
        source = next(iter(result.query.values()), "")
        query = _json(result.query)
        qid = record_query(store, "changes", str(source), query, result.query, len(result.changes), result.partial,
                           result.notes)
        qids.append(qid)
        for c in result.changes:
            rows.append({"evidence_id": f"change:{c.digest}", "ts": _us(c.ts), "kind": c.kind, "service": c.service,
                         "summary": c.summary, "author": c.by, "ref": c.ref, "details": _json(c.details),
                         "source": c.source, "query": query, "query_id": qid})
    _insert_new(store, "changes", rows)
    for r in rows:
        _timeline(store, f"tl:{r['evidence_id']}", r["ts"] / 1e6, "change",
                  f"{r['kind']} {r['service']}: {r['summary']}", r["evidence_id"])
    rows.sort(key=lambda r: (r["ts"], r["evidence_id"]))
    frame = pl.DataFrame([{k: r[k] for k in _CHANGE_SCHEMA} for r in rows], schema=_CHANGE_SCHEMA, orient="row")
    return frame.with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC"))), qids
