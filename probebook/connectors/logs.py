"""Log lines from JSON-lines files and from Loki, filtered the same way, into one `LogLine` record.

>>> result = read_log_files(["/var/log/shop/orders*.jsonl"],                      # doctest: +SKIP
...                         LogFilter(service="orders", since=time.time() - 600, level="warning", grep="timeout"))
>>> result.partial, result.notes                                                   # doctest: +SKIP
(True, ['orders.jsonl: 1 partial last line skipped (still being written)'])

Files are read in bounded memory whatever their size: line by line, lines over `max_line` bytes
skipped, at most `limit` matches kept (the newest), and a window's start found by bisecting the
file when it is large. A half-written last line, an over-long or malformed line, a file that
cannot be read, a scan that ran out of time: each is skipped, counted and reported in `notes`,
and the result is marked `partial`.

A line is a JSON object; its time is the first of ``ts``, ``time``, ``timestamp``, ``@timestamp``
(epoch s/ms/us/ns or ISO 8601), its level ``level``/``severity``/``levelname``, its message
``msg``/``message``/``event``, its trace ``trace_id``/``traceId`` or a W3C ``traceparent``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from probebook.errors import QueryRejected, SourceUnreachable, TelemetryInputError

from .http_json import check_base_url, get
from .timefmt import parse_time

__all__ = ["LogLine", "LogFilter", "LogResult", "JsonLinesFile", "read_log_files", "LokiClient", "logql_for",
           "LEVELS", "MAX_LINE"]

MAX_LINE = 1024 * 1024
LEVELS = {"trace": 5, "debug": 10, "info": 20, "notice": 25, "warning": 30, "error": 40, "critical": 50}
_LEVEL_ALIASES = {"warn": "warning", "err": "error", "fatal": "critical", "crit": "critical", "panic": "critical",
                  "emerg": "critical", "emergency": "critical", "alert": "critical", "information": "info",
                  "dbg": "debug", "verbose": "debug"}
_TIME_KEYS = ("ts", "time", "timestamp", "@timestamp", "t")
_LEVEL_KEYS = ("level", "severity", "levelname", "lvl", "log.level")
_MSG_KEYS = ("msg", "message", "event", "log")
_TRACE_KEYS = ("trace_id", "traceId", "traceid", "trace.id", "otelTraceID")
_SERVICE_KEYS = ("service", "service.name", "app")
_TRACE_RE = re.compile(r"^(?:[0-9a-f]{2}-)?([0-9a-f]{32})(?:-[0-9a-f]{16}-[0-9a-f]{2})?$")
_BISECT_ABOVE = 8 * 1024 * 1024  # smaller files are read from the start
_DISORDER = 60.0  # seconds a line may be out of time order and still be found by bisection


@dataclass(frozen=True)
class LogLine:
    ts: Optional[float]
    service: str
    level: str
    message: str
    trace_id: str
    fields: Dict[str, Any]  # the whole JSON object of the line
    source: str  # the file, or the Loki URL
    offset: Optional[int]  # byte offset in the file (None from Loki)
    line_hash: str  # of the raw line: the same line read again has the same hash


def normalize_level(value: Any) -> str:
    text = str(value or "").strip().lower()
    return _LEVEL_ALIASES.get(text, text)


def trace_id_of(value: Any) -> str:
    """A 32-hex trace id from a trace id or a W3C traceparent; '' otherwise."""
    m = _TRACE_RE.match(str(value or "").strip().lower())
    return m.group(1) if m else ""


def _first(obj: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = obj.get(key)
        if value not in (None, ""):
            return value
    return None


def _normalized(obj: Mapping[str, Any], default_service: str) -> Tuple[Optional[float], str, str, str]:
    """(ts, service, level, trace id) of a parsed line: what the filters look at first."""
    trace = trace_id_of(_first(obj, _TRACE_KEYS))
    if not trace and "traceparent" in obj:
        trace = trace_id_of(obj["traceparent"])
    return (parse_time(_first(obj, _TIME_KEYS)), str(_first(obj, _SERVICE_KEYS) or default_service),
            normalize_level(_first(obj, _LEVEL_KEYS)), trace)


def _line(obj: Dict[str, Any], parts: Tuple[Optional[float], str, str, str], raw: bytes, source: str,
          offset: Optional[int]) -> LogLine:
    message = _first(obj, _MSG_KEYS)
    text = message if isinstance(message, str) else ("" if message is None else json.dumps(message, default=str))
    return LogLine(parts[0], parts[1], parts[2], text, parts[3], obj, source, offset,
                   hashlib.sha1(raw).hexdigest()[:16])


@dataclass
class LogFilter:
    """What lines to keep. `level` is a minimum (``warning`` keeps warning, error, critical); `grep`
    a case-insensitive substring of the whole line; `fields` exact values of top-level fields."""

    service: Optional[str] = None
    since: Optional[float] = None
    until: Optional[float] = None
    level: Optional[str] = None
    grep: Optional[str] = None
    trace: Optional[str] = None
    fields: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.level is not None:
            self.level = normalize_level(self.level)
            if self.level not in LEVELS:
                raise TelemetryInputError(f"level: expected one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.trace is not None:
            tid = trace_id_of(self.trace)
            if not tid:
                raise TelemetryInputError(f"trace: expected a 32-hex trace id or a traceparent, got {self.trace!r}")
            self.trace = tid
        if self.since is not None and self.until is not None and self.until < self.since:
            raise TelemetryInputError("the window ends before it starts")
        self._needles = [n.lower().encode() for n in (self.grep, self.trace) if n]
        self._level_words: List[bytes] = []
        if self.level is not None and LEVELS[self.level] >= LEVELS["warning"]:  # most lines are below it
            names = list(LEVELS) + list(_LEVEL_ALIASES)
            self._level_words = [n.encode() for n in names if LEVELS.get(normalize_level(n), -1) >= LEVELS[self.level]]

    def raw_may_match(self, raw: bytes) -> bool:
        """A cheap test on the raw line before it is parsed (most lines of a big file fail it)."""
        if not (self._needles or self._level_words):
            return True
        low = raw.lower()
        if not all(n in low for n in self._needles):
            return False
        return not self._level_words or any(w in low for w in self._level_words)

    def accepts(self, parts: Tuple[Optional[float], str, str, str], obj: Mapping[str, Any]) -> bool:
        """Whether a line with these (ts, service, level, trace id) and fields is kept."""
        ts, service, level, trace = parts
        if self.service and service and service != self.service:
            return False
        if self.since is not None and (ts is None or ts < self.since):
            return False
        if self.until is not None and (ts is None or ts > self.until):
            return False
        if self.level is not None and LEVELS.get(level, -1) < LEVELS[self.level]:
            return False
        if self.trace and trace != self.trace:
            return False
        return all(str(obj.get(k)) == v for k, v in self.fields.items())

    def describe(self) -> Dict[str, Any]:
        return {k: v for k, v in (("service", self.service), ("since", self.since), ("until", self.until),
                                  ("level", self.level), ("grep", self.grep), ("trace", self.trace),
                                  ("fields", self.fields or None)) if v is not None}


@dataclass
class LogResult:
    lines: List[LogLine]
    sources: List[str]
    query: Dict[str, Any]  # what re-runs it: the source, the filter, the limit
    partial: bool = False
    notes: List[str] = field(default_factory=list)
    scanned: int = 0  # lines looked at
    matched: int = 0  # lines that matched (more than len(lines) when the limit cut them)


class JsonLinesFile:
    """One JSON-lines file, read line by line; counts what it had to skip."""

    def __init__(self, path: str, max_line: int = MAX_LINE) -> None:
        self.path, self.max_line = path, max_line
        self.malformed = self.oversize = 0
        self.partial_tail = False

    def lines(self, start: int = 0) -> Iterator[Tuple[int, bytes]]:
        """(offset, raw line) of each whole, non-blank line from `start`; see `parse`."""
        with open(self.path, "rb") as fh:
            if start > 0:
                fh.seek(start - 1)
                fh.readline(self.max_line + 1)  # to the start of the next whole line
            while True:
                offset = fh.tell()
                raw = fh.readline(self.max_line + 1)
                if not raw:
                    return
                if not raw.endswith(b"\n"):
                    if len(raw) > self.max_line:
                        self.oversize += 1
                        while raw and not raw.endswith(b"\n"):  # drop the rest of the long line
                            raw = fh.readline(1 << 20)
                        continue
                    if _parse(raw) is None:  # half-written: the writer has not finished it
                        self.partial_tail = True
                        return
                    yield offset, raw
                    return
                raw = raw.rstrip(b"\r\n")
                if raw.strip():
                    yield offset, raw

    def parse(self, raw: bytes) -> Optional[Dict[str, Any]]:
        """The JSON object of a line; None (and counted) when it is not one."""
        obj = _parse(raw)
        self.malformed += obj is None
        return obj

    def records(self, start: int = 0) -> Iterator[Tuple[int, bytes, Optional[Dict[str, Any]]]]:
        """(offset, raw line, its object or None) from `start`."""
        for offset, raw in self.lines(start):
            yield offset, raw, self.parse(raw)

    def offset_near(self, since: float) -> int:
        """A byte offset at or before the first line at `since` (minus `_DISORDER`), found by bisection."""
        size = os.path.getsize(self.path)
        if size < _BISECT_ABOVE:
            return 0
        target, lo, hi = since - _DISORDER, 0, size
        while hi - lo > 256 * 1024:
            mid = (lo + hi) // 2
            if (self._first_time(mid) or target) < target:
                lo = mid
            else:
                hi = mid
        return lo

    def _first_time(self, offset: int) -> Optional[float]:
        probe = JsonLinesFile(self.path, self.max_line).records(offset)  # its own counters: nothing skipped here
        try:
            for _, (_, _, obj) in zip(range(16), probe):
                stamp = parse_time(_first(obj, _TIME_KEYS)) if obj is not None else None
                if stamp is not None:
                    return stamp
            return None
        finally:
            probe.close()

    def notes(self) -> List[str]:
        name, out = os.path.basename(self.path), []
        if self.partial_tail:
            out.append(f"{name}: 1 partial last line skipped (still being written)")
        if self.oversize:
            out.append(f"{name}: {self.oversize} lines over {self.max_line} bytes skipped")
        if self.malformed:
            out.append(f"{name}: {self.malformed} lines that are not JSON objects skipped")
        return out


def _parse(raw: bytes) -> Optional[Dict[str, Any]]:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def expand_globs(patterns: Sequence[str]) -> List[str]:
    """Files matching `patterns`, oldest first (rotated files before the live one)."""
    found = {p for pattern in patterns for p in glob.glob(os.path.expanduser(pattern), recursive=True)
             if os.path.isfile(p)}
    return sorted(found, key=lambda p: (_mtime(p), p))


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def read_log_files(patterns: Sequence[str], flt: LogFilter, limit: int = 10000, max_line: int = MAX_LINE,
                   timeout: float = 30.0) -> LogResult:
    """The newest `limit` lines matching `flt` in the files of `patterns` (globs), oldest first."""
    if limit < 1:
        raise TelemetryInputError(f"limit must be at least 1, got {limit}")
    paths = expand_globs(patterns)
    if not paths:
        raise TelemetryInputError(f"no log files match {', '.join(patterns) or '(no paths)'}; check the paths")
    kept: Deque[LogLine] = deque(maxlen=limit)
    result = LogResult([], paths, {"files": list(patterns), "filter": flt.describe(), "limit": limit})
    deadline = time.monotonic() + timeout
    for path in paths:
        reader = JsonLinesFile(path, max_line)
        try:
            start = reader.offset_near(flt.since) if flt.since is not None else 0
            for offset, raw in reader.lines(start):
                result.scanned += 1
                if result.scanned % 4096 == 0 and time.monotonic() > deadline:
                    result.notes.append(f"{os.path.basename(path)}: stopped at byte {offset} after {timeout:g}s; "
                                        f"narrow the window (since) to read the rest")
                    break
                if not flt.raw_may_match(raw):
                    continue
                obj = reader.parse(raw)
                if obj is None:
                    continue
                parts = _normalized(obj, flt.service or "")
                if flt.accepts(parts, obj):
                    result.matched += 1
                    kept.append(_line(obj, parts, raw, path, offset))
        except OSError as exc:
            result.notes.append(f"{os.path.basename(path)}: cannot read ({exc.strerror or exc})")
        result.notes += reader.notes()
        if time.monotonic() > deadline:
            break
    if result.matched > len(kept):
        result.notes.append(f"{result.matched} lines matched; kept the newest {len(kept)} (raise limit or narrow "
                            f"the filter)")
    result.lines = sorted(kept, key=lambda l: (l.ts is None, l.ts or 0.0))
    result.partial = bool(result.notes)
    return result


# ---------------------------------------------------------------------- Loki
def _re2_escape(text: str) -> str:
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def logql_for(flt: LogFilter, label: str = "service") -> str:
    """The LogQL that pre-filters on Loki's side what `flt` keeps (`flt` still decides exactly)."""
    if not flt.service:
        raise TelemetryInputError("a Loki query needs a service (its stream selector)")
    query = f"{{{label}={json.dumps(flt.service)}}}"
    if flt.grep:
        query += f" |~ {json.dumps('(?i)' + _re2_escape(flt.grep))}"
    if flt.trace:
        query += f" |= {json.dumps(flt.trace)}"
    return query


