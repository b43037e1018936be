"""The event ring and the work a hit leaves to the reader: what a user reads must be what the
probed line saw, numbered without gaps, with every loss counted."""

import gc

import shapes
from conformance_support import events, where

from probebook.agent import Agent, AgentLimits
from probebook.agent.events import EventBuffer
from probebook.protocol.events import StatusEvent


def test_ring_numbers_evicts_and_counts_exactly():
    buf = EventBuffer(capacity=10)
    for i in range(25):
        buf.append(StatusEvent(probe_id=f"p{i}", status="emitting"))
    batch = buf.drain()
    assert [e.seq for e in batch.events] == list(range(16, 26))
    assert [e.probe_id for e in batch.events] == [f"p{i}" for i in range(15, 25)]
    assert batch.missed == 15 and buf.dropped == 15
    for i in range(5):
        buf.append(StatusEvent(probe_id="late", status="emitting"))
    batch = buf.drain()
    assert [e.seq for e in batch.events] == [26, 27, 28, 29, 30] and batch.missed == 0
    assert buf.dropped == 15
    # a reader with its own cursor sees the same numbers, and what it missed
    later = buf.read(after=12, limit=3)
    assert [e.seq for e in later.events] == [21, 22, 23] and later.missed == 8 and later.next_seq == 23


def test_ring_capacity_changes_at_run_time_keeping_the_newest():
    buf = EventBuffer(capacity=10)
    for i in range(10):
        buf.append(StatusEvent(probe_id=str(i), status="emitting"))
    buf.capacity = 4
    got = buf.read(after=0).events
    assert [e.probe_id for e in got] == ["6", "7", "8", "9"] and [e.seq for e in got] == [7, 8, 9, 10]


def test_log_line_shows_values_as_they_were_at_the_hit(agent):
    agent.add_probe({"kind": "log", "where": where("plain"), "template": "a={a} b={b}", "rate": 1000})
    items = [1, 2]
    name = "ada"
    shapes.plain(items, [name])  # a list + a list: the line reads both lists
    items.append(3)  # changed after the hit, before anyone read the event
    [log] = events(agent, "log")
    assert log.message == "a=[1, 2] b=['ada']"


def test_log_line_keeps_the_redaction_of_its_hit(agent):
    agent.add_probe({"kind": "log", "where": where("plain"), "template": "a={a}", "rate": 1000})
    shapes.plain("Bearer abcdefghijklmnopqrstuvwxyz012345", "")
    agent.set_redaction(patterns=[])  # loosened after the hit: the line was already bound to the old rules
    shapes.plain("Bearer abcdefghijklmnopqrstuvwxyz012345", "")
    first, second = events(agent, "log")
    assert first.message == "a=[REDACTED]"
    assert "abcdefghijklmnopqrstuvwxyz012345" in second.message


def test_snapshots_waiting_to_be_read_are_not_tracked_by_the_hosts_collector():
    agent = Agent(AgentLimits(cpu_budget=1.0, process_snapshot_rate=1e6, event_capacity=1000))
    try:
        agent.add_probe({"kind": "snapshot", "where": where("plain"), "rate": 1000})
        payload = [{"k": i, "v": [i, str(i)]} for i in range(20)]
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(100):
            shapes.plain(payload, [payload])
        gc.collect()
        grown = len(gc.get_objects()) - before
        assert grown < 100 * 3, f"{grown} objects stay tracked for 100 waiting snapshots"
        snaps = events(agent, "snapshot")
        assert len(snaps) == 100
        a = snaps[-1].arguments["a"]
        assert a["type"] == "list" and a["size"] == 20 and a["elements"][0]["entries"][0][0]["value"] == "k"
    finally:
        agent.close()
