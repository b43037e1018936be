"""`%%assistant` and `%investigate` through a real IPython shell, on a small service of this very process
(tests/assistant/tinyshop.py, which the assistant has never seen) attached with an in-process agent."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.request

import pytest
from support import wait_for

from probebook import kernel_ext
from probebook.agent import Agent
from probebook.kernel_ext.args import MagicError

sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, "assistant")))
import tinyshop  # noqa: E402


@pytest.fixture
def shop(shell, tmp_path):
    """`shop(traffic)`: tinyshop attached to the kernel's investigation, its customers calling `traffic`
    ("pay": some of them fail; "report": none does); answers its in-process agent."""
    started = []

    def start(traffic):
        agent = Agent()
        kernel_ext.investigation().attach("tinyshop", agent, audit_path=str(tmp_path / "audit.jsonl"))
        started.append((agent, *tinyshop.start(traffic)[1:]))
        return agent
    yield start
    for agent, stop, thread in started:
        stop.set()
        thread.join()
        agent.close()


@pytest.fixture
def failing_shop(shop):
    return shop("pay")


@pytest.fixture
def quiet_shop(shop):
    return shop("report")


def _one_line_usage_error(cell, expected: str) -> None:
    assert isinstance(cell.error, MagicError) and not cell.result.success, (cell.error, cell.shown)
    lines = [x for x in cell.shown.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("UsageError: "), cell.shown
    assert expected in lines[0], lines[0]


def _fire(url: str, *alerts) -> None:
    """What Alertmanager's webhook sends (version 4) for `alerts` (name, labels, seconds ago)."""
    now = time.time()
    body = {"version": "4", "status": "firing", "receiver": "probebook", "groupLabels": {}, "alerts": [
        {"status": "firing", "labels": {"alertname": name, **labels}, "annotations": {"summary": name},
         "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - ago)), "endsAt": "0001-01-01T00:00:00Z",
         "fingerprint": f"fp{i}"} for i, (name, labels, ago) in enumerate(alerts)]}
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=5).status == 200


def test_assistant_cell_proves_the_cause_while_the_kernel_stays_usable(failing_shop, run):
    cell = run("%%assistant --wait 5s --budget 100s\nPOST /pay answers 500 for some customers since 10:40")
    assert cell.error is None, cell.stderr
    view = cell.result.result
    assert run("21 * 2").result.result == 42  # the kernel answers while the assistant works
    assert view.run.state in ("starting", "running"), view.text()
    wait_for(lambda: view.run.done, timeout=100, what=view.text)
    # the publisher draws the end: the verdict card with its kind, where, and the proof
    wait_for(lambda: "pb-verdict" in view.html, timeout=60, what=lambda: view.html)
    verdict = view.verdict
    assert verdict.kind == "proven", view.text() + "\n" + "\n".join(verdict.reasons)
    assert verdict.locus.endswith("tinyshop.py:Billing.discount_for")
    card = view.html[view.html.index('class="pb-verdict"'):view.html.index('class="pb-hypotheses"')]
    assert 'data-kind="proven"' in card and "Billing.discount_for" in card and "pb-ok" in card
    assert html.escape(verdict.predicate.describe()) in card and verdict.predicate.describe().endswith("> 0.2")
    # steps, hypotheses with their status, the probes it placed with their events, all removed now
    hypotheses = re.search(r'<div class="pb-hypotheses">(.*?)</div>', view.html).group(1)
    assert view.html.count("<li>") >= 5 and ">proven</span>" in hypotheses
    probes = re.search(r'<div class="pb-assistant-probes">(.*?)</div>', view.html).group(1)
    assert sum(int(n) for n in re.findall(r'data-hits="(\d+)"', probes)) > 0
    assert "removed" in probes and failing_shop.probes() == []
    # the query the card shows selects exactly the cited evidence, in a cell of its own
    query = html.unescape(re.search(r'<pre class="pb-sql">(.*?)</pre>', card, re.S).group(1))
    assert query.startswith("%%sql\nSELECT * FROM snapshots WHERE evidence_id IN (")
    rows = run(query).result.result
    assert sorted(rows["evidence_id"].to_list()) == sorted(verdict.evidence) and verdict.evidence
    journaled = kernel_ext.investigation().sql("SELECT kind, locus FROM assistant_verdicts")
    assert journaled.rows() == [("proven", verdict.locus)]
    assert "PROVEN tinyshop" in view.text() and "pb-assistant" in view._repr_html_()  # terminals, static HTML


