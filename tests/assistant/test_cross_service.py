"""The investigator across real processes (never the lab's): two services under `probebook agent run`,
an outside provider without an agent, real HTTP between them. It follows a failure from the service
that alerts to the one that makes the bad value, and says `outside` when the cause is a system that
is none of ours, proven at our boundary."""

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from support import end_process, wait_for

from probebook.assistant import Alert, Assistant
from probebook.protocol.tokens import write_token_file
from probebook.session import Investigation

APP = os.path.join(os.path.dirname(__file__), "twoshop_app", "twoshop.py")


def _start(tmp, role, arg, agent=True, token_file=None, app=None, env=None):
    port_file = os.path.join(tmp, f"{role}.port")
    cmd = [sys.executable, app, port_file] if app else [sys.executable, APP, role, port_file, arg]
    if agent:
        cmd = [sys.executable, "-m", "probebook.cli", "agent", "run", "--name", role, "--port-file",
               os.path.join(tmp, f"{role}-agents") + "/", "--token-file", token_file, "--"] + cmd
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    wait_for(lambda: os.path.exists(port_file) or proc.poll() is not None, what=f"{role} to start")
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    with open(port_file) as fh:
        return proc, f"http://127.0.0.1:{int(fh.read())}"


@pytest.fixture()
def shop(tmp_path, request):
    mode = request.param
    tmp = str(tmp_path)
    token_file, _ = write_token_file(tmp)
    procs = []
    try:
        provider, provider_url = _start(tmp, "provider", mode.split("-")[0], agent=False)
        procs.append(provider)
        back, back_url = _start(tmp, "back", provider_url, token_file=token_file,
                                app=os.path.join(os.path.dirname(APP), "aback.py") if mode == "aship" else None,
                                env={"TWOSHOP_SERIAL": "1"} if mode == "qship" else None)
        procs.append(back)
        front, front_url = _start(tmp, "front", back_url, token_file=token_file)
        procs.append(front)
        inv = Investigation()
        for name in ("front", "back"):
            port_dir = os.path.join(tmp, f"{name}-agents")
            wait_for(lambda: os.path.isdir(port_dir) and os.listdir(port_dir), what=f"{name}'s agent")
            inv.connect(name, port_dir + "/", token_file=token_file)
        if mode.endswith("-catalog"):  # the environment's catalog knows the provider by its own name
            inv.telemetry.join(catalog={"cardco": provider_url})
        stop = threading.Event()
        codes = ["", "SPRING", "VIP", "BROKEN"] if mode in ("steady", "strict") else ["", "SPRING", "VIP"]

        def customers():
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if mode == "down":
                        url = f"{front_url}/{('ship?user=1', 'stock', 'quote', 'track')[i % 4]}"
                    elif mode in ("aship", "qship"):
                        url = f"{front_url}/ship?user={1 + i % 3}"
                    elif mode == "ship" or (mode == "slowship" and i % 4 == 0):  # no shopper 4n when slow
                        url = f"{front_url}/ship?user={i if mode == 'ship' else i + 1}"
                    else:
                        url = f"{front_url}/{'order' if mode == 'strict' else 'pay'}?amount=20&code={codes[i % len(codes)]}"
                    urllib.request.urlopen(url, timeout=5).read()
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.03)

        if mode == "down":  # back's process is killed (the OOM killer): its agent goes with it
            back.kill()
            back.wait(10)
        crowd = [threading.Thread(target=customers, daemon=True) for _ in range(8 if mode in ("aship", "qship") else 1)]
        for t in crowd:
            t.start()
        yield inv
        stop.set()
        for t in crowd:
            t.join()
        inv.close()
    finally:
        for p in reversed(procs):
            end_process(p)


def _investigate(inv, text, route, alert="HighErrorRate", also=(), **kw):
    """The assistant on front's alert for `route` (none without one) and the `also` alerts: the verdict,
    and its progress and reasons in words."""
    lines = []
    alerts = ([Alert(alert, {"service": "front", "route": route})] if route else []) + list(also)
    verdict = Assistant(inv).investigate(text, alerts=alerts, progress=lines.append, wait_s=6, **kw)
    return verdict, "\n".join(lines + verdict.reasons)


def _payments_fail(inv):
    return _investigate(inv, "payments fail with 502", "/pay")


@pytest.mark.parametrize("shop", ["steady"], indirect=True)
def test_a_failure_is_followed_to_the_service_that_makes_the_bad_value(shop):
    verdict, why = _payments_fail(shop)
    assert verdict.kind == "proven", why
    assert verdict.service == "back"
    assert verdict.locus.endswith("twoshop.py:fee_rate")


