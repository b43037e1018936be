"""The assistant's tools: typed functions over an `Investigation`, each with a JSON schema, so the
deterministic investigator and an LLM call exactly the same things under the same limits.

Every output is bounded (rows and bytes), every call is journaled as a `Finding` with the evidence
ids it produced, and probes stay inside a budget (live probes, TTL, rate). Nothing here changes a
service: placing a read-only probe is the strongest action.

>>> ToolBox.schemas()[0]["function"]["name"]
'alerts'
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import polars as pl

from probebook.errors import ProbebookError, one_line
from probebook.evidence.schema import KIND_TABLE, decode_row
from probebook.session import Investigation

from .codeview import callees, enclosing, find_text, functions, raises
from .journal import Journal
from .model import Finding, Incident
from .tool_specs import SPECS

__all__ = ["ToolBox", "ToolResult", "ProbeBudget", "MAX_ROWS", "MAX_BYTES", "check_read_only"]

MAX_ROWS = 40
# a probe read for its capture expressions: locals kept shallow, so a big object in a frame costs little
LIGHT = {"max_depth": 1, "max_items": 10}
MAX_BYTES = 6000
# what a read of the evidence never needs: files, the network, settings, other databases
_OUTSIDE_SQL = re.compile(r"\b(read_\w+|glob|copy|attach|detach|install|load|pragma|export|import|set|reset|"
                          r"call|checkpoint|sniff_csv|parquet_\w+|http\w*|s3)\b|\b(from|join)\s*\(?\s*['\"]", re.I)


def check_read_only(query: str) -> None:
    """One SELECT over the evidence tables, or ValueError: no writes (a forged row would forge a proof),
    no files, no network, no settings.

    >>> check_read_only("SELECT evidence_id FROM snapshots")
    >>> check_read_only("WITH x AS (SELECT 1) INSERT INTO probes SELECT 1")
    Traceback (most recent call last):
    ...
    ValueError: sql: one SELECT (or WITH ... SELECT) over the evidence tables only
    """
    import duckdb  # the store's engine parses it the way it would run it

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise ValueError(f"sql: {one_line(exc, 200)}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT or _OUTSIDE_SQL.search(query):
        raise ValueError("sql: one SELECT (or WITH ... SELECT) over the evidence tables only")


@dataclass
class ProbeBudget:
    """What the assistant may place without asking: read-only probes only, and only this many."""

    max_live: int = 8
    max_total: int = 40
    max_ttl_s: float = 600.0
    max_rate: float = 50.0


@dataclass
class ToolResult:
    """A tool's answer: `data` (JSON-able, bounded), a one-line `summary`, the evidence ids it rests on."""

    tool: str
    summary: str
    data: Any = None
    evidence: List[str] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> str:
        body = {"summary": self.summary, "evidence": self.evidence[:MAX_ROWS], "data": self.data}
        if self.error:
            body = {"error": self.error}
        return _bounded_json(body)


def _bounded_json(body: Any) -> str:
    text = json.dumps(body, default=str)
    if len(text) <= MAX_BYTES:
        return text
    return text[: MAX_BYTES - 40] + f' ... [cut at {MAX_BYTES} bytes]'


def _rows(frame: Any, columns: Optional[Sequence[str]] = None, limit: int = MAX_ROWS) -> List[Dict[str, Any]]:
    if columns:
        frame = frame.select([c for c in columns if c in frame.columns])
    return [{k: (str(v) if not isinstance(v, (int, float, str, bool, type(None))) else v) for k, v in r.items()}
            for r in frame.head(limit).to_dicts()]


