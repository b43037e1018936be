"""Dynamic log hit with 3 variables: cost on the application thread, per call.

    python -m bench.loghit [--n 20000]

Each call of the probed function is timed alone; the plain function timed the same way in the
same run is the baseline. Reports p50/p99 of (probed - plain median). Goal: p99 <= 10 us.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench import _targets as T
from probebook.agent import Agent, AgentLimits


def _timings(fn, args, n: int):
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn(*args)
        out.append(clock() - t0)
    out.sort()
    return out


def pct(xs, q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    n = ap.parse_args().n
    order = T.Order(17, "u-42", [{"price": 3.5}, {"price": 9.25}])
    args = (order, "u-42", 12.75)
    line = T.line_of("# LOG")
    _timings(T.log_target, args, 2000)  # warm up
    plain = _timings(T.log_target, args, n)
    agent = Agent(AgentLimits(cpu_budget=100.0))
    probe = agent.add_probe({"kind": "log", "where": f"bench/_targets.py:{line}", "rate": 1e9,
                             "template": "order={order.oid} user={user} total={total}"})
    probed = _timings(T.log_target, args, n)
    events = [e for e in agent.drain_events() if e.kind == "log"]
    agent.remove_probe(probe.id)
    agent.close()
    base = pct(plain, 0.5)
    over = sorted(max(0, t - base) for t in probed)
    return {
        "python": sys.version.split()[0], "n": n, "events": len(events), "sample": events[0].message,
        "plain_p50_ns": base, "probed_p50_ns": pct(probed, 0.5),
        "cost_p50_us": pct(over, 0.5) / 1000, "cost_p99_us": pct(over, 0.99) / 1000,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
