"""PromQL against a real Prometheus: frames, errors in the server's words, down/slow servers, partial ranges."""

from __future__ import annotations

import os
import socket
import threading
import time

import polars as pl
import pytest

from probebook.connectors.prometheus import PrometheusClient
from probebook.errors import QueryRejected, SourceTimeout, SourceUnreachable, TelemetryInputError
from support import wait_for
from telemetry_support import start_prometheus


def test_instant_query_has_one_row_per_series_with_labels_as_columns(monitoring):
    prom = PrometheusClient(monitoring.prometheus.url, timeout=5)
    result = wait_for(lambda: (r := prom.query("queue_depth")).frame.height and r)
    row = result.frame.row(0, named=True)
    assert (row["metric"], row["service"], row["queue"], row["value"]) == ("queue_depth", "worker", "jobs", 45.0)
    assert row["series"].startswith('queue_depth{') and 'queue="jobs"' in row["series"]
    assert result.frame.schema["ts"] == pl.Datetime("us", "UTC")
    assert not result.partial
    # a label named like one of our columns does not overwrite it
    clash = prom.query('label_replace(vector(7), "value", "x", "", "")')
    assert clash.frame.row(0, named=True)["value"] == 7.0 and clash.frame["label_value"].to_list() == ["x"]
    scalar = prom.query("1 + 1")
    assert scalar.frame["value"].to_list() == [2.0] and scalar.result_type == "scalar"


def test_range_query_in_chunks_equals_one_request(monitoring):
    prom = PrometheusClient(monitoring.prometheus.url, timeout=5)
    end = 0.0

    def enough():
        nonlocal end
        end = time.time()
        whole = prom.query_range("rate(http_requests_total[3s])", end - 6, end, "1s")
        return whole.frame.height >= 4 and whole

    whole = wait_for(enough, timeout=20)
    chunks = []
    chunked = PrometheusClient(monitoring.prometheus.url, timeout=5, max_points=3).query_range(
        "rate(http_requests_total[3s])", end - 6, end, "1s", progress=lambda done, total: chunks.append((done, total)))
    assert whole.frame["value"].max() > 0
    assert chunks == [(1, 3), (2, 3), (3, 3)]
    assert chunked.frame.equals(whole.frame)
    assert whole.frame["route"].unique().to_list() == ["/api/orders"]


def test_bad_promql_is_rejected_in_prometheus_own_words(monitoring):
    prom = PrometheusClient(monitoring.prometheus.url, timeout=5)
    with pytest.raises(QueryRejected) as err:
        prom.query("rate(http_requests_total[1m]")
    assert err.value.status == 400 and err.value.error_type == "bad_data"
    assert "parse error" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(QueryRejected, match="ranges only allowed for vector selectors|expected type range vector"):
        prom.query_range("rate(http_requests_total)", time.time() - 60, time.time(), 15)
    with pytest.raises(TelemetryInputError, match="empty"):
        prom.query("   ")
    with pytest.raises(TelemetryInputError, match="step"):
        prom.query_range("up", time.time() - 60, time.time(), "fast")


def test_server_down_is_a_clear_error_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(SourceUnreachable, match="not reachable .*Connection refused.*is it running"):
        PrometheusClient(f"http://127.0.0.1:{port}", timeout=5).query("up")
    assert time.monotonic() - started < 2
    with pytest.raises(TelemetryInputError, match="expected http://HOST:PORT"):
        PrometheusClient("localhost:9090")


def test_a_server_that_never_answers_times_out():
    with socket.socket() as hole:  # accepts connections (the kernel's backlog) and never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        started = time.monotonic()
        with pytest.raises(SourceTimeout, match="did not answer within 1s"):
            PrometheusClient(f"http://127.0.0.1:{hole.getsockname()[1]}", timeout=1).query("up")
        assert 0.9 < time.monotonic() - started < 3


def test_a_server_that_trickles_bytes_times_out_on_the_deadline():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(0.1):  # every read gets a byte in time: only a deadline ends this
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(SourceTimeout):
            PrometheusClient(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=1).query("up")
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_a_range_cut_short_by_the_server_going_down_is_partial(tmp_path):
    prom = start_prometheus(str(tmp_path / "prom"), {}, None).wait_ready()
    try:
        client = PrometheusClient(prom.url, timeout=5, max_points=10)
        end = time.time()

        def kill_after_first(done: int, total: int) -> None:
            if done == 1:
                prom.stop()

        result = client.query_range("vector(1)", end - 29, end, 1, progress=kill_after_first)
    finally:
        prom.stop()
    assert result.partial and result.frame.height == 10
    assert "2 of 3 chunks not read" in result.warnings[0] and "not reachable" in result.warnings[0]
    with pytest.raises(SourceUnreachable):  # nothing read at all is an error, not an empty frame
        client.query_range("vector(1)", end - 29, end, 1)
    assert os.path.isdir(tmp_path / "prom" / "data")
