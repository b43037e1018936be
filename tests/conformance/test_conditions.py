"""What a condition's value does to a hit, with the inline guard out of the way (the condition reads an
item, which the guard does not compile): true lets it through, false, None and empty or zero builtins
filter it, anything else is a failure said in one line; failures in a row disable the probe, a success
in between starts the count again."""

import pytest
import shapes
from conformance_support import events, where
from support import wait_for

VALUES = [(True, "hit"), (False, "filtered"), (None, "filtered"), (1, "hit"), (0, "filtered"), (2.5, "hit"),
          (0.0, "filtered"), ("yes", "hit"), ("", "filtered"), ([1], "hit"), ([], "filtered"), ({"a": 1}, "hit"),
          ({}, "filtered"), ((), "filtered"), (b"x", "hit"), (b"", "filtered"), (object(), "failed")]


@pytest.mark.parametrize("kind", ["log", "metric"])
@pytest.mark.parametrize("value, outcome", VALUES, ids=[f"{type(v).__name__}-{o}" for v, o in VALUES])
def test_a_conditions_value_decides_the_hit(agent, kind, value, outcome):
    spec = {"kind": kind, "where": where("echo") if kind == "log" else "shapes:echo", "when": "value[0]",
            "rate": 1000}
    spec.update({"template": "v"} if kind == "log" else {"metric": {"name": "echo_ms", "type": "duration"}})
    probe = agent.add_probe(spec)
    shapes.echo([value])
    info = agent.get_probe(probe.id)
    counts = {"hit": info.emitted, "filtered": info.filtered, "failed": info.failed}
    assert counts == {k: int(k == outcome) for k in counts}, (counts, info.reason)
    assert len(events(agent, kind)) == (outcome == "hit")


def test_failures_in_a_row_disable_the_probe_and_a_success_starts_the_count_again(agent):
    n = agent.limits.condition_failures
    probe = agent.add_probe({"kind": "log", "where": where("echo"), "template": "v", "when": "value[0] > 1",
                             "rate": 10000})
    for _ in range(n - 1):
        shapes.echo(["text"])  # "text" > 1: a TypeError, a failure
    shapes.echo([5])  # a success: the count starts again
    for _ in range(n - 1):
        shapes.echo(["text"])
    info = agent.get_probe(probe.id)
    assert info.status in ("installed", "emitting") and info.failed == 2 * (n - 1) and info.emitted == 1, info
    shapes.echo(["text"])  # the n-th in a row
    info = wait_for(lambda: agent.get_probe(probe.id) if agent.get_probe(probe.id).status == "disabled" else None,
                    timeout=10, what="the probe to be disabled")
    assert f"({n} times in a row)" in info.reason and info.reason.startswith("condition failed:"), info.reason


def test_a_condition_that_gives_an_object_says_what_it_gave(agent):
    probe = agent.add_probe({"kind": "log", "where": where("echo"), "template": "v", "when": "value[0]", "rate": 10000})
    for _ in range(agent.limits.condition_failures):
        shapes.echo([shapes])
    info = wait_for(lambda: agent.get_probe(probe.id) if agent.get_probe(probe.id).status == "disabled" else None,
                    timeout=10, what="the probe to be disabled")
    assert info.reason.startswith("condition gave a module, expected true/false"), info.reason
