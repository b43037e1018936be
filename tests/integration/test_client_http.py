"""The notebook-side HTTP clients against real agent processes started with `probebook agent run`."""

import hashlib
import time

import pytest
from fleet_support import assert_contiguous, read_until

import probebook.lab.ticker as ticker
from probebook.connectors import (
    AgentAuthError,
    AgentClient,
    AgentRequestError,
    AgentUnreachable,
    ServiceClient,
)
from probebook.lab.local_fleet import LocalFleet
from probebook.lab.procs import free_port

N = 3
SERVICE = "ticker-http"
WHERE = f"lab/ticker.py:{ticker.TICK_LINE}"
READ_TIMEOUT = 1.0  # the agents close idle connections after this


@pytest.fixture(scope="module")
def agents():
    with LocalFleet(N, SERVICE, env={"PROBEBOOK_READ_TIMEOUT": str(READ_TIMEOUT)}) as fleet:
        yield fleet


@pytest.fixture
def client(agents):
    c = AgentClient(agents.urls()[0], token=agents.secret)
    yield c
    c.remove_all()
    c.close()


@pytest.fixture
def service(agents):
    s = ServiceClient(agents.port_dir, token=agents.secret)
    yield s
    s.remove_all()
    s.close()


def test_one_agent_probes_events_source_and_config(agents, client):
    info = {i["url"]: i for i in agents.port_files().values()}[client.url]
    health = client.health()
    assert health.ok and health.service == SERVICE and health.instance_id == info["instance_id"]
    probe = client.add_probe({"kind": "log", "where": WHERE, "template": "n={n} total={total}"})
    assert probe.status in ("installed", "emitting") and probe.location.endswith("(tick)")
    assert [p.id for p in client.probes()] == [probe.id]
    logs = read_until(lambda: [e for e in client.events(timeout=1).events if e.kind == "log"], lambda g: len(g) >= 3)
    assert all(e.instance_id == health.instance_id and e.service == SERVICE for e in logs)
    assert logs[0].data["message"].startswith("n=")
    src = client.source_file("lab/ticker.py", start=ticker.TICK_LINE, end=ticker.TICK_LINE)
    assert src.lines == [(ticker.TICK_LINE, "    total = n * 2")]
    with open(ticker.__file__, "rb") as fh:
        assert src.sha256 == hashlib.sha256(fh.read()).hexdigest()
    assert any(m.file.endswith("lab/ticker.py") for m in client.source_modules())
    assert client.set_limits(cpu_budget=0.05)["cpu_budget"] == 0.05
    assert "shoesize" in client.set_redaction(add_identifiers=["shoe_size"])["identifiers"]  # normalised
    assert client.remove_probe(probe.id).status == "removed"


def test_mistakes_are_one_line_errors_that_say_what_to_do(agents, client):
    with pytest.raises(AgentRequestError) as bad:
        client.add_probe({"kind": "log", "where": WHERE, "template": "x", "colour": "red"})
    assert bad.value.status == 400 and bad.value.field == "colour" and "\n" not in str(bad.value)
    assert str(bad.value).startswith(f"agent {client.name}: POST /v1/probes: 400 colour: unknown key")
    with pytest.raises(AgentRequestError, match="404 no probe with id 'nope'") as missing:
        client.remove_probe("nope")
    assert missing.value.status == 404
    with pytest.raises(AgentAuthError, match="401") as denied:
        AgentClient(client.url, token="wrong-token-123").health()
    assert isinstance(denied.value, PermissionError)
    start = time.monotonic()
    with pytest.raises(AgentUnreachable, match=r"agent 127\.0\.0\.1:\d+: GET /v1/health failed: ConnectionRefused"):
        AgentClient(f"http://127.0.0.1:{free_port()}", token="x" * 12, retries=3).health()
    assert time.monotonic() - start >= 0.05  # it backed off and tried again before giving up


def test_an_idle_connection_the_agent_closed_is_reopened_without_an_error(client):
    assert client.health().ok
    time.sleep(READ_TIMEOUT + 1.0)  # the agent has timed the kept-alive connection out meanwhile
    assert client.probes() == []
    time.sleep(READ_TIMEOUT + 1.0)
    probe = client.add_probe({"kind": "log", "where": WHERE, "template": "after a pause"})
    assert [p.id for p in client.probes()] == [probe.id]  # added once, not twice


