"""Alerts from a real Alertmanager fed by a real Prometheus with the lab's rules: polling, the
webhook receiver, de-duplication, resolution, and hostile payloads."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time

import pytest

from probebook.connectors.alertmanager import AlertBook, AlertmanagerClient, AlertReceiver, parse_webhook
from probebook.errors import SourceUnreachable
from support import wait_for


def _post(port: int, body: bytes, headers=None, timeout: float = 5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/", body=body, headers=headers if headers is not None else
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _payload(*alerts, status="firing") -> bytes:
    return json.dumps({"version": "4", "status": status, "receiver": "probebook", "groupLabels": {},
                       "externalURL": "http://am.example:9093", "alerts": list(alerts)}).encode()


def _alert(name="Backlog", fp="f1", status="firing", starts="2024-05-01T10:00:00Z",
           ends="0001-01-01T00:00:00Z", **labels):
    return {"status": status, "labels": {"alertname": name, "service": "worker", "severity": "page", **labels},
            "annotations": {"summary": "jobs wait"}, "startsAt": starts, "endsAt": ends,
            "generatorURL": "http://prom.example/graph", "fingerprint": fp}


def test_polling_normalizes_the_lab_alerts(monitoring):
    am = AlertmanagerClient(monitoring.alertmanager.url, timeout=5)
    alerts = wait_for(lambda: (got := {a.name: a for a in am.alerts()}) and
                      {"QueueBacklog", "ServiceDown"} <= set(got) and got, timeout=30)
    backlog = alerts["QueueBacklog"]
    assert (backlog.service, backlog.severity, backlog.status) == ("worker", "page", "firing")
    assert backlog.summary == "more than 30 jobs wait in the queue"
    assert backlog.started and backlog.started <= time.time() and backlog.ends is None
    port = monitoring.prometheus.url.rsplit(":", 1)[1]
    assert len(backlog.fingerprint) == 16 and f":{port}/graph?g0.expr=" in backlog.source_url  # the rule's graph
    assert alerts["ServiceDown"].service == "ghost"
    assert "TelemetryTestFlip" not in alerts


def test_webhook_delivers_each_alert_once_with_the_polled_fingerprint(monitoring):
    hooked = monitoring.wait_webhook(lambda a: a.name == "QueueBacklog")
    polled = next(a for a in AlertmanagerClient(monitoring.alertmanager.url).alerts() if a.name == "QueueBacklog")
    assert hooked.fingerprint == polled.fingerprint and hooked.started == polled.started
    assert sum(1 for a in monitoring.webhook if a.fingerprint == polled.fingerprint) == 1
    book = AlertBook()
    assert book.update([hooked]) == [hooked] and book.update([polled]) == [] and len(book) == 1


def test_a_resolved_alert_arrives_resolved_and_stays_so(monitoring):
    flip = monitoring.target.flip.labels(case="resolve")
    mine = lambda a: a.name == "TelemetryTestFlip" and a.labels.get("case") == "resolve"  # noqa: E731
    flip.set(1)
    fired = monitoring.wait_webhook(lambda a: mine(a) and a.status == "firing")
    assert fired.severity == "ticket" and fired.service == "worker"
    flip.set(0)
    done = monitoring.wait_webhook(lambda a: mine(a) and a.status == "resolved")
    assert done.fingerprint == fired.fingerprint and done.ends and done.ends >= fired.started
    book = monitoring.receiver.book
    assert next(a for a in book.all() if a.fingerprint == fired.fingerprint).status == "resolved"
    assert book.update([fired]) == []  # a late copy saying "firing" is stale


def test_alertmanager_down_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceUnreachable, match=f"Alertmanager at http://127.0.0.1:{port} is not reachable"):
        AlertmanagerClient(f"http://127.0.0.1:{port}", timeout=2).alerts()


@pytest.fixture(scope="module")
def receiver():
    got = []
    rec = AlertReceiver(got.extend, max_body=64 * 1024).start()
    rec.got = got  # type: ignore[attr-defined]
    yield rec
    rec.stop()


HOSTILE = [
    (b"{not json", 400, "malformed JSON"),
    (b"[" * 50000, 400, "nested too deeply"),
    (b"\xff\xfe\x00", 400, "malformed JSON|not UTF-8"),
    (b'"a string"', 422, "expected a JSON object"),
    (b'{"alerts": "all of them"}', 422, "alerts: expected a list"),
    (b'{"alerts": [17]}', 422, r"alerts\[0\]: expected an alert object"),
    (b'{"alerts": [{"status": "firing", "labels": ["a", "b"]}]}', 422, r"alerts\[0\].labels: expected an object"),
    (b'{"alerts": [{"status": "firing", "labels": {"alertname": 5}}]}', 422, "alertname: expected a string"),
    (b'{"alerts": [{"status": "firing", "labels": {}, "startsAt": 1714557600}]}', 422, "startsAt: expected a string"),
    (b'{"alerts": [{"status": "firing", "labels": {}, "startsAt": "yesterday"}]}', 422, "RFC 3339"),
    (b'{"alerts": [{"status": "burning", "labels": {}}]}', 422, "expected 'firing' or 'resolved'"),
    (b'{"alerts": [{"status": "firing", "labels": {}, "annotations": {"summary": {"x": 1}}}]}', 422, "summary"),
]


@pytest.mark.parametrize("body,status,words", HOSTILE, ids=[h[2][:20] for h in HOSTILE])
def test_hostile_payloads_get_a_4xx_and_the_receiver_keeps_serving(receiver, body, status, words):
    before = len(receiver.got)
    assert _post(receiver.port, _payload(_alert(fp=f"keep{before}")))[0] == 200
    code, doc = _post(receiver.port, body)
    assert code == status
    assert re.search(words, doc["error"]), doc
    assert "\n" not in doc["error"]
    assert receiver.rejections[-1].startswith(str(status))
    assert _post(receiver.port, _payload(_alert(fp=f"after{before}")))[0] == 200
    assert [a.fingerprint for a in receiver.got[before:]] == [f"keep{before}", f"after{before}"]  # none lost or doubled


def test_a_10_mb_body_is_refused_unread_and_the_receiver_lives_on(receiver):
    big = b'{"alerts": [' + b" " * (10 * 1024 * 1024) + b"]}"
    code, doc = _post(receiver.port, big, timeout=10)
    assert code == 413 and "over the 65536 byte limit" in doc["error"]
    assert _post(receiver.port, _payload(_alert(fp="after-big")))[0] == 200
    assert receiver.got[-1].fingerprint == "after-big"


def test_bodies_without_a_length_and_stalled_clients(receiver):
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    conn.request("POST", "/", body=iter([b'{"alerts": []}']), headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 411 and "Content-Length" in json.loads(resp.read())["error"]
    conn.close()
    code, doc = _post(receiver.port, b"{}", headers={"Content-Length": "-4"})
    assert code == 400 and "byte count" in doc["error"]
    stalled = socket.create_connection(("127.0.0.1", receiver.port))
    stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"alerts\": [")
    try:
        assert _post(receiver.port, _payload(_alert(fp="while-stalled")))[0] == 200  # others are served meanwhile
    finally:
        stalled.close()


def test_a_failing_sink_answers_500_and_the_retry_delivers_again():
    calls = []

    def flaky(alerts):
        calls.append([a.fingerprint for a in alerts])
        if len(calls) == 1:
            raise OSError("disk full")

    with AlertReceiver(flaky) as rec:
        code, doc = _post(rec.port, _payload(_alert(fp="x1")))
        assert code == 500 and "disk full" in doc["error"]
        assert _post(rec.port, _payload(_alert(fp="x1")))[0] == 200
    assert calls == [["x1"], ["x1"]]


def test_concurrent_posts_record_each_alert_once(receiver):
    before = len(receiver.got)
    bodies = [_payload(_alert(fp=f"c{i % 5}")) for i in range(40)]
    threads = [threading.Thread(target=_post, args=(receiver.port, b)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(a.fingerprint for a in receiver.got[before:]) == [f"c{i}" for i in range(5)]


def test_webhook_parsing_defaults():
    (alert,) = parse_webhook(_payload({"labels": {"alertname": "NoFp", "job": "api"}}, status="resolved"))
    assert alert.status == "resolved" and alert.service == "api" and alert.fingerprint and alert.started is None
    assert alert.source_url == "http://am.example:9093"
    (again,) = parse_webhook(_payload({"labels": {"job": "api", "alertname": "NoFp"}}, status="resolved"))
    assert again.fingerprint == alert.fingerprint  # ours, when the sender gives none: stable over label order
