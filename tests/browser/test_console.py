"""The notebook as an incident console, read in JupyterLab in Debian's Chromium as a person reads it
(issue 21): an `%alerts` table with no dtype row and its summary in full; a `%promql` chart with a unit
on its y-axis and legend names without braces; a probe panel whose rate is the hits counted over the
same window; a panel that says `removed` after Run All with a removal cell, also in the saved notebook.

Real Prometheus and Alertmanager (Debian's), a real metrics endpoint, the sample service under the agent.
Screenshots go to the test's tmp dir, or to $PROBEBOOK_SCREENSHOTS (docs/notebook.md shows them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import shutil
import sys
import threading
import time
import urllib.parse
import urllib.request

import nbformat
import pytest
from support import required, wait_for

from probebook.lab.sample import SampleService, where
from test_jupyterlab import chromium, lab, pytestmark  # noqa: F401  (lab: the fixture)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "telemetry"))
from telemetry_support import ALERTMANAGER, PROMETHEUS, start_alertmanager, start_prometheus  # noqa: E402

KERNEL_IDLE = """n => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(k && k.status === "idle" && w.content && w.content.widgets.length === n);
}"""
RAN_ALL = """n => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(k && k.status === "idle" && w.content.widgets.every(c => c.model.type !== "code"
    || (c.model.executionCount !== null && !c.node.querySelector(".jp-InputArea-prompt").innerText.includes("*"))));
}"""
SUMMARY = ("checkout p90 latency is 2.4 s, over its 500 ms objective for five minutes on every gateway instance; "
           "the payment provider's answers are slow since the 14:02 deploy")
QUERY = "histogram_quantile(0.9, sum by (le, route) (rate(http_request_duration_seconds_bucket[15s])))"
monitoring_parts = [required("Prometheus", os.path.exists(PROMETHEUS), "apt-get install -y prometheus"),
                    required("Alertmanager", os.path.exists(ALERTMANAGER), "apt-get install -y prometheus-alertmanager")]


def _shots(tmp_path):
    where_to = os.environ.get("PROBEBOOK_SCREENSHOTS") or str(tmp_path)
    os.makedirs(where_to, exist_ok=True)
    return where_to


def _write(path, cells) -> int:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return len(cells)


def _open_and_run(page, url, token, name, cells):
    page.goto(f"{url}/lab/tree/{name}?token={token}")
    page.wait_for_function(KERNEL_IDLE, arg=cells, timeout=60_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


@contextlib.contextmanager
def running(lab, tmp_path, name, cells, height=1400):
    """Chromium with a fresh profile, showing notebook `name` of the `lab` fixture with Run All
    started; the page."""
    from playwright.sync_api import sync_playwright

    url, token, _ = lab
    profile = tmp_path / "chromium-profile"
    with sync_playwright() as pw:
        browser = chromium(pw, profile, height)
        try:
            page = browser.new_page()
            _open_and_run(page, url, token, name, cells)
            yield page
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def shop_metrics(tmp_path):
    """A metrics endpoint with a latency histogram of two routes, scraped every second by a real
    Prometheus, and a real Alertmanager holding a firing alert with a long summary; their URLs."""
    from prometheus_client import CollectorRegistry, Histogram, start_http_server

    from probebook.connectors.alertmanager import AlertReceiver
    from probebook.lab.procs import free_port

    registry = CollectorRegistry()
    latency = Histogram("http_request_duration_seconds", "Request latency", ["route"], registry=registry,
                        buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def traffic() -> None:
        rnd = random.Random(7)
        while not stop.wait(0.02):
            latency.labels(route="/api/cart").observe(rnd.uniform(0.02, 0.06))
            latency.labels(route="/api/checkout").observe(rnd.uniform(0.2, 0.45))

    threading.Thread(target=traffic, daemon=True).start()
    receiver = AlertReceiver(lambda alerts: None).start()
    am = start_alertmanager(str(tmp_path / "am"), receiver.url)
    prom = start_prometheus(str(tmp_path / "prom"), {"gateway": port}, None)
    try:
        am.wait_ready()
        prom.wait_ready()
        alert = [{"labels": {"alertname": "CheckoutSlow", "service": "gateway", "severity": "page"},
                  "annotations": {"summary": SUMMARY},
                  "startsAt": (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=4)).isoformat()}]
        urllib.request.urlopen(urllib.request.Request(f"{am.url}/api/v2/alerts", json.dumps(alert).encode(),
                                                      {"Content-Type": "application/json"}), timeout=5).read()

        def series() -> int:
            q = urllib.parse.urlencode({"query": QUERY})
            body = json.loads(urllib.request.urlopen(f"{prom.url}/api/v1/query?{q}", timeout=5).read())
            return len([r for r in body["data"]["result"] if r["value"][1] not in ("NaN",)])

        wait_for(lambda: series() == 2, timeout=60, what="two latency series in Prometheus")
        yield prom.url, am.url
    finally:
        stop.set()
        prom.stop()
        am.stop()
        receiver.stop()
        server.shutdown()
        server.server_close()


@monitoring_parts[0]
@monitoring_parts[1]
def test_alerts_table_and_promql_chart_read_as_a_person_expects(lab, shop_metrics, tmp_path):  # noqa: F811
    prom, am = shop_metrics
    cells = _write(lab[2] / "console.ipynb", [
        "%load_ext probebook\n%config Probebook.evidence_path = ':memory:'",
        f"%telemetry prometheus={prom} alertmanager={am}",
        "%alerts",
        f"%promql --range 1m --step 2s {QUERY}"])
    with running(lab, tmp_path, "console.ipynb", cells) as page:
        table = page.locator(".pb-table").first
        table.wait_for(timeout=60_000)
        text = table.inner_text()
        assert "datetime[" not in text and "shape:" not in text and '"firing"' not in text, text
        summary = table.locator("td.pb-text").filter(has_text="checkout p90").first
        assert summary.inner_text() == SUMMARY  # in full: not cut, not wrapped into "…"
        status = table.locator(".pb-badge").filter(has_text="firing").first
        assert "pb-bad" in status.get_attribute("class")
        assert "CheckoutSlow" in text and "ago" in text  # the start time relative; exact on hover
        # nothing clipped: the table fits its output, or scrolls inside it
        fits = page.evaluate("""() => { const t = document.querySelector('.pb-table');
            const out = t.closest('.jp-OutputArea-output');
            return getComputedStyle(t).overflowX === 'auto' && t.getBoundingClientRect().right
                   <= out.getBoundingClientRect().right + 1; }""")
        assert fits
        chart = page.locator(".js-plotly-plot").first
        chart.wait_for(timeout=60_000)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .legendtext').length === 2",
                               timeout=30_000)
        legend = [e.text_content() for e in chart.locator(".legendtext").all()]  # SVG text
        assert sorted(legend) == ["/api/cart", "/api/checkout"], legend  # no braces, only what differs
        ytitle = chart.locator(".ytitle").text_content()
        ticks = [e.text_content() for e in chart.locator(".ytick text").all()]
        assert ytitle == "milliseconds" and ticks and all(t.endswith(" ms") for t in ticks), (ytitle, ticks)
        assert chart.locator(".gtitle").text_content().startswith("p90 of http_request_duration_seconds by route")
        page.wait_for_timeout(500)  # the chart's transitions end before the picture
        page.screenshot(path=os.path.join(_shots(tmp_path), "console-telemetry.png"), full_page=True)


def _hits_and_rate(page):
    return page.evaluate("""() => { const h = document.querySelector('.pb-panel.pb-probes .pb-hits');
        const r = document.querySelector('.pb-panel.pb-probes .pb-rate');
        return [h ? parseInt(h.dataset.hits, 10) : -1, r ? parseFloat(r.dataset.rate) : -1, Date.now() / 1000]; }""")


def test_probe_panel_rate_is_the_hits_over_its_window_and_removal_is_shown(lab, tmp_path):  # noqa: F811
    url, token, root = lab
    with SampleService() as svc:
        head = ["%load_ext probebook\n%config Probebook.evidence_path = ':memory:'",
                f"%connect sample {svc.url} --token-file {svc.token_file}",
                f'%probe log sample {where("order.total =")} "subtotal={{subtotal}}" --as orders']
        live = _write(root / "live.ipynb", head)
        with running(lab, tmp_path, "live.ipynb", live, height=900) as page:
            page.locator(".pb-panel.pb-probes .pb-rate").wait_for(timeout=60_000)

            def fresh(after):  # the moment the panel shows a new count from the agent
                page.wait_for_function(
                    "n => { const h = document.querySelector('.pb-panel.pb-probes .pb-hits');"
                    " return h && parseInt(h.dataset.hits, 10) > n; }", arg=after, timeout=20_000)
                return _hits_and_rate(page)

            page.wait_for_timeout(11_000)  # the rate's window (10 s) full of counts
            h0, _, t0 = fresh(_hits_and_rate(page)[0])
            page.wait_for_timeout(9_500)
            h1, rate, t1 = fresh(_hits_and_rate(page)[0])
            counted = (h1 - h0) / (t1 - t0)
            assert counted > 10 and abs(rate - counted) <= 0.1 * counted, (rate, counted, h0, h1, t1 - t0)
            assert "rate (10 s)" in page.locator(".pb-panel.pb-probes th").all_inner_texts()
            page.screenshot(path=os.path.join(_shots(tmp_path), "console-probe-panel.png"), full_page=True)

            # Run All with a removal cell: the panel and the saved notebook say removed, the timeline has it
            cells = _write(root / "removal.ipynb", head + ["%probe rm orders", "%timeline",
                                                           "%unload_ext probebook"])
            _open_and_run(page, url, token, "removal.ipynb", cells)
            page.wait_for_function(RAN_ALL, arg=cells, timeout=90_000)
            panel = page.locator(".pb-panel.pb-probes").first
            wait_for(lambda: "removed" in panel.inner_text(), timeout=20, what=lambda: panel.inner_text())
            shown = panel.inner_text()
            assert "emitting" not in shown and "as of" not in shown, shown
            assert panel.locator("tr[data-alias=orders]").get_attribute("data-status") == "removed"
            assert panel.locator(".pb-ttl").count() == 0 and panel.locator(".pb-rate").count() == 0
            assert "probe orders removed from sample" in page.locator(".pb-panel.pb-timeline").inner_text()
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            saved = wait_for(lambda: _saved_probe_output(root / "removal.ipynb"), timeout=20,
                             what="the saved notebook's probe cell output")
            assert 'data-status="removed"' in saved and "emitting" not in saved, saved[:2000]


def _saved_probe_output(path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    for out in nb.cells[2].get("outputs", []):
        html = (out.get("data") or {}).get("text/html", "")
        if "pb-probes" in html:
            return html
    return ""
