"""A fleet of real agent processes driven through a real redis-server (docs/protocol.md, "Fleets
through Redis"): registration, signed commands, merged events, reconnects and a Redis restart."""

import json
import time

import pytest
from fleet_support import assert_contiguous, read_until
from support import wait_for

from probebook.protocol.fleet import FleetKeys, new_command_id, sign_command
from probebook.protocol.resp import RedisClient
from probebook.connectors import FleetEmpty, RedisFleet
from probebook.lab.local_fleet import LocalFleet
from probebook.lab.ticker import TICK_LINE

N = 3
SERVICE = "ticker"
WHERE = f"lab/ticker.py:{TICK_LINE}"


@pytest.fixture(scope="module")
def agents(redis):
    with LocalFleet(N, SERVICE, broker=redis.url) as fleet:
        yield fleet


@pytest.fixture
def fleet(redis, agents):
    client = RedisFleet(redis.url, SERVICE, agents.token_name, agents.secret, timeout=5.0)
    wait_for(lambda: len(live(client)) == N, 15, what="all agents registered")
    yield client
    client.remove_all()
    client.close()


def live(client):
    return [i for i in client.instances() if not i.stale]


def collect(client, want, timeout=10.0):
    return read_until(lambda: client.events(timeout=0.3), want, timeout)


def logs_from_all(probe_id, ids):
    return lambda evs: {e.instance_id for e in evs if e.kind == "log" and e.probe_id == probe_id} >= set(ids)


def test_a_probe_lands_on_every_instance_and_their_events_arrive_labelled(fleet):
    instances = live(fleet)
    assert len({i.instance_id for i in instances}) == N
    assert all(i.health.service == SERVICE and i.health.ok for i in instances)
    probe = fleet.add_probe({"kind": "log", "where": WHERE, "template": "n={n}"})
    assert probe.ok, probe.summary()
    assert set(probe.probe_ids) == {i.instance_id for i in instances}
    assert set(probe.probe_ids.values()) == {probe.id}
    assert set(probe.status_counts()) <= {"installed", "emitting", "pending"}, probe.summary()
    events = collect(fleet, logs_from_all(probe.id, probe.probe_ids))
    installed = {e.instance_id for e in events if e.kind == "status" and e.data["status"] == "installed"}
    assert installed == set(probe.probe_ids)
    logs = [e for e in events if e.kind == "log"]
    assert logs and all(e.service == SERVICE and e.data["message"].startswith("n=") for e in logs)
    listed = fleet.probes()
    assert all([p.id for p in listed[iid]] == [probe.id] for iid in probe.probe_ids)
    removed = fleet.remove_probe(probe.id)
    assert [r.status for r in removed.values()] == [200] * N
    assert all(r.probe.status == "removed" for r in removed.values())


def test_a_bad_spec_is_refused_before_anything_is_sent(fleet):
    with pytest.raises(ValueError, match="where: line must be a positive whole number"):
        fleet.add_probe({"kind": "log", "where": "lab/ticker.py:zero", "template": "x"})


def test_a_command_for_one_instance_runs_only_there(fleet):
    target = live(fleet)[0].instance_id
    results = fleet.command("add_probe", {"id": "only-one", "kind": "log", "where": WHERE, "template": "x"},
                            instance=target)
    assert list(results) == [target] and results[target].status == 201
    placed = {iid: [p.id for p in probes] for iid, probes in fleet.probes().items()}
    assert placed[target] == ["only-one"]
    assert len(placed) == N and all(ids == [] for iid, ids in placed.items() if iid != target)


def test_client_reconnects_get_every_event_once(redis, agents, fleet):
    probe = fleet.add_probe({"kind": "log", "where": WHERE, "template": "n={n}"})
    assert probe.ok, probe.summary()
    events = collect(fleet, logs_from_all(probe.id, probe.probe_ids))
    admin = RedisClient(redis.url)
    for _ in range(3):
        fleet.close()  # the client's connections go
        events += fleet.events(timeout=0.3)
        admin.execute("CLIENT", "KILL", "TYPE", "normal")  # and everyone's: the agents' too
        admin.execute("CLIENT", "KILL", "TYPE", "pubsub")
        events += collect(fleet, lambda evs: len(evs) >= 10)
    # an agent whose connection died before Redis's "ok" reached it sends those events again
    keys = FleetKeys.for_service(SERVICE)
    for _id, flat in admin.execute("XREVRANGE", keys.events, "+", "-", "COUNT", 5):
        admin.execute("XADD", keys.events, "*", *flat)
    dropped = fleet.duplicates
    events += fleet.events(timeout=0.3)
    assert fleet.duplicates >= dropped + 5
    resumed = RedisFleet(redis.url, SERVICE, agents.token_name, agents.secret, since=fleet.cursor)  # a new notebook
    events += collect(resumed, lambda evs: len(evs) >= 10)
    assert_contiguous(events)
    seen = {iid: max(seqs) for iid, seqs in assert_contiguous(events).items()}
    later = RedisFleet(redis.url, SERVICE, agents.token_name, agents.secret, since="now")
    fresh = collect(later, lambda evs: len(evs) >= 3)
    assert all(e.seq > seen[e.instance_id] for e in fresh)  # no history replayed to it
    assert not any(fleet.missed.values())
    wait_for(lambda: len(live(fleet)) == N, 10, what="agents back after their connections were killed")
    assert fleet.remove_probe(probe.id)  # commands work again after the agents resubscribed


