"""JSON-lines log files (huge, half-written, rotated, malformed) and the Loki client.

There is no Loki server here: the Loki tests run the client against a small HTTP server in this
file that answers in Loki's documented query_range JSON format (the protocol-level fake DESIGN
allows for what cannot run here)."""

from __future__ import annotations

import json
import os
import tracemalloc

import pytest

from probebook.connectors.logs import LogFilter, LokiClient, read_log_files
from probebook.errors import QueryRejected, TelemetryInputError
from telemetry_support import loki_server

T0 = 1_714_557_600.0
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _line(i: int, ts: float, level: str = "info", msg: str = "", **fields) -> str:
    return json.dumps({"ts": ts, "level": level, "service": "orders", "msg": msg or f"request {i} done",
                       "trace_id": fields.pop("trace_id", ""), **fields}) + "\n"


def _write(path, lines) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(lines)


def test_filters_level_grep_trace_fields_and_window(tmp_path):
    path = tmp_path / "orders.jsonl"
    _write(path, [
        _line(1, T0, "debug", "cache miss"),
        _line(2, T0 + 1, "info", "charge sent", route="/charges", trace_id=TRACE),
        _line(3, T0 + 2, "warn", "Payment TIMEOUT after 5s", route="/charges"),
        _line(4, T0 + 3, "error", "payment failed", route="/refunds", trace_id=TRACE),
        json.dumps({"time": "2024-05-01T10:00:04Z", "severity": "ERROR", "message": "iso time",
                    "service": "orders"}) + "\n",
        json.dumps({"ts": T0 + 5, "level": "error", "service": "payments", "msg": "not ours"}) + "\n",
    ])
    def msgs(**kw):
        return [line.message for line in read_log_files([str(path)], LogFilter(service="orders", **kw)).lines]

    assert msgs(level="warning") == ["Payment TIMEOUT after 5s", "payment failed", "iso time"]
    assert msgs(grep="timeout") == ["Payment TIMEOUT after 5s"]
    assert msgs(trace=f"00-{TRACE}-00f067aa0ba902b7-01") == ["charge sent", "payment failed"]
    assert msgs(fields={"route": "/charges"}) == ["charge sent", "Payment TIMEOUT after 5s"]
    assert msgs(since=T0 + 2, until=T0 + 3.5) == ["Payment TIMEOUT after 5s", "payment failed"]
    result = read_log_files([str(path)], LogFilter(service="orders", level="error"))
    assert [l.level for l in result.lines] == ["error", "error"] and not result.partial
    assert result.lines[1].ts == T0 + 4 and result.lines[0].trace_id == TRACE and result.lines[0].offset > 0
    with pytest.raises(TelemetryInputError, match="level: expected one of"):
        LogFilter(level="loud")
    with pytest.raises(TelemetryInputError, match="trace: expected a 32-hex"):
        LogFilter(trace="abc")
    with pytest.raises(TelemetryInputError, match="no log files match"):
        read_log_files([str(tmp_path / "nope*.jsonl")], LogFilter())


def test_a_half_written_last_line_is_skipped_reported_and_read_once_complete(tmp_path):
    path = tmp_path / "orders.jsonl"
    whole = _line(3, T0 + 2, msg="third")
    _write(path, [_line(1, T0), _line(2, T0 + 1), whole[:25]])
    first = read_log_files([str(path)], LogFilter())
    assert [l.message for l in first.lines] == ["request 1 done", "request 2 done"]
    assert first.partial and first.notes == ["orders.jsonl: 1 partial last line skipped (still being written)"]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(whole[25:])
    second = read_log_files([str(path)], LogFilter())
    assert [l.message for l in second.lines][-1] == "third" and not second.partial
    assert [l.line_hash for l in second.lines[:2]] == [l.line_hash for l in first.lines]


def test_long_and_malformed_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "orders.jsonl"
    _write(path, [_line(1, T0), "x" * 3_000_000 + "\n", "not json\n", "[1, 2]\n", "\n", _line(2, T0 + 1)])
    result = read_log_files([str(path)], LogFilter(), max_line=1_000_000)
    assert [l.message for l in result.lines] == ["request 1 done", "request 2 done"]
    assert result.notes == ["orders.jsonl: 1 lines over 1000000 bytes skipped",
                            "orders.jsonl: 2 lines that are not JSON objects skipped"]