@pytest.mark.parametrize("shop", ["strict"], indirect=True)
def test_a_client_error_that_looks_the_same_on_every_failure_is_followed_to_the_peer(shop):
    """front's client raises in its except handler: at the raise nothing tells failing calls from
    healthy ones, so the path the failing call went to (back's /charge) is where to look next; only
    front is alerted and named, and back is proven all the same."""
    verdict, why = _investigate(shop, "orders fail with 500", "/order")
    assert verdict.kind == "proven", why
    assert verdict.service == "back"
    assert verdict.locus.endswith("twoshop.py:fee_rate")


@pytest.mark.parametrize("shop", ["ship"], indirect=True)
def test_an_error_answered_by_a_peer_is_traced_to_where_the_value_it_refuses_is_made(shop):
    """back answers 422 to some regions; the region comes in its request from front, which got it from
    `region_of`: the claim is proven there, with the shape of the refused values."""
    verdict, why = _investigate(shop, "some shipments fail with 502", "/ship")
    assert verdict.kind == "proven", why
    assert verdict.service == "front"
    assert verdict.locus.endswith("twoshop.py:region_of")
    assert (verdict.predicate.op, verdict.predicate.value) == ("matches", "^[a-z]{2}$")


@pytest.mark.parametrize("shop", ["slowship"], indirect=True)
def test_a_slow_route_is_followed_to_the_peer_its_handler_calls(shop):
    """front's one client carries /pay (3 calls in 4) and /ship; /ship is slow because back's
    route_days works. The descent ends in the client; the path the slow handler calls it with
    (`"/deliver"`), not whatever path the client's locals showed last, names the next hop."""
    _slow_ship_is_proven_in_back(shop, "twoshop.py:route_days")


@pytest.mark.parametrize("shop", ["aship"], indirect=True)
def test_a_slow_call_into_an_async_peer_finds_the_plain_call_that_holds_its_loop(shop):
    """back is an asyncio service whose /deliver handler runs `loop_days` on the event loop's thread.
    Eight shoppers at once: each request to back waits for the others' `loop_days` before its handler
    even starts, so the handler holds a small part of front's wait. Followed into back, the loop is
    checked first, and the plain call that holds it is proven."""
    _slow_ship_is_proven_in_back(shop, "aback.py:loop_days")


@pytest.mark.parametrize("shop", ["qship"], indirect=True)
def test_a_slow_peer_whose_requests_queue_is_descended_into_when_its_own_alert_fires(shop):
    """back serves one request at a time: eight shoppers' calls queue before its handler runs, so the
    handler holds a small part of front's wait. back's own latency alert fires too, so the descent goes
    on into it from front's call, and `route_days`, whose work makes the queue, is proven."""
    verdict, why = _investigate(shop, "GET /ship is slow", "/ship", "HighLatency",
                                also=[Alert("HighLatency", {"service": "back", "route": "/deliver"})])
    assert "back's own latency alert fires: descending into it" in why, why
    assert verdict.kind == "proven" and verdict.service == "back" and verdict.locus.endswith(":route_days"), why