class ToolBox:
    """The tools bound to one investigation and one incident. `call(name, args)` never raises:
    a bad call answers a `ToolResult` with `error` set (the model or person reads it and retries)."""

    def __init__(self, inv: Investigation, incident: Incident, journal: Journal,
                 budget: Optional[ProbeBudget] = None) -> None:
        self.inv = inv
        self.incident = incident
        self.journal = journal
        self.budget = budget or ProbeBudget()
        self.placed: Dict[str, str] = {}  # alias -> kind, for probes this assistant placed
        self.live: List[str] = []
        self.calls = 0
        self._fns: Dict[str, Callable[..., ToolResult]] = {s["name"]: getattr(self, "_t_" + s["name"]) for s in SPECS}

    @staticmethod
    def schemas() -> List[Dict[str, Any]]:
        """The tools in the OpenAI Chat Completions `tools` shape."""
        return [{"type": "function", "function": {"name": s["name"], "description": s["description"],
                                                  "parameters": s["parameters"]}} for s in SPECS]

    def call(self, name: str, args: Optional[Dict[str, Any]] = None) -> ToolResult:
        self.calls += 1
        fn = self._fns.get(name)
        if fn is None:
            result = ToolResult(name, "", error=f"unknown tool {name!r}; tools: {', '.join(self._fns)}")
        else:
            try:
                result = fn(**(args or {}))
            except TypeError as exc:
                result = ToolResult(name, "", error=f"bad arguments for {name}: {one_line(exc, 200)}")
            except (ProbebookError, ValueError, LookupError) as exc:
                result = ToolResult(name, "", error=one_line(exc, 300))
            except Exception as exc:  # noqa: BLE001 - a tool never ends an investigation; the planner reads why
                result = ToolResult(name, "", error=f"{type(exc).__name__}: {one_line(exc, 280)}")
        text = result.summary if not result.error else f"error: {result.error}"
        self.journal.finding(self.incident, Finding(name, one_line(text, 300), list(result.evidence)))
        return result

    def remove_all(self) -> None:
        """Remove every probe this assistant placed (the end of an investigation, or an interrupt)."""
        for alias in list(self.live):
            try:
                self.inv.remove(alias)
            except ProbebookError:
                pass
        self.live.clear()

    # ------------------------------------------------------------------ telemetry
    def _t_alerts(self) -> ToolResult:
        frame = self.inv.telemetry.alerts()
        firing = frame.filter(frame["status"] != "resolved") if frame.height else frame
        rows = _rows(firing, ["name", "service", "severity", "summary", "started", "labels", "evidence_id"])
        return ToolResult("alerts", f"{len(rows)} alerts open", rows, [r["evidence_id"] for r in rows])

    def _t_promql(self, query: str, range: str = "15m") -> ToolResult:  # noqa: A002
        frame = self.inv.telemetry.promql(query, range=range)
        if not frame.height:
            return ToolResult("promql", f"no series for {query}", [])
        agg = frame.group_by("series").agg(
            [pl.col("value").first().alias("first"), pl.col("value").last().alias("last"),
             pl.col("value").max().alias("max"), pl.col("evidence_id").last().alias("evidence_id")]
        ).sort("last", descending=True)
        rows = _rows(agg)
        return ToolResult("promql", f"{agg.height} series for {query}", rows, [r["evidence_id"] for r in rows])

    def _t_logs(self, service: str, grep: str = "", trace: str = "", level: str = "", since: str = "15m",
                limit: int = 20) -> ToolResult:
        frame = self.inv.telemetry.logs(service, grep=grep or None, trace=trace or None, level=level or None,
                                        since=since, limit=max(1, min(int(limit), MAX_ROWS)) * 50)
        frame = frame.tail(max(1, min(int(limit), MAX_ROWS)))
        rows = _rows(frame, ["ts", "level", "message", "trace_id", "fields", "evidence_id"])
        return ToolResult("logs", f"{frame.height} lines of {service}", rows, [r["evidence_id"] for r in rows])

    def _t_changes(self, since: str = "6h", service: str = "") -> ToolResult:
        frame = self.inv.telemetry.changes(since=since, service=service or None)
        rows = _rows(frame, ["ts", "kind", "service", "summary", "author", "details", "evidence_id"])
        return ToolResult("changes", f"{len(rows)} changes since {since}", rows, [r["evidence_id"] for r in rows])

    # ------------------------------------------------------------------ code
    def _t_services(self) -> ToolResult:
        rows = _rows(self.inv.services())
        gone = dict(self.inv.unreachable)
        rows += [{"service": name, "health": "unreachable", "problem": why} for name, why in sorted(gone.items())]
        said = f"; unreachable: {', '.join(sorted(gone))}" if gone else ""
        return ToolResult("services", f"{len(rows) - len(gone)} services connected{said}", rows)

    def _t_modules(self, service: str, contains: str = "") -> ToolResult:
        mods = [m for m in self.inv.modules(service) if contains in m.name or contains in m.file]
        rows = [{"module": m.name, "file": m.file} for m in mods[:MAX_ROWS * 2]]
        return ToolResult("modules", f"{len(mods)} loaded modules of {service}", rows)

    def _t_source(self, service: str, path: str, start: int = 0, end: int = 0) -> ToolResult:
        src = self.inv.source_file(service, path, start or None, end or None)
        text = "\n".join(f"{n:>5}  {t}" for n, t in src.lines[:200])
        return ToolResult("source", f"{src.file} lines {src.lines[0][0] if src.lines else 0}-"
                                    f"{src.lines[-1][0] if src.lines else 0}", text)

    def _text(self, service: str, path: str) -> str:
        return "\n".join(t for _, t in self.inv.source_file(service, path).lines)

    def _t_functions(self, service: str, path: str) -> ToolResult:
        fns = functions(self._text(service, path))
        rows = [{"function": f.qualname, "lines": f"{f.start}-{f.end}", "async": f.is_async} for f in fns]
        return ToolResult("functions", f"{len(fns)} functions in {path}", rows[: MAX_ROWS * 2])

    def _t_callees(self, service: str, path: str, function: str) -> ToolResult:
        calls = callees(self._text(service, path), function)
        rows = [{"call": c.name, "line": c.line, "awaited": c.awaited} for c in calls]
        return ToolResult("callees", f"{function} makes {len(calls)} calls", rows[: MAX_ROWS * 2])

    def _t_find(self, service: str, path: str, text: str) -> ToolResult:
        src = self._text(service, path)
        rows = []
        for line in find_text(src, text)[:MAX_ROWS]:
            fn = enclosing(src, line)
            rows.append({"line": line, "function": fn.qualname if fn else "", "text": src.splitlines()[line - 1].strip()})
        return ToolResult("find", f"{len(rows)} lines of {path} hold {text!r}", rows)

    def _t_raises(self, service: str, path: str, function: str) -> ToolResult:
        rows = [{"line": ln, "raises": exc, "when": guard, "test_line": gl}
                for ln, exc, guard, gl in raises(self._text(service, path), function)]
        return ToolResult("raises", f"{function} raises at {len(rows)} places", rows)

    # ------------------------------------------------------------------ probes and evidence
    def _t_place_probe(self, service: str, kind: str, where: str, when: str = "", capture: Sequence[str] = (),
                       template: str = "", metric: str = "", ttl: str = "5m", rate: float = 0,
                       light: bool = False) -> ToolResult:
        if len(self.live) >= self.budget.max_live:
            raise ValueError(f"probe budget: {len(self.live)} live probes (the most is {self.budget.max_live}); "
                             f"remove_probe one first")
        if len(self.placed) >= self.budget.max_total:
            raise ValueError(f"probe budget: {len(self.placed)} probes placed in this investigation, the most is "
                             f"{self.budget.max_total}")
        from probebook.protocol.spec import parse_duration  # the one duration grammar
        ttl_s = min(parse_duration(ttl or "5m"), self.budget.max_ttl_s)
        rate_v = min(float(rate), self.budget.max_rate) if rate else None
        metric_spec: Any = None
        if kind == "metric":
            metric_spec = {"name": metric or "probe_duration_ms", "type": "duration"} if not metric or \
                metric.isidentifier() else metric
        record = self.inv.probe(kind, service, where, when=when or None, capture=list(capture),
                                template=template or None, metric=metric_spec, ttl=ttl_s, rate=rate_v,
                                limits=LIGHT if light else None, partial=True)  # the summary says who refused
        self.placed[record.alias] = kind
        self.live.append(record.alias)
        return ToolResult("place_probe", f"probe {record.alias} ({kind}) on {service} at {where}: {record.summary}",
                          {"probe": record.alias, "id": record.fleet_id})

    def _t_remove_probe(self, probe: str) -> ToolResult:
        if probe not in self.placed:  # another client's (or a person's) probe is theirs to remove
            raise LookupError(f"remove_probe: {probe!r} was not placed here; yours: {', '.join(self.placed) or 'none'}")
        self.inv.remove(probe)
        if probe in self.live:
            self.live.remove(probe)
        return ToolResult("remove_probe", f"probe {probe} removed")

    def events_of(self, alias: str, limit: int = 200) -> List[Dict[str, Any]]:
        """Stored events of one probe this investigation placed, oldest first, as event dicts."""
        rec = self.inv.records.get(alias)
        if rec is None:
            raise LookupError(f"no probe {alias!r} in this investigation; place_probe first")
        return probe_events(self.inv, rec, limit)

    def _t_wait_events(self, probe: str, count: int = 1, timeout: float = 20.0) -> ToolResult:
        deadline = time.monotonic() + max(0.0, min(float(timeout), 120.0))
        events = self.events_of(probe)
        while len(events) < count and time.monotonic() < deadline:
            time.sleep(0.25)
            events = self.events_of(probe)
        rows = [_brief_event(e) for e in events[-MAX_ROWS // 4:]]
        return ToolResult("wait_events", f"{len(events)} events of {probe}", rows, [e["evidence_id"] for e in events])

    def _t_sql(self, query: str) -> ToolResult:
        check_read_only(query)
        unknown = sorted(set(self.inv.store.tables_read(query)) - set(self.inv.store.tables()))
        if unknown:
            raise ValueError(f"sql: reads {unknown[0]!r}, which is not an evidence table; tables: "
                             f"{', '.join(self.inv.store.tables())}")
        frame = self.inv.sql(f"SELECT * FROM ({query.strip().rstrip(';')}) LIMIT {MAX_ROWS + 1}")
        rows = _rows(frame)
        ids = [r["evidence_id"] for r in rows if isinstance(r.get("evidence_id"), str)]
        return ToolResult("sql", f"{frame.height} rows", rows, ids)


def remove_placed(inv: Investigation, recs: List[Any]) -> None:
    """Remove the probes `recs` (`ProbeRecord`s) a step placed for itself; one its TTL removed already, or
    whose service went away, is passed over."""
    for rec in recs:
        try:
            inv.remove(rec.alias)
        except Exception:  # noqa: BLE001 - removed already (TTL), or its service went away
            pass


def probe_events(inv: Investigation, rec: Any, limit: int = 200) -> List[Dict[str, Any]]:
    """Stored events of the probe `rec` (a `ProbeRecord`), oldest first, as event dicts."""
    table, _ = KIND_TABLE[rec.kind]
    frame = inv.store.sql(f"SELECT * FROM {table} WHERE probe_id = '{rec.fleet_id}' ORDER BY ts LIMIT {int(limit)}")
    return [decode_row(table, row) for row in frame.to_dicts()]


def _brief_event(e: Dict[str, Any]) -> Dict[str, Any]:
    from probebook.protocol.capture_tree import plain
    out: Dict[str, Any] = {"evidence_id": e.get("evidence_id"), "function": e.get("function"), "line": e.get("line")}
    for k in ("value", "duration_ns", "exc_type", "name"):
        if e.get(k) is not None:
            out[k] = e[k]
    for k in ("expressions", "arguments", "locals"):
        if isinstance(e.get(k), dict):
            out[k] = {n: one_line(repr(plain(v)), 80) for n, v in list(e[k].items())[:12]}
    if isinstance(e.get("frames"), list):
        out["frames"] = [f"{f.get('function')}:{f.get('line')}" for f in e["frames"][-8:] if isinstance(f, dict)]
        if e["frames"] and isinstance(e["frames"][-1], dict):
            out["raise_locals"] = {n: one_line(repr(plain(v)), 80)
                                   for n, v in list((e["frames"][-1].get("locals") or {}).items())[:12]}
    if isinstance(e.get("stack"), list):
        out["stack"] = [f.get("function") for f in e["stack"][:10] if isinstance(f, dict)]
    if isinstance(e.get("message"), str):
        out["message"] = one_line(e["message"], 200)
    return out