def test_rotated_files_by_glob_and_the_newest_lines_kept_at_the_limit(tmp_path):
    old, live = tmp_path / "orders.jsonl.1", tmp_path / "orders.jsonl"
    _write(old, [_line(i, T0 + i) for i in range(5)])
    _write(live, [_line(i, T0 + i) for i in range(5, 10)])
    os.utime(old, (T0, T0))
    result = read_log_files([str(tmp_path / "orders.jsonl*")], LogFilter(), limit=3)
    assert [l.message for l in result.lines] == ["request 7 done", "request 8 done", "request 9 done"]
    assert result.matched == 10 and result.partial and "kept the newest 3" in result.notes[-1]
    assert result.sources == [str(old), str(live)]


def _big_file(path, n: int) -> None:
    template = ('{"ts": %.2f, "level": "%s", "service": "orders", "msg": "request %d done", "trace_id": "", '
                '"pad": "' + "p" * 60 + '"}\n')
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(template % (T0 + i * 0.01, "error" if i % 1000 == 0 else "info", i) for i in range(n))


def test_a_big_file_is_read_in_bounded_memory(tmp_path):
    path = tmp_path / "big.jsonl"
    n = 20_000
    _big_file(path, n)
    size = os.path.getsize(path)
    tracemalloc.start()
    try:
        result = read_log_files([str(path)], LogFilter(level="info"), limit=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.matched == n and len(result.lines) == 20 and result.scanned == n
    assert result.lines[-1].message == f"request {n - 1} done"
    assert peak < size / 4, f"peak {peak} bytes reading a {size} byte file"


def test_a_huge_file_is_bisected_to_the_window(tmp_path):
    path = tmp_path / "huge.jsonl"
    n = 100_000
    _big_file(path, n)
    assert os.path.getsize(path) > 12 * 1024 * 1024
    end = T0 + (n - 1) * 0.01
    last_minute = read_log_files([str(path)], LogFilter(since=end - 60))
    assert len(last_minute.lines) == 6001 and last_minute.lines[0].ts >= end - 60
    assert last_minute.scanned < n / 4  # found by bisection, not by reading the file from the start
    errors = read_log_files([str(path)], LogFilter(level="error", since=end - 60))
    assert [l.message for l in errors.lines] == [f"request {i} done" for i in range(94000, n, 1000)]


# ---------------------------------------------------------------------- Loki (protocol-level fake)
@pytest.fixture
def loki():
    servers = []

    def start(streams=(), status=200, error=""):
        servers.append(loki_server(list(streams), status, error))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _ns(ts: float) -> str:
    return str(int(ts * 1e9))


def test_loki_query_range_filters_like_files(loki):
    server = loki([{"stream": {"service": "orders", "level": "error"}, "values": [
        [_ns(T0 + 2), json.dumps({"msg": "Payment TIMEOUT", "trace_id": TRACE})],
        [_ns(T0 + 1), "plain text timeout line"]]},
        {"stream": {"service": "orders"}, "values": [[_ns(T0 + 3), json.dumps({"msg": "timeout", "level": "info"})]]}])
    url = f"http://127.0.0.1:{server.server_address[1]}"
    result = LokiClient(url, timeout=3).query_range(
        LogFilter(service="orders", grep="TimeOut", level="error", since=T0, until=T0 + 10), limit=100)
    assert [(l.message, l.level) for l in result.lines] == [("plain text timeout line", "error"),
                                                            ("Payment TIMEOUT", "error")]
    assert result.lines[1].trace_id == TRACE and result.lines[0].ts == pytest.approx(T0 + 1)
    path, params = server.asked[0]
    assert path == "/loki/api/v1/query_range"
    assert params["query"] == '{service="orders"} |~ "(?i)TimeOut"'
    assert (params["start"], params["end"], params["limit"], params["direction"]) == (_ns(T0), _ns(T0 + 10), "100",
                                                                                      "backward")
    assert not result.partial and result.query["logql"] == params["query"]


def test_loki_limit_marks_partial_and_errors_are_lokis_words(loki):
    full = loki([{"stream": {"service": "orders"}, "values": [[_ns(T0 + i), f"line {i}"] for i in range(3)]}])
    result = LokiClient(f"http://127.0.0.1:{full.server_address[1]}").query_range(LogFilter(service="orders"), limit=3)
    assert result.partial and "limit of 3" in result.notes[0]
    bad = loki(status=400, error="parse error at line 1, col 9: syntax error: unexpected IDENTIFIER\n")
    with pytest.raises(QueryRejected, match="^Loki: parse error at line 1, col 9: syntax error: unexpected IDENT"):
        LokiClient(f"http://127.0.0.1:{bad.server_address[1]}").query_range(LogFilter(service="orders"))
    with pytest.raises(TelemetryInputError, match="needs a service"):
        LokiClient(f"http://127.0.0.1:{bad.server_address[1]}").query_range(LogFilter())
