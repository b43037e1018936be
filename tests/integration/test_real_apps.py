"""Apps nobody here wrote, from PyPI, under their real servers and `probebook agent run`: the fleet
follows their processes, and every request on a probed path yields its event."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from support import end_process, wait_for

from probebook.lab.procs import free_port
from probebook.connectors.service import read_port_dir, read_port_files
from probebook.errors import SessionError
from probebook.session import Investigation
from test_agent_run_support import ALICE, agent_command


def _gunicorn_quiet():
    from gunicorn import config

    # gunicorn >= 24 opens a control socket in the home directory unless told not to
    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in config.KNOWN_SETTINGS) else []


def _line_of(module, text: str) -> int:
    with open(module.__file__, encoding="utf-8") as fh:
        return next(i for i, line in enumerate(fh, 1) if line.strip() == text)


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as resp:
        resp.read()
        return resp.status


def test_httpbin_under_gunicorn_keeps_its_probes_while_workers_recycle(tmp_path):
    """Two workers recycled every 8 requests (`--max-requests`): the investigation counts two
    instances and the master apart, each replacement worker is probed before it serves (inherited
    from the master) and joins the investigation, and every request on the probed path yields its
    log line: none lost before, during or after a recycling."""
    httpbin = pytest.importorskip("httpbin.helpers", reason="the Makefile installs httpbin (--no-deps)")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{ALICE}\n")
    pf_dir = str(tmp_path / "ports") + "/"
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen(agent_command("--name", "httpbin", "--token-file", str(tokens), "--port-file", pf_dir,
                                          "--audit", str(tmp_path / "audit.jsonl"), "--",
                                          sys.executable, "-m", "gunicorn", "-w", "2", "--max-requests", "8",
                                          "--max-requests-jitter", "0", "-b", f"127.0.0.1:{port}",
                                          *_gunicorn_quiet(), "httpbin:app"),
                            cwd=tmp_path, stdout=log, stderr=log,
                            env={**os.environ, "HOME": str(tmp_path), "PROBEBOOK_EXIT_WAIT": "5"})
    inv = Investigation()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ok(f"{base}/get"), timeout=60, what=lambda: f"httpbin to answer: {_tail(tmp_path)}")
        wait_for(lambda: len(os.listdir(pf_dir)) >= 3, what="the master's and two workers' port files")
        row = inv.connect("httpbin", pf_dir, token=ALICE)
        assert (row["instances"], row["supervisors"]) == (2, 1), row
        # a line with no code: both workers refuse it, the master (which never imports the app) would
        # hold it pending; that is an error, and nothing is left behind on the master
        blank = _line_of(httpbin, '"""Returns request dict of given keys."""') + 1
        with pytest.raises(SessionError, match="probe refused"):
            inv.probe("log", "httpbin", f"httpbin/helpers.py:{blank}", template="x")
        held = inv.handle("httpbin").probes()
        assert not [p for infos in held.values() for p in infos if p.status not in ("removed", "error")], held
        where = f"httpbin/helpers.py:{_line_of(httpbin, 'out_d = dict()')}"
        rec = inv.probe("log", "httpbin", where, template="i={d['args']['i']}", rate=1000, ttl=600)
        assert rec.placed.ok, rec.placed.summary()  # on both workers; the master's pending copy decides nothing
        assert "supervisor" in rec.placed.summary()
        # a worker forked a moment ago holds the probe pending until it has imported the app: then installed
        settled = (["installed"], ["emitting"], ["emitting/installed"])
        wait_for(lambda: inv.probes().filter(inv.probes()["alias"] == rec.alias)["status"].to_list() in settled,
                 timeout=15, what=lambda: f"every worker to install the probe: {inv.probes()['status'].to_list()}")
        sent = list(range(48))  # 6 recyclings of a worker at least
        for i in sent:
            assert _get(f"{base}/get?i={i}") == 200
        def seen():
            rows = inv.sql(f"SELECT message FROM logs WHERE probe_id = '{rec.fleet_id}'")["message"].to_list()
            return sorted(int(m.split("=", 1)[1].strip("'")) for m in rows)
        wait_for(lambda: seen() == sent, timeout=15, what=lambda: f"a log line per request, got {seen()}")
        timeline = inv.timeline()["text"].to_list()
        joined = [t for t in timeline if "joined" in t]
        left = [t for t in timeline if " left " in t]
        assert len(joined) >= 4 and len(left) >= 4, timeline
        assert all("1 inherited from its parent" in t for t in joined), joined
        assert inv.services()["instances"].to_list() == [2]
        assert inv.services()["health"].to_list() == ["ok"]
        # the other four kinds, in httpbin's code and in Werkzeug's own routing
        five_kinds(inv, "httpbin", lambda i: _get(f"{base}/get?i={i}"), lambda i: _missing(f"{base}/nope{i}"),
                   snapshot=(where, "d['args']['i']"), function="httpbin.core:view_get",
                   raising=("werkzeug.routing.map:MapAdapter.match", "NotFound"))
    finally:
        inv.close()
        end_process(proc, wait=15)
        log.close()
    wait_for(lambda: not [n for n in os.listdir(pf_dir) if n.endswith(".json")], timeout=15,
             what=lambda: f"no port file left after SIGTERM: {os.listdir(pf_dir)}")


def five_kinds(inv, service, hit, fail, snapshot, function, raising):
    """A snapshot at `snapshot` (where, expression: its value is the request's number), a duration
    metric and a span on `function`, and an exception probe at `raising` (where, exception type),
    each checked by its values while `hit(i)` and `fail(i)` send requests."""
    where, expr = snapshot
    metric = inv.probe("metric", service, function, metric={"name": "get_ms", "type": "duration"}, rate=1000)
    span = inv.probe("span", service, function, rate=1000)
    exc = inv.probe("exception", service, raising[0], rate=1000)
    for i in range(10):  # 6 of each kind are waited for: a recycled worker's last events may be read late
        hit(100 + i)
        fail(i)
    result = {}
    worker = threading.Thread(target=lambda: result.update(snap=inv.snapshot(service, where, [expr], wait=20)))
    worker.start()
    for i in range(200, 260):
        if not worker.is_alive():
            break
        hit(i)
        time.sleep(0.05)
    worker.join(30)
    assert not result["snap"].timed_out and 200 <= int(result["snap"].values[0][expr]) < 260, result
    def rows(table, rec, cols):
        return inv.sql(f"SELECT {cols} FROM {table} WHERE probe_id = '{rec.fleet_id}'")
    wait_for(lambda: rows("metrics", metric, "value").height >= 6 and rows("spans", span, "duration_ns").height >= 6
             and rows("exceptions", exc, "exc_type").height >= 6, timeout=15,
             what=lambda: f"metrics/spans/exceptions: {inv.probes().to_dicts()}")
    m = rows("metrics", metric, "name, metric_type, value, unit")
    assert set(m["name"]) == {"get_ms"} and set(m["unit"]) == {"ms"} and (m["value"] > 0).all()
    assert (rows("spans", span, "duration_ns")["duration_ns"] > 0).all()
    assert {t.split(".")[-1] for t in rows("exceptions", exc, "exc_type")["exc_type"]} == {raising[1]}
    for rec in (metric, span, exc):
        inv.remove(rec.alias)


def _missing(url: str) -> int:
    try:
        return _get(url)
    except urllib.error.HTTPError as err:
        err.read()
        return err.code


def _ok(url: str) -> bool:
    try:
        return _get(url) == 200
    except OSError:
        return False


def _tail(tmp_path, name: str = "gunicorn.log") -> str:
    try:
        return (tmp_path / name).read_text(errors="replace")[-1500:]
    except OSError:
        return ""


SHOPAPI = '''
from fastapi import FastAPI

app = FastAPI()


def price(sku, qty):
    total = len(sku) * 10 * qty
    return total  # at:price


@app.get("/price/{sku}")
def get_price(sku: str, qty: int = 1):
    if sku == "bad":
        raise ValueError(f"no price for {sku}")
    return {"total": price(sku, qty)}
'''


def _start(tmp_path, name, argv, ready_url, **popen):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{ALICE}\n")
    pf_dir = str(tmp_path / "ports") + "/"
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(agent_command("--name", name, "--token-file", str(tokens), "--port-file", pf_dir,
                                          "--audit", str(tmp_path / "audit.jsonl"), "--", *argv),
                            cwd=tmp_path, stdout=log, stderr=log, start_new_session=True,
                            env={**os.environ, "HOME": str(tmp_path)}, **popen)
    try:
        wait_for(lambda: _ok(ready_url) or proc.poll() is not None, timeout=60,
                 what=lambda: f"{name} to answer: {_tail(tmp_path, 'server.log')}")
        assert proc.poll() is None, _tail(tmp_path, "server.log")
    except BaseException:
        _stop(proc)
        raise
    return proc, pf_dir, log


@contextlib.contextmanager
def _serving(tmp_path, name, argv, ready_url):
    """The server started under the agent, and an investigation; both ended afterwards. A clean SIGTERM
    leaves no port file behind (the supervisor's and each worker's)."""
    proc, pf_dir, log = _start(tmp_path, name, argv, ready_url)
    inv = Investigation()
    try:
        yield proc, pf_dir, inv
    finally:
        inv.close()
        _stop(proc)
        log.close()
    # the group's other processes (the autoreloader's child, workers) end on their own after the one we
    # waited for: each removes its port file as it exits
    wait_for(lambda: not [n for n in os.listdir(pf_dir) if n.endswith(".json")], timeout=15,
             what=lambda: f"no port file left after SIGTERM: {os.listdir(pf_dir)} (the server: {proc.pid})")


def _stop(proc):
    """The server's whole process group: its workers (or the autoreloader's child) too."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end_process(proc, wait=15)