@pytest.mark.parametrize("shop", ["qship"], indirect=True)
def test_a_slow_peer_whose_own_alert_fired_after_the_page_is_descended_into(shop, tmp_path):
    """The page came with front's alert only; back's own latency alert (the queue before its handler) fired
    after it and is open in Alertmanager now: the descent reads the alerts open now, not only those that
    opened the incident, and goes on into back."""
    import json

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "telemetry"))
    from support import in_ci
    from telemetry_support import ALERTMANAGER, start_alertmanager

    from probebook.lab.procs import free_port

    if not os.path.exists(ALERTMANAGER):
        missing = "prometheus-alertmanager is not installed (apt-get install -y prometheus-alertmanager)"
        pytest.fail(f"CI=true: {missing}") if in_ci() else pytest.skip(missing)
    am = start_alertmanager(str(tmp_path / "am"), f"http://127.0.0.1:{free_port()}/").wait_ready()
    try:
        alert = [{"labels": {"alertname": "HighLatency", "service": "back", "route": "/deliver", "severity": "page"},
                  "annotations": {"summary": "back /deliver p95 above 400 ms"}}]
        request = urllib.request.Request(f"{am.url}/api/v2/alerts", json.dumps(alert).encode(),
                                         {"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=5).read()
        shop.telemetry.configure(alertmanager=am.url)
        verdict, why = _investigate(shop, "GET /ship is slow", "/ship", "HighLatency")
        assert "back's own latency alert fires: descending into it" in why, why
        assert verdict.kind == "proven" and verdict.service == "back" and verdict.locus.endswith(":route_days"), why
    finally:
        am.stop()

def _slow_ship_is_proven_in_back(inv, locus):
    verdict, why = _investigate(inv, "GET /ship is slow", "/ship", "HighLatency")
    assert verdict.kind == "proven", why
    assert verdict.service == "back" and verdict.locus.endswith(locus), why


@pytest.mark.parametrize("shop", ["flaky", "flaky-catalog"], indirect=True)
def test_a_provider_that_fails_is_outside_proven_at_our_boundary(shop):
    verdict, why = _payments_fail(shop)
    assert verdict.kind == "outside", why
    # named as the catalog knows it when it does (by the URL our client holds), else as our client does
    assert verdict.service == ("cardco" if shop.telemetry.sources.catalog else "acquirer")
    assert verdict.boundary_service == "back" and verdict.boundary_locus.endswith("twoshop.py:Back.charge")


@pytest.mark.parametrize("shop", ["declines"], indirect=True)
def test_a_provider_that_refuses_is_not_called_an_outage(shop):
    """402s are the provider's answer to what we sent (cards declined): never `outside`."""
    verdict, why = _investigate(shop, "payments fail with 502", "/pay", budget_s=40)
    assert "a refusal is an answer, not an outage" in why
    assert verdict.kind != "outside", why


@pytest.mark.parametrize("shop", ["healthy"], indirect=True)
def test_nothing_wrong_and_nothing_firing_is_no_fault(shop):
    verdict, why = _investigate(shop, "is everything fine with payments?", "")
    assert verdict.kind == "no-fault", why
    assert len(verdict.evidence) >= 20


@pytest.mark.parametrize("shop", ["down"], indirect=True)
@pytest.mark.parametrize("route", ["/ship", "/stock", "/quote"])
def test_a_service_of_ours_whose_process_is_gone_is_proven_from_its_callers(shop, route):
    """back is killed: its agent cannot be reached, and front's calls to it are refused. /ship catches
    the failure (an UpstreamError with the reason), /stock lets the URLError out, /quote our client's
    UpstreamError. The claim is back's
    process, proven at front's boundary with the refusals captured there."""
    verdict, why = _investigate(shop, f"{route} fails with 502", route, budget_s=60)
    assert verdict.kind == "proven", why
    assert (verdict.service, verdict.locus) == ("back", "back process"), why
    assert verdict.boundary_service == "front", why
    assert "start back again" in verdict.mitigation


@pytest.mark.parametrize("shop", ["down"], indirect=True)
def test_retries_amplified_by_a_service_of_ours_that_is_gone_are_not_the_answer(shop):
    """back is killed and front's /track asks it three times per request: the retries are amplified, and
    the retry loop (it waits between attempts) is only `likely`. A service of ours that is gone is the
    stronger lead, and its process is proven from the refusals front's calls get."""
    also = (Alert("RetryAmplification", {}), Alert("ServiceDown", {"service": "back"}))
    verdict, why = _investigate(shop, "/track fails with 502", "/track", also=also, budget_s=60)
    assert "Front.track retries" in why  # the amplification was seen and followed first
    assert verdict.kind == "proven", why
    assert (verdict.service, verdict.locus) == ("back", "back process"), why


@pytest.mark.parametrize("shop", ["down"], indirect=True)
def test_a_gone_service_is_proven_from_refusals_whatever_latency_alert_is_open_beside_it(shop):
    """back is killed, and a latency alert another incident left open on front (its /quote route) fires too:
    with a service of ours gone, the refusals its callers get are looked at first, not the latency."""
    also = (Alert("ServiceDown", {"service": "back"}), Alert("HighLatency", {"service": "front", "route": "/quote"}))
    verdict, why = _investigate(shop, "", "", also=also, budget_s=60)
    assert "triage: symptom latency, down" in why, why  # the alerts name the latency first
    assert verdict.kind == "proven", why
    assert (verdict.service, verdict.locus) == ("back", "back process"), why

@pytest.mark.parametrize("shop", ["qship"], indirect=True)
def test_a_slow_peer_whose_handler_keeps_it_on_the_cpu_is_descended_into_without_its_own_alert(shop):
    """The same queue with only front's alert: back's handler holds a small part of front's wait, but
    its calls keep back's process on the CPU most of the window (their `cpu_ms` summed), so every
    request waits for them before its handler runs, and `route_days` is proven all the same."""
    verdict, why = _investigate(shop, "GET /ship is slow", "/ship", "HighLatency")
    assert "of the time: requests queue behind them" in why, why
    assert verdict.kind == "proven" and verdict.service == "back" and verdict.locus.endswith(":route_days"), why
