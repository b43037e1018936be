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


class _StepClock:
    """The thread CPU clock as the probe reads it, advancing `step` ns at each read: each timed evaluation
    of a condition then costs exactly `step` (found by mutation testing: nothing checked which evaluations
    are timed, the budget's edge, or the count of slow ones)."""

    def __init__(self):
        self.now, self.step = 0, 0

    def __call__(self):
        self.now += self.step
        return self.now


@pytest.fixture
def slow_clock(monkeypatch):
    from probebook.agent import probes
    from probebook.agent.engine import Agent
    from probebook.agent.limits import AgentLimits

    clock = _StepClock()
    monkeypatch.setattr(probes, "_cpu_ns", clock)
    agent = Agent(AgentLimits(cpu_budget=1.0, condition_budget=0.0001))  # 100 us a condition
    yield agent, clock, agent.condition_budget_ns
    agent.close()


def _status_after(agent, probe, calls):
    for _ in range(calls):
        shapes.echo([5])
    info = agent.get_probe(probe.id)
    return info.status, info.failed, info.emitted


def test_a_condition_over_its_budget_three_timed_times_disables_the_probe(slow_clock):
    agent, clock, budget = slow_clock
    probe = agent.add_probe({"kind": "log", "where": where("echo"), "template": "v", "when": "value[0] > 1",
                             "rate": 10000})
    clock.step = budget  # exactly the budget is within it
    assert _status_after(agent, probe, 16)[:2] == ("emitting", 0)
    clock.step = budget + 1  # the first evaluation, then every 8th, is timed: 17 is not, 24 and 32 are
    status, failed, _ = _status_after(agent, probe, 1)
    assert (status, failed) == ("emitting", 0)
    assert _status_after(agent, probe, 7)[:2] == ("emitting", 1)  # the 24th: one timed over budget
    assert _status_after(agent, probe, 8)[:2] == ("emitting", 2)  # the 32nd: two in a row
    clock.step = budget  # the 40th, within budget, starts the count again
    assert _status_after(agent, probe, 8)[:2] == ("emitting", 2)
    clock.step = budget + 1
    assert _status_after(agent, probe, 16)[:2] == ("emitting", 4)  # 48th and 56th: two in a row again
    _status_after(agent, probe, 8)  # the 64th: the third in a row
    info = wait_for(lambda: (lambda i: i if i.status == "disabled" else None)(agent.get_probe(probe.id)),
                    timeout=10, what="the probe disabled")
    assert "over its budget of 100 us" in info.reason and info.failed == 5


def test_a_condition_ten_times_over_its_budget_disables_the_probe_at_once(slow_clock):
    agent, clock, budget = slow_clock
    probe = agent.add_probe({"kind": "log", "where": where("echo"), "template": "v", "when": "value[0] > 1",
                             "rate": 10000})
    clock.step = 10 * budget + 1
    shapes.echo([5])
    info = wait_for(lambda: (lambda i: i if i.status == "disabled" else None)(agent.get_probe(probe.id)),
                    timeout=10, what="the probe disabled")
    assert info.failed == 1 and info.emitted == 0 and "over its budget" in info.reason
