"""The investigation's telemetry API and magics over real Prometheus and Alertmanager: what is
fetched is stored once, with evidence ids and its query, and survives failures of later fetches."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import warnings

import polars as pl
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from probebook.errors import LabError, QueryRejected, SourceUnreachable, TelemetryInputError
from probebook.evidence import EvidenceStore
from probebook.kernel_ext.telemetry import register_telemetry_magics
from probebook.lab.changes import ChangeLog
from probebook.lab.endpoints import lab_endpoints, use_lab
from probebook.session import Investigation
from probebook.session.telemetry import PartialResultWarning, Telemetry, TelemetrySources
from probebook.widgets.plots import promql_figure
from support import end_process, wait_for
from telemetry_support import loki_server

T0 = time.time() - 30


def _webhook(url: str, *alerts) -> int:
    body = json.dumps({"version": "4", "status": "firing", "alerts": list(alerts)}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status


def _hook_alert(fp: str, status: str = "firing", ends: str = "0001-01-01T00:00:00Z"):
    return {"status": status, "labels": {"alertname": "PaymentsSlow", "service": "payments", "severity": "page"},
            "annotations": {"summary": "p95 over 2s"}, "startsAt": "2024-05-01T10:00:00Z", "endsAt": ends,
            "fingerprint": fp}


@pytest.fixture
def tel(monitoring, tmp_path):
    store = EvidenceStore(str(tmp_path / "evidence.duckdb"))
    telemetry = Telemetry(store, TelemetrySources(prometheus=monitoring.prometheus.url,
                                                  alertmanager=monitoring.alertmanager.url, timeout=5))
    yield telemetry
    telemetry.close()
    store.close()


def test_alerts_are_stored_once_with_ids_queries_and_timeline(tel, monitoring):
    (frame,) = wait_for(lambda: (f := tel.alerts()).filter(pl.col("name") == "QueueBacklog").height and (f,),
                        timeout=30)
    row = frame.filter(pl.col("name") == "QueueBacklog").row(0, named=True)
    assert row["status"] == "firing" and row["service"] == "worker"
    assert row["evidence_id"] == f"alert:{row['fingerprint']}:{int(row['started'].timestamp())}"
    tel.alerts()
    stored = tel.store.sql("SELECT evidence_id, query, source FROM alerts")
    assert stored["evidence_id"].n_unique() == stored.height  # polled twice, stored once
    assert stored.filter(pl.col("evidence_id") == row["evidence_id"])["query"][0].startswith("GET /api/v2/alerts")
    timeline = tel.store.sql("SELECT text, ref FROM timeline WHERE source = 'alert'")
    assert timeline.filter(pl.col("ref") == row["evidence_id"])["text"][0] == \
        "alert QueueBacklog firing on worker: more than 30 jobs wait in the queue"


def test_the_session_receiver_stores_webhooks_and_resolution_keeps_the_first_sighting(tel):
    url = tel.listen_alerts()
    assert tel.listen_alerts() == url  # one receiver per session
    assert _webhook(url, _hook_alert("pay1")) == 200
    first = tel.store.sql("SELECT status, first_seen, source FROM alerts WHERE fingerprint = 'pay1'").row(0)
    assert first[0] == "firing" and first[2] == "webhook"
    assert _webhook(url, _hook_alert("pay1", "resolved", "2024-05-01T10:05:00Z")) == 200
    status, seen, ends = tel.store.sql("SELECT status, first_seen, ends FROM alerts WHERE fingerprint = 'pay1'").row(0)
    assert (status, seen) == ("resolved", first[1]) and ends.timestamp() == 1714557900
    texts = tel.store.sql("SELECT text FROM timeline WHERE ref LIKE 'alert:pay1:%' ORDER BY ts")["text"].to_list()
    assert texts == ["alert PaymentsSlow firing on payments: p95 over 2s", "alert PaymentsSlow resolved on payments"]
    recent = tel.alerts(poll=False, recent="100000d")
    assert recent.filter(pl.col("fingerprint") == "pay1")["status"].to_list() == ["resolved"]


def test_an_open_alert_alertmanager_no_longer_holds_is_closed_on_poll(tel, monitoring):
    flip = monitoring.target.flip.labels(case="unheard")
    flip.set(1)
    (eid,) = wait_for(lambda: (f := tel.alerts().filter(pl.col("labels").str.contains('"case": "unheard"')))
                      .height and tuple(f["evidence_id"]), timeout=30)
    _webhook(tel.listen_alerts(), _hook_alert("webhook-only"))  # from elsewhere: not this Alertmanager's to close
    flip.set(0)  # it resolves while nobody listens to this Alertmanager's webhooks
    wait_for(lambda: tel.alerts().filter(pl.col("evidence_id") == eid)["status"].to_list() == ["resolved"],
             timeout=30)
    status = dict(tel.store.sql("SELECT fingerprint, status FROM alerts").rows())
    assert status["webhook-only"] == "firing"


def test_promql_stores_samples_once_and_reruns_the_stored_query(tel):
    wait_for(lambda: tel.promql("rate(http_requests_total[3s])", range="8s", step="1s").height >= 4, timeout=20)
    frame = tel.promql("rate(http_requests_total[3s])", range="20s", step="1s", end=time.time())
    qid = tel.last.query_id
    assert frame.columns[:3] == ["evidence_id", "ts", "value"] and frame["evidence_id"].n_unique() == frame.height
    assert frame["evidence_id"][0].startswith("prom:")
    before = tel.store.count("metric_series")
    again = tel.rerun(qid)
    assert again["evidence_id"].to_list() == frame["evidence_id"].to_list()
    assert tel.store.count("metric_series") == before  # the same samples are stored once
    rows = tel.store.sql(f"SELECT query, source, query_id, service, labels FROM metric_series "
                         f"WHERE evidence_id = '{frame['evidence_id'][0]}'").row(0, named=True)
    assert rows["query"] == "rate(http_requests_total[3s])" and rows["source"] == tel.sources.prometheus
    assert rows["service"] == "worker" and json.loads(rows["labels"])["route"] == "/api/orders"
    assert rows["query_id"] == qid
    params = json.loads(tel.store.sql(f"SELECT params FROM telemetry_queries WHERE evidence_id = '{qid}'")["params"][0])
    assert params["step"] == 1.0 and params["end"] - params["start"] == pytest.approx(20)
    fig = promql_figure(frame, "rate")
    assert len(fig.data) == frame["series"].n_unique() and fig.data[0].mode == "lines"
    instant = tel.promql("queue_depth")
    assert instant["value"].to_list() == [45.0] and promql_figure(instant).data[0].type == "bar"


def test_failed_fetches_lose_nothing_already_stored(tel):
    tel.promql("queue_depth")
    stored = tel.store.count("metric_series")
    with pytest.raises(QueryRejected, match="parse error"):
        tel.promql("sum(")
    tel.configure(prometheus="http://127.0.0.1:9")
    with pytest.raises(SourceUnreachable, match="not reachable"):
        tel.promql("queue_depth")
    assert tel.store.count("metric_series") == stored
    with pytest.raises(TypeError, match="promethues"):
        tel.configure(promethues="http://x:1")  # type: ignore[call-arg]
    with pytest.raises(TelemetryInputError, match="expected http://HOST:PORT"):
        tel.configure(alertmanager="am:9093")
    with pytest.raises(TelemetryInputError, match="step needs a range"):
        tel.promql("up", step="15s")


def test_logs_and_changes_are_evidence(tmp_path):
    store = EvidenceStore(":memory:")
    log = tmp_path / "orders.jsonl"
    line = {"ts": T0, "level": "error", "service": "orders", "msg": "pool exhausted", "trace_id": "a" * 32}
    log.write_text(json.dumps(line) + "\n" + json.dumps({**line, "msg": "half"})[:20])
    changes = ChangeLog(str(tmp_path / "changes.jsonl"))
    changes.record("config", "orders", "pool size 20 -> 2", by="dana", file="pool.toml")
    tel = Telemetry(store, TelemetrySources(log_paths={"orders": [str(log)]}, change_logs=[changes.path]))
    with pytest.warns(PartialResultWarning, match="partial last line"):
        frame = tel.logs("orders", since="1h", level="warning")
    assert frame["message"].to_list() == ["pool exhausted"] and frame["evidence_id"][0].startswith("logline:orders:")
    assert tel.last.partial and tel.last.rows == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PartialResultWarning)
        tel.logs("orders", trace="a" * 32)
    assert store.count("log_lines") == 1
    assert json.loads(store.sql("SELECT query FROM log_lines")["query"][0])["filter"]["level"] == "warning"
    with pytest.raises(TelemetryInputError, match="no log source for payments"):
        tel.logs("payments")
    got = tel.changes(since="2h")
    assert got.select("kind", "service", "summary", "author").row(0) == ("config", "orders", "pool size 20 -> 2",
                                                                          "dana")
    tel.changes(since="2h")
    assert store.count("changes") == 1
    assert store.sql("SELECT text FROM timeline WHERE source = 'change'")["text"].to_list() == [
        "config orders: pool size 20 -> 2"]
    with pytest.raises(TelemetryInputError, match="since: expected a duration"):
        tel.changes(since="lately")


def test_log_and_change_fetches_rerun_over_the_window_they_read(tmp_path):
    """A postmortem runs a fetch again and must see what the investigation saw, not what came after."""
    store = EvidenceStore(":memory:")
    log = tmp_path / "orders.jsonl"
    line = {"ts": time.time() - 60, "level": "error", "service": "orders", "msg": "pool exhausted"}
    log.write_text(json.dumps(line) + "\n")
    changes = ChangeLog(str(tmp_path / "changes.jsonl"))
    changes.record("config", "orders", "pool size 20 -> 2", by="dana")
    tel = Telemetry(store, TelemetrySources(log_paths={"orders": [str(log)]}, change_logs=[changes.path]))
    logs = tel.logs("orders", since="1h", level="error")
    logs_qid = tel.last.query_id
    got = tel.changes(since="2h")
    changes_qid = tel.last.query_id
    time.sleep(0.05)
    with open(log, "a", encoding="utf-8") as fh:  # after the fetches: not theirs to see again
        fh.write(json.dumps({**line, "ts": time.time() + 1, "msg": "later"}) + "\n")
    changes.record("deploy", "orders", "orders 2.9.0", by="ci")
    assert tel.rerun(logs_qid)["message"].to_list() == logs["message"].to_list() == ["pool exhausted"]
    assert tel.rerun(changes_qid)["summary"].to_list() == got["summary"].to_list() == ["pool size 20 -> 2"]
    assert tel.logs("orders", since="1h")["message"].to_list() == ["pool exhausted", "later"]  # a new fetch sees it


def test_logs_come_from_loki_where_a_service_has_no_files():
    line = json.dumps({"level": "error", "msg": "card declined", "trace_id": "b" * 32})
    loki = loki_server([{"stream": {"service": "payments"}, "values": [[str(int(T0 * 1e9)), line]]}])
    store = EvidenceStore(":memory:")
    try:
        tel = Telemetry(store, TelemetrySources(loki=loki.url, log_paths={"orders": ["/nowhere/*.jsonl"]}))
        frame = tel.logs("payments", grep="declined", since="1h")
        assert frame.select("service", "level", "message", "trace_id").row(0) == ("payments", "error", "card declined",
                                                                                 "b" * 32)
        assert loki.asked[0][1]["query"] == '{service="payments"} |~ "(?i)declined"'
        kind, source, query = store.sql("SELECT kind, source, query FROM telemetry_queries").row(0)
        assert (kind, source) == ("loki", loki.url) and json.loads(query)["logql"] == loki.asked[0][1]["query"]
        with pytest.raises(TelemetryInputError, match="no log files match /nowhere"):
            tel.logs("orders")
    finally:
        loki.shutdown()
        loki.server_close()
        store.close()


def test_sources_from_a_lab_manifest_and_the_environment(tmp_path):
    manifest = {"services": {"orders": {"log": str(tmp_path / "logs" / "orders.jsonl")}, "bank": {"log": None}},
                "changes": str(tmp_path / "changes.jsonl"),
                "monitoring": {"prometheus": "http://127.0.0.1:9090", "alertmanager": None}}
    (tmp_path / "lab.json").write_text(json.dumps(manifest))
    env = {"PROBEBOOK_ALERTMANAGER_URL": "http://127.0.0.1:9093", "PROBEBOOK_GIT_PATHS": "orders=svc/orders"}
    store = EvidenceStore(":memory:")
    tel = Telemetry(store, TelemetrySources.from_env(env))
    try:
        sources = use_lab(tel, str(tmp_path))
        assert tel.sources == sources
        assert (sources.prometheus, sources.alertmanager) == ("http://127.0.0.1:9090", "http://127.0.0.1:9093")
        assert sources.log_files("orders") == [manifest["services"]["orders"]["log"]]
        assert sources.log_files("bank") == []
        assert sources.change_logs == [manifest["changes"]] and sources.git_paths == {"orders": "svc/orders"}
        assert tel.configure(prometheus="http://127.0.0.1:9091").prometheus == "http://127.0.0.1:9091"  # set wins
        assert tel.configure(prometheus="").prometheus is None and tel.sources.alertmanager  # "" clears one
    finally:
        tel.close()
        store.close()
    with pytest.raises(LabError, match="no lab in .*probebook lab up"):
        lab_endpoints(str(tmp_path / "empty"))
    with pytest.raises(TelemetryInputError, match="PROBEBOOK_GIT_PATHS: expected SERVICE=VALUE"):
        TelemetrySources.from_env({"PROBEBOOK_GIT_PATHS": "orders"})


def test_an_investigation_has_one_telemetry_over_its_store(monitoring):
    inv = Investigation(":memory:")
    try:
        tel = inv.telemetry
        assert inv.telemetry is tel and tel.store is inv.store
        tel.configure(prometheus=monitoring.prometheus.url)
        assert inv.telemetry.promql("queue_depth").height > 0
        assert inv.sql("SELECT count(*) AS n FROM metric_series")["n"][0] > 0  # in the investigation's evidence
    finally:
        inv.close()


@pytest.fixture
def shell(monitoring, tmp_path):
    import plotly.io as pio

    from IPython.testing import globalipapp

    globalipapp.start_ipython()  # the one shell of the process, shared with tests/notebook
    ip = globalipapp.get_ipython()
    inv = Investigation(str(tmp_path / "magics.duckdb"))
    register_telemetry_magics(ip, lambda: inv)
    log = tmp_path / "orders.jsonl"
    log.write_text(json.dumps({"ts": time.time(), "level": "error", "service": "orders", "msg": "boom"}) + "\n")
    ip.run_line_magic("telemetry", f"prometheus={monitoring.prometheus.url} alertmanager={monitoring.alertmanager.url}")
    inv.telemetry.configure(log_paths={"orders": [str(log)]})
    renderer, pio.renderers.default = pio.renderers.default, "plotly_mimetype"
    yield ip
    pio.renderers.default = renderer
    inv.close()


def test_magics_show_data_and_bind_frames(shell):
    with capture_output() as out:
        shell.run_line_magic("promql", "--range 10s --step 1s --out rates rate(http_requests_total{code=~\"2..\"}[3s])")
    assert any("application/vnd.plotly.v1+json" in o.data for o in out.outputs)
    assert shell.user_ns["rates"]["evidence_id"].n_unique() == shell.user_ns["rates"].height > 0
    assert "samples of 1 series" in out.stdout
    frame = shell.run_line_magic("logs", "orders --level error --since 1h")
    assert frame["message"].to_list() == ["boom"]
    alerts = shell.run_line_magic("alerts", "--recent 1h")
    assert "QueueBacklog" in alerts["name"].to_list()
    with capture_output() as out:
        shell.run_line_magic("telemetry", "")
    assert "prometheus: http://127.0.0.1:" in out.stdout


def test_telemetry_magic_adds_a_running_labs_sources(shell, tmp_path):
    state = tmp_path / "lab"
    state.mkdir()
    (state / "lab.json").write_text(json.dumps({
        "services": {"orders": {"log": str(state / "orders.jsonl")}}, "changes": str(state / "changes.jsonl"),
        "monitoring": {"prometheus": "http://127.0.0.1:9099", "alertmanager": None}}))
    with capture_output() as out:
        shell.run_line_magic("telemetry", f"--lab {state}")
    assert "prometheus: http://127.0.0.1:9099" in out.stdout  # the lab's, over the one set before
    assert "alertmanager: http://127.0.0.1:" in out.stdout  # kept: this lab has none
    assert str(state / "changes.jsonl") in out.stdout and str(state / "orders.jsonl") in out.stdout


@pytest.mark.parametrize("magic,line,words", [
    ("promql", "", "%promql: no query"),
    ("promql", "--window 5m up", "unknown option --window"),
    ("promql", "--range soon up", "range: expected a duration"),
    ("promql", "--range 1m --step never up", "step: expected a duration"),
    ("promql", "sum(", "Prometheus: bad_data: "),
    ("logs", "", "the following arguments are required: service"),
    ("logs", "orders --level loud", "level: expected one of"),
    ("logs", "orders --trace xyz", "trace: expected a 32-hex"),
    ("logs", "orders --limit 0", "limit must be at least 1"),
    ("changes", "--since 2h", "no change source configured"),
    ("alerts", "--recent whenever", "recent: expected a duration"),
    ("telemetry", "promethus=http://x:1", "expected prometheus="),
    ("telemetry", "loki=nowhere", "Loki URL: expected http://HOST:PORT"),
    ("telemetry", "--lab /nonexistent/probebook-lab", "no lab in /nonexistent/probebook-lab"),
])
def test_magic_mistakes_are_one_line_usage_errors(shell, magic, line, words):
    with pytest.raises(UsageError) as err:
        shell.run_line_magic(magic, line)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_probebook_alerts_listen_prints_alerts_and_stores_them(tmp_path):
    evidence = str(tmp_path / "alerts.duckdb")
    proc = subprocess.Popen([sys.executable, "-m", "probebook.cli", "alerts", "listen", "--port", "0",
                             "--evidence", evidence], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        banner = proc.stderr.readline()
        assert banner.startswith("probebook: receiving alerts at http://127.0.0.1:")
        url = banner.split(" at ")[1].split()[0]
        assert _webhook(url, _hook_alert("cli1")) == 200
        assert proc.stdout.readline().strip() == "FIRING PaymentsSlow service=payments severity=page: p95 over 2s"
        req = urllib.request.Request(url, data=b"{oops", method="POST", headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 400
        assert proc.stderr.readline().startswith("probebook: rejected a request: 400 malformed JSON")
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        end_process(proc)
    store = EvidenceStore(evidence)
    assert store.sql("SELECT name, status FROM alerts").rows() == [("PaymentsSlow", "firing")]
    store.close()
    bad = subprocess.run([sys.executable, "-m", "probebook.cli", "alerts", "listen", "--port", "70000"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "probebook alerts listen: error: --port must be from 0 to 65535, got 70000"
    folder = subprocess.run([sys.executable, "-m", "probebook.cli", "alerts", "listen", "--port", "0",
                             "--evidence", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert folder.returncode == 2 and folder.stderr.count("\n") == 1 and \
        folder.stderr.startswith(f"probebook alerts listen: error: cannot open {tmp_path}: IO Error")