def test_reading_again_after_a_reconnect_repeats_and_loses_nothing(agents, client):
    client.add_probe({"kind": "log", "where": WHERE, "template": "n={n}"})
    def page():
        got = client.events(timeout=1, limit=7).events
        client.close()  # a new connection for every page
        return got

    events = read_until(page, lambda g: len(g) >= 15)
    resumed = AgentClient(client.url, token=agents.secret)  # another client (a restarted notebook)
    resumed.cursor = client.cursor  # that kept where the first one was
    events += read_until(lambda: resumed.events(timeout=1, limit=7).events, lambda g: len(g) >= 10)
    assert len(assert_contiguous(events)) == 1 and len(events) >= 25


def test_a_service_of_n_instances_gets_the_probe_everywhere_and_merged_labelled_events(agents, service):
    assert len(service.clients) == N
    health = service.health()
    ids = {info["instance_id"] for info in agents.port_files().values()}
    assert set(health) == ids and all(h.ok for h in health.values())
    probe = service.add_probe({"kind": "log", "where": WHERE, "template": "n={n}"})
    assert probe.ok and set(probe.probe_ids) == ids and set(probe.probe_ids.values()) == {probe.id}
    events = read_until(lambda: service.events(timeout=0.5),
                        lambda g: {e.instance_id for e in g if e.kind == "log"} == ids)
    for _ in range(3):
        for c in service.clients.values():
            c.close()  # every connection goes; the per-instance cursors stay
        events += service.events(timeout=0.5)
    assert set(assert_contiguous(events)) == ids
    one_read = service.events(timeout=0.5)
    assert one_read == sorted(one_read, key=lambda e: (e.ts, e.instance_id, e.seq))
    removed = service.remove_probe(probe.id)
    assert set(removed) == ids and all(r.ok and r.probe.status == "removed" for r in removed.values())


def test_an_instance_that_joins_gets_the_live_probes_and_its_events_are_read(agents, service):
    """A new process of the service (a worker that replaced a recycled one) is found by reading
    events, gets the live probe with what is left of its TTL, and its events arrive."""
    probe = service.add_probe({"kind": "log", "where": WHERE, "template": "n={n}", "ttl": 300})
    assert probe.ok, probe.summary()
    before = set(service.health())
    agents.start(1)
    agents.wait_ready()
    ready = time.monotonic()
    events = read_until(lambda: service.events(timeout=0.2),
                        lambda g: {e.instance_id for e in g if e.kind == "log"} - before != set(), timeout=10)
    new = ({e.instance_id for e in events if e.kind == "log"} - before).pop()
    assert time.monotonic() - ready < 3.0  # found and probed within the follow period, plus a tick
    line = next(c for c in service.changes if c.startswith(f"instance {new} joined"))
    assert "1 placed" in line, line
    held = {p.id: p for p in service.probes()[new]}
    assert held[probe.id].status in ("installed", "emitting") and 0 < held[probe.id].expires_in <= 300
    removed = service.remove_probe(probe.id)
    assert removed[new].status == 200 and removed[new].probe.status == "removed", removed
    assert probe.id not in [p.id for p in service.probes()[new]]  # the joined instance no longer holds it


def test_a_dead_instance_is_reported_then_leaves_and_the_others_keep_streaming(agents, service):
    agents.start(1)
    agents.wait_ready()
    service.refresh()
    running = len(service.clients)
    assert running >= N + 1
    probe = service.add_probe({"kind": "log", "where": WHERE, "template": "n={n}"})
    assert probe.ok, probe.summary()
    agents.kill(len(agents.procs) - 1)
    dead = next(iid for iid, h in service.health().items() if isinstance(h, Exception))
    assert "ConnectionRefused" in str(service.health()[dead])
    # reading events follows the port files: the instance whose process is gone leaves, said once
    events = read_until(lambda: service.events(timeout=0.5), lambda g: dead not in service.health())
    assert {e.instance_id for e in events} <= set(probe.probe_ids) - {dead}
    assert [c for c in service.changes if c.startswith(f"instance {dead} left")], list(service.changes)
    assert len(service.clients) == running - 1
    results = service.add_probe({"kind": "log", "where": WHERE, "template": "again"})
    assert results.ok and set(results.results) == set(probe.probe_ids) - {dead}, results.summary()
    by_urls = ServiceClient([c.url for c in service.clients.values()], token=agents.secret)
    assert set(by_urls.health()) == set(service.health()) == set(probe.probe_ids) - {dead}