def test_a_redis_restart_loses_no_event_and_commands_work_again(redis, fleet):
    probe = fleet.add_probe({"kind": "log", "where": WHERE, "template": "n={n}"})
    assert probe.ok, probe.summary()
    events = collect(fleet, logs_from_all(probe.id, probe.probe_ids))
    admin = RedisClient(redis.url)
    admin.execute("CLIENT", "PAUSE", 20000, "WRITE")  # agents' writes wait; reads go on
    while True:
        more = fleet.events(timeout=0.2)
        if not more:
            break
        events += more
    before = {iid: max(e.seq for e in events if e.instance_id == iid) for iid in probe.probe_ids}
    redis.restart()  # no persistence: registry, streams and subscriptions are gone
    wait_for(lambda: len(live(fleet)) == N, 15, what="agents registered again after the restart")
    after = collect(fleet, lambda evs: all(any(e.instance_id == iid and e.seq > before[iid] + 5 for e in evs)
                                           for iid in before))
    assert_contiguous(events + after)  # events made while Redis was away came through, once
    again = fleet.add_probe({"kind": "log", "where": WHERE, "template": "again"})
    assert again.ok, again.summary()


def test_unsigned_wrongly_signed_and_replayed_commands_are_refused_and_audited(redis, agents, fleet):
    keys = FleetKeys.for_service(SERVICE)
    raw = RedisClient(redis.url)
    keep = fleet.add_probe({"id": "keep", "kind": "log", "where": WHERE, "template": "x"})  # what a forged
    assert keep.ok and len(keep.probe_ids) == N, keep.summary()  # remove_all would take away
    impostor = RedisFleet(redis.url, SERVICE, agents.token_name, "not-the-secret-at-all", timeout=3.0)
    results = impostor.add_probe({"id": "evil", "kind": "log", "where": WHERE, "template": "x"})
    assert sorted(r.status for r in results.results.values()) == [401] * N
    assert all("not signed with the secret of token 'ops'" in r.message for r in results.results.values())
    unknown = RedisFleet(redis.url, SERVICE, "mallory", agents.secret, timeout=3.0).remove_all()
    assert [r.status for r in unknown.values()] == [401] * N
    raw.execute("PUBLISH", keys.commands, json.dumps({"id": new_command_id(), "op": "remove_all", "args": {},
                                                      "who": "ops", "instance": None}))  # no sig at all
    old_id = f"{int(time.time() * 1000) - 3_600_000}-cafe"  # signed properly, an hour ago
    raw.execute("PUBLISH", keys.commands, json.dumps({
        "id": old_id, "op": "remove_all", "args": {}, "who": "ops", "instance": None,
        "sig": sign_command(agents.secret, old_id, "remove_all", {})}))
    raw.execute("PUBLISH", keys.commands, "{not json")
    # a signed command published after the forged ones: once every instance ran it, each had read them
    after = fleet.add_probe({"id": "after", "kind": "log", "where": WHERE, "template": "y"})
    assert after.ok and len(after.probe_ids) == N, after.summary()
    listed = fleet.probes()
    assert len(listed) == N and all(sorted(p.id for p in probes) == ["after", "keep"] for probes in listed.values()), \
        listed  # the evil probe never landed, and no forged remove_all ran

    def refusals():
        with open(agents.audit_path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if "refused" in line]

    def audited():
        entries = refusals()
        whats = [(e["who"], e["action"], e["result"].split(":")[0]) for e in entries]
        return (whats.count(("ops", "add_probe", "401 refused")) == N
                and whats.count(("mallory", "remove_all", "401 refused")) == N
                and sum("more than 300s away" in e["result"] for e in entries) == N
                and whats.count(("unknown", "broker_command", "400 refused")) == N
                and sum(e["result"].startswith("401 refused: command remove_all refused: not signed")
                        and e["who"] == "ops" for e in entries) == N)

    wait_for(audited, 5, what="every refusal in the audit log")