class LokiClient:
    """Loki's ``/loki/api/v1/query_range``. `label` is the stream label that names a service."""

    def __init__(self, url: str, timeout: float = 10.0, headers: Optional[Mapping[str, str]] = None,
                 label: str = "service") -> None:
        self.url = check_base_url(url, "Loki")
        self.timeout, self.headers, self.label = float(timeout), dict(headers or {}), label

    def query_range(self, flt: LogFilter, limit: int = 1000, logql: Optional[str] = None) -> LogResult:
        """Lines of `flt.service` from `flt.since` (default: the last hour) to `flt.until` (now)."""
        if limit < 1:
            raise TelemetryInputError(f"limit must be at least 1, got {limit}")
        logql = logql or logql_for(flt, self.label)
        end = flt.until if flt.until is not None else time.time()
        start = flt.since if flt.since is not None else end - 3600
        params = {"query": logql, "start": str(int(start * 1e9)), "end": str(int(end * 1e9)), "limit": str(limit),
                  "direction": "backward"}
        answer = get(self.url, "/loki/api/v1/query_range", params, timeout=self.timeout, what="Loki",
                     headers=self.headers)
        if answer.status >= 400:  # Loki words its errors as plain text
            raise QueryRejected(f"Loki: {answer.text()}", answer.status)
        doc = answer.json("Loki", self.url)
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, dict) or data.get("resultType") != "streams":
            raise SourceUnreachable(f"Loki at {self.url} answered no streams: {answer.text(120)!r}")
        result = LogResult([], [self.url], {"loki": self.url, "logql": logql, "start": start, "end": end,
                                            "limit": limit, "filter": flt.describe()})
        count = 0
        for stream in data.get("result") or []:
            labels = stream.get("stream") or {}
            for ts_ns, text in stream.get("values") or []:
                count += 1
                raw = text.encode("utf-8", "replace")
                obj = _parse(raw)
                if obj is None:
                    obj = {"msg": text}
                for key, value in labels.items():
                    obj.setdefault(key, value)
                _, service, level, trace = _normalized(obj, flt.service or "")
                parts = (int(ts_ns) / 1e9, service, level, trace)  # Loki's time is the line's
                result.scanned += 1
                if flt.accepts(parts, obj):
                    result.lines.append(_line(obj, parts, f"{ts_ns} ".encode() + raw, self.url, None))
        result.matched = len(result.lines)
        if count >= limit:
            result.notes.append(f"Loki returned its limit of {limit} lines (the newest); narrow the window or "
                                f"raise limit")
        result.lines.sort(key=lambda l: l.ts or 0.0)
        result.partial = bool(result.notes)
        return result
