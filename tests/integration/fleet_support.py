"""Helpers of the fleet and client tests: reading events until enough came, and checking that
every instance's sequence numbers arrived once each, none skipped."""

import time
from collections import defaultdict
from typing import Callable, Dict, List

from probebook.connectors import AgentEvent


def read_until(read: Callable[[], List[AgentEvent]], want: Callable[[List[AgentEvent]], bool],
               timeout: float = 10.0) -> List[AgentEvent]:
    """Call `read` until `want(everything read)` holds; everything read."""
    got: List[AgentEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not want(got):
        got += read()
    assert want(got), f"{len(got)} events after {timeout}s, not what the test waits for"
    return got


def assert_contiguous(events: List[AgentEvent]) -> Dict[str, List[int]]:
    """Per instance: each sequence number once, none skipped. Instance -> its sequence numbers."""
    by_instance: Dict[str, List[int]] = defaultdict(list)
    for e in events:
        by_instance[e.instance_id].append(e.seq)
    for iid, seqs in by_instance.items():
        assert len(seqs) == len(set(seqs)), f"{iid}: repeated events"
        assert sorted(seqs) == list(range(min(seqs), max(seqs) + 1)), f"{iid}: events missing"
    return by_instance