def test_dead_instances_answer_nothing_and_stale_ones_are_marked(redis, agents, fleet):
    agents.start(1)
    pid = agents.procs[-1].pid
    dead = wait_for(lambda: next((i.instance_id for i in live(fleet) if i.health.pid == pid), None), 15,
                    what="the extra agent registered")
    before = {i.instance_id for i in live(fleet)}
    assert len(before) == N + 1
    agents.kill(len(agents.procs) - 1)  # SIGKILL: it cannot say goodbye
    results = fleet.command("list_probes", timeout=1.5)
    assert results[dead].status == 0 and "did not answer list_probes within 1.5s" in results[dead].message
    assert sum(r.ok for r in results.values()) == N
    keys = FleetKeys.for_service(SERVICE)
    raw = RedisClient(redis.url)
    entry = json.loads(raw.execute("HGET", keys.instances, dead))
    entry["seen"] = time.time() - 60  # as it looks ten heartbeats later
    raw.execute("HSET", keys.instances, dead, json.dumps(entry))
    marked = {i.instance_id: i for i in fleet.instances()}
    assert marked[dead].stale and marked[dead].age_s >= 60
    assert sum(not i.stale for i in marked.values()) == N
    assert set(fleet.command("list_probes", timeout=3)) == before - {dead}  # nobody waits for the stale
    raw.execute("HDEL", keys.instances, dead)


def test_an_instance_that_registers_later_gets_the_live_probes(redis, agents, fleet):
    """A process that joins the fleet after a probe was placed (a worker a server restarted) gets the
    live probe with the rest of its TTL when the client next reads events, and its events arrive."""
    probe = fleet.add_probe({"kind": "log", "where": WHERE, "template": "n={n}", "ttl": 300})
    assert probe.ok, probe.summary()
    before = {i.instance_id for i in live(fleet)}
    agents.start(1)
    pid = agents.procs[-1].pid
    new = wait_for(lambda: next((i.instance_id for i in live(fleet) if i.health.pid == pid), None), 15,
                   what="the extra agent registered")
    assert new not in before
    collect(fleet, logs_from_all(probe.id, [new]), timeout=15)
    line = next(c for c in fleet.changes if c.startswith(f"instance {new} joined"))
    assert "1 placed" in line, list(fleet.changes)
    held = {p.id: p for p in fleet.probes()[new]}
    assert 0 < held[probe.id].expires_in <= 300
    fleet.remove_probe(probe.id)
    agents.kill(len(agents.procs) - 1)
    RedisClient(redis.url).execute("HDEL", FleetKeys.for_service(SERVICE).instances, new)  # not waited for


def test_a_service_with_no_live_instance_says_how_to_start_one(redis):
    with pytest.raises(FleetEmpty, match="start agents with --broker redis://"):
        RedisFleet(redis.url, "nobody-here", "ops", "whatever-secret").add_probe(
            {"kind": "log", "where": WHERE, "template": "x"})


def test_replies_not_signed_by_the_instance_are_ignored(redis, agents, fleet):
    """Anyone who can write to Redis can write to the replies stream: a forger who reads every command
    and answers it first in each instance's name (an empty probe list, a 'placed') is not believed."""
    from probebook.protocol.fleet import sign_reply
    from probebook.protocol.resp import Subscriber

    keys = FleetKeys.for_service(SERVICE)
    writer = RedisClient(redis.url)
    ids = [i.instance_id for i in live(fleet)] + ["ghost"]

    def forge(_channel, data):
        cmd = json.loads(data)
        for iid in ids:
            body = json.dumps({"probes": []} if cmd["op"] == "list_probes" else {"probe": {"id": "forged"}})
            for sig in ("", sign_reply("a-guess", cmd["id"], iid, 200, body)):  # unsigned, and signed wrong
                writer.execute("XADD", keys.replies, "*", "id", cmd["id"], "instance_id", iid, "status", 200,
                               "body", body, *(("sig", sig) if sig else ()))

    forger = Subscriber(redis.url, [keys.commands], forge).start()
    try:
        assert forger.subscribed.wait(5)
        placed = fleet.add_probe({"id": "real", "kind": "log", "where": WHERE, "template": "x"})
        assert placed.ok and len(placed.probe_ids) == N, placed.summary()
        listed = fleet.probes()
        assert all([p.id for p in probes] == ["real"] for probes in listed.values()), listed  # not the forged []
        ghost = fleet.command("health", instance="ghost", timeout=4.0)["ghost"]  # sent again every second
        assert ghost.status == 0
        assert "did not answer health within 4s" in ghost.message
        assert "replies in its name not signed with token 'ops''s secret ignored" in ghost.message
    finally:
        forger.stop()