def _connect_and_log(inv, service, pf_dir, counts, where):
    """Connect once every process has its port file; `counts`: (instances, supervisors) expected. A log
    line of `total` at `where`, placed on every worker."""
    wait_for(lambda: len(read_port_dir(pf_dir)) == sum(counts),
             what=lambda: f"{sum(counts)} port files, got {os.listdir(pf_dir)}")
    row = inv.connect(service, pf_dir, token=ALICE)
    assert (row["instances"], row["supervisors"]) == counts, row
    rec = inv.probe("log", service, where, template="total={total}", rate=1000, ttl=600)
    assert rec.placed.ok, rec.placed.summary()
    return rec


def _quantities(inv, rec):
    """The quantities the log lines `total=...` of `rec` say were ordered (sku "abc": 30 a unit)."""
    rows = inv.sql(f"SELECT message FROM logs WHERE probe_id = '{rec.fleet_id}'")["message"].to_list()
    return sorted(int(m.split("=", 1)[1]) // 30 for m in rows)


def _joined(inv, service, n):
    return [t for t in inv.timeline()["text"].to_list() if t.startswith(f"{service}: instance") and "joined" in t][n:]


def test_a_fastapi_app_under_uvicorn_workers_gets_its_probes_on_a_restarted_worker(tmp_path):
    """uvicorn --workers 2 spawns (not forks) its workers: one killed is restarted by uvicorn, the
    investigation sees it join and places the live probe on it within a second or two, and every
    request after that yields its event; the supervisor is counted apart."""
    pytest.importorskip("fastapi", reason="fastapi and uvicorn are in the test extras")
    pytest.importorskip("uvicorn", reason="fastapi and uvicorn are in the test extras")
    (tmp_path / "shopapi.py").write_text(SHOPAPI)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "uvicorn", "--workers", "2", "--port", str(port), "--app-dir", str(tmp_path),
            "shopapi:app"]
    with _serving(tmp_path, "shopapi", argv, f"{base}/price/abc") as (proc, pf_dir, inv):
        where = f"shopapi.py:{_line_with(tmp_path / 'shopapi.py', '# at:price')}"
        rec = _connect_and_log(inv, "shopapi", pf_dir, (2, 1), where)
        victim = next(p for p in (i["pid"] for i in read_port_files(pf_dir)) if p != proc.pid)
        os.kill(victim, signal.SIGKILL)
        joined = wait_for(lambda: _joined(inv, "shopapi", 0), timeout=30,
                          what=lambda: f"a restarted worker to join: {inv.timeline()['text'].to_list()}")
        assert "1 placed" in joined[0], joined
        sent = list(range(1, 41))
        for qty in sent:
            assert _get(f"{base}/price/abc?qty={qty}") == 200
        wait_for(lambda: _quantities(inv, rec) == sent, timeout=15,
                 what=lambda: f"a log line per request, got {_quantities(inv, rec)}")
        assert inv.services()["instances"].to_list() == [2] and inv.services()["health"].to_list() == ["ok"]
        five_kinds(inv, "shopapi", lambda i: _get(f"{base}/price/abc?qty={i}"),
                   lambda i: _missing(f"{base}/price/bad"), snapshot=(where, "qty"),
                   function="shopapi:get_price", raising=("shopapi:get_price", "ValueError"))