def test_investigate_the_newest_alert_then_stop_it(quiet_shop, run):
    url = re.search(r"receiving alerts at (\S+)", run("%alerts --listen").stdout).group(1)
    _fire(url, ("DiskFilling", {"service": "tinyshop"}, 600),
          ("HighErrorRate", {"service": "tinyshop", "route": "/pay"}, 30))
    _one_line_usage_error(run("%investigate NoSuchAlert"), "no alert 'NoSuchAlert' is firing; firing now: "
                                                           "DiskFilling, HighErrorRate")
    cell = run("%investigate --latest --wait 60s")
    assert cell.error is None, cell.stderr
    view = cell.result.result
    assert [a.name for a in view.run.alerts] == ["HighErrorRate"]
    # it watches the failing route for exceptions that do not come (the customers only call /report)
    wait_for(lambda: any(not r.removed for r in view.run.probes()), timeout=90, what=view.text)
    assert quiet_shop.probes() != []
    _one_line_usage_error(run("%%assistant\nanother incident"), "an investigation is running")
    stopped = run("%investigate --stop")
    assert stopped.error is None and stopped.stdout.startswith("stopped; the "), stopped.stdout + stopped.stderr
    assert view.run.state == "stopped" and view.verdict.kind == "inconclusive"
    assert quiet_shop.probes() == []  # what the agent still runs: nothing
    assert view.run.probes() and all(r.removed for r in view.run.probes())  # it had placed some
    wait_for(lambda: 'data-kind="inconclusive"' in view.html, what=lambda: view.html)
    assert "(stopped)" in view.html and "Stop</button>" not in view.html
    assert run("%investigate --stop").stdout.strip() == "no investigation is running"


def test_the_stop_button_stops_it(quiet_shop, run):
    view = run("%%assistant --wait 60s\nPOST /pay fails with 500").result.result
    wait_for(lambda: any(not r.removed for r in view.run.probes()), timeout=90, what=view.text)
    assert 'data-action="stop"' in view.html
    view._on_front_end_msg(view, {"action": "stop", "alias": ""}, [])  # what the button's click sends
    assert view.run.wait(30) is not None and view.run.state == "stopped"
    assert quiet_shop.probes() == []


def test_a_blocking_cell_is_stopped_by_the_kernel_interrupt(quiet_shop, run):
    def interrupt_once_probing():  # what the kernel's interrupt does: SIGINT to the kernel's process
        run_ = wait_for(lambda: kernel_ext.current_session().assistant_run, timeout=90, what="a run")
        wait_for(lambda: any(not r.removed for r in run_.probes()), timeout=90, what="a live probe")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_probing, daemon=True).start()
    cell = run("%%assistant --block --wait 60s\nPOST /pay fails with 500")
    assert cell.error is None and cell.result.result is None, cell.stderr
    assert "pb-assistant" in cell.outputs[0].data["text/html"]  # the view, shown while the cell waited
    stopped = kernel_ext.current_session().assistant_run
    assert stopped.state == "stopped" and stopped.probes() and quiet_shop.probes() == []


BAD = [
    ("%%assistant --budget banana\ncheckout 502s", "--budget: expected a duration such as 30s"),
    ("%%assistant --wait 0s\ncheckout 502s", "--wait: expected a duration"),
    ("%%assistant --colour red\ncheckout 502s", "%%assistant: unrecognized arguments: --colour red; usage: "),
    ("%%assistant\n   \n", "%%assistant: the cell body is the incident in words"),
    ("%investigate --stop --latest", "%investigate: --stop takes no other arguments"),
    ("%investigate HighErrorRate --latest", "name an ALERT or give --latest, not both"),
    ("%investigate HighErrorRate extra", "%investigate: unrecognized arguments: extra"),
    ("%investigate --latest", "no alert is firing"),
    ('%%assistant --title "unclosed\ncheckout 502s', "%%assistant: No closing quotation"),
    ("%%assistant --llm\ncheckout 502s", "--llm: no model endpoint: set PROBEBOOK_LLM_BASE_URL"),
]


@pytest.mark.parametrize("code,expected", BAD, ids=[b[1][:28] for b in BAD])
def test_bad_input_is_one_line(quiet_shop, run, monkeypatch, code, expected):
    for name in ("PROBEBOOK_LLM_BASE_URL", "PROBEBOOK_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    _one_line_usage_error(run(code), expected)


def test_nothing_connected_says_what_to_do(run):
    _one_line_usage_error(run("%%assistant\ncheckout 502s"), "none is connected; %connect NAME URL first")
