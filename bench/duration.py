"""Duration metric probe: cost per call on the application thread, with and without the CPU clock.

    python -m bench.duration [--n 20000] [--rounds 5]

Since duration events carry `cpu_ms` (the thread's CPU time between entry and exit, which lets the
assistant tell a function that works from one that waits), entering a probed function also reads the
thread's CPU clock. This measures what that costs: a plain function, the same function under a
duration probe as shipped ("cpu"), and under the same probe with the entry-side clock read switched
off ("wall only", the behaviour before), called in turn within each round so they share the machine.
A round's cost is the probed call's median minus the plain call's median. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Dict, List

import probebook.agent.probes as probes
from probebook.agent import Agent


def work(x: int) -> int:
    return x * 2 + 1


def plain(x: int) -> int:
    return x * 2 + 1


def _wall_only(self: Any, frame: Any) -> Any:  # the entry hook as it was: no clock read for a metric
    return None if self.spec.kind != "span" else _shipped(self, frame)


_shipped = probes.ProbeRuntime.on_enter


def _median_ns(fn: Any, n: int) -> float:
    clock = time.perf_counter_ns
    out: List[int] = []
    for i in range(n):
        t0 = clock()
        fn(i)
        out.append(clock() - t0)
    return float(statistics.median(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    agent = Agent()
    agent.add_probe({"kind": "metric", "where": f"{__name__}:work", "metric": {"name": "work_ms", "type": "duration"},
                     "rate": 1000000})
    rounds: List[Dict[str, float]] = []
    try:
        for _ in range(opts.rounds):
            base = _median_ns(plain, opts.n)
            probes.ProbeRuntime.on_enter = _shipped
            cpu = _median_ns(work, opts.n)
            probes.ProbeRuntime.on_enter = _wall_only
            wall = _median_ns(work, opts.n)
            probes.ProbeRuntime.on_enter = _shipped
            agent.drain_events()
            rounds.append({"plain_ns": base, "cpu_cost_ns": cpu - base, "wall_only_cost_ns": wall - base})
    finally:
        probes.ProbeRuntime.on_enter = _shipped
        agent.close()
    mid = sorted(rounds, key=lambda r: r["cpu_cost_ns"])[len(rounds) // 2]
    print(json.dumps({"rounds": rounds, "median_round": mid,
                      "ratio_cpu_over_wall_only": round(mid["cpu_cost_ns"] / max(1.0, mid["wall_only_cost_ns"]), 2)},
                     indent=1))


if __name__ == "__main__":
    main()