def test_a_django_project_under_runserver_follows_the_autoreloader(tmp_path):
    """Django's runserver: the autoreloader is the supervisor, the child serves. A code change makes
    the autoreloader start a new child: it joins, gets the live probe, and its requests yield events."""
    pytest.importorskip("django", reason="django is in the test extras")
    subprocess.run([sys.executable, "-m", "django", "startproject", "site1", str(tmp_path)], check=True,
                   capture_output=True, timeout=60)
    views = tmp_path / "site1" / "views.py"
    views.write_text(VIEWS)
    urls = tmp_path / "site1" / "urls.py"
    urls.write_text(urls.read_text().replace("from django.urls import path",
                                             "from django.urls import path\nfrom . import views")
                    .replace("urlpatterns = [", "urlpatterns = [\n    path('total/<str:sku>', views.total),"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with _serving(tmp_path, "site1", [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"],
                  f"{base}/total/abc?qty=1") as (_proc, pf_dir, inv):
        where = f"site1/views.py:{_line_with(views, '# at:total')}"
        rec = _connect_and_log(inv, "site1", pf_dir, (1, 1), where)
        assert _get(f"{base}/total/abc?qty=2") == 200
        views.write_text(VIEWS + "\n# edited: the autoreloader starts a new child\n")
        joined = wait_for(lambda: _joined(inv, "site1", 0), timeout=40,
                          what=lambda: f"the new child to join: {inv.timeline()['text'].to_list()}")
        assert "1 placed" in joined[0], joined
        wait_for(lambda: _ok(f"{base}/total/abc?qty=1"), timeout=30, what="the new child to serve")
        for qty in range(3, 13):
            assert _get(f"{base}/total/abc?qty={qty}") == 200
        wait_for(lambda: set(range(2, 13)) <= set(_quantities(inv, rec)), timeout=15,
                 what=lambda: f"log lines, got {_quantities(inv, rec)}")
        five_kinds(inv, "site1", lambda i: _get(f"{base}/total/abc?qty={i}"),
                   lambda i: _missing(f"{base}/total/bad?qty=1"), snapshot=(where, "qty"),
                   function="site1.views:total", raising=("site1.views:total", "ValueError"))


VIEWS = '''
from django.http import JsonResponse


def total(request, sku):
    qty = int(request.GET.get("qty", "1"))
    if sku == "bad":
        raise ValueError(f"no price for {sku}")
    total = len(sku) * 10 * qty
    return JsonResponse({"total": total})  # at:total
'''


def _line_with(path, marker: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line)
