"""Duration metric probe: cost per call on the application thread, with and without the CPU clock.

    python -m bench.duration [--n 20000] [--rounds 5]

Since duration events carry `cpu_ms` (the thread's CPU time between entry and exit, which lets the
assistant tell a function that works from one that waits), entering a probed function also reads the
thread's CPU clock. This measures what that costs: a plain function, the same function under a
duration probe as shipped ("cpu"), and under the same probe with the entry-side clock read switched
off ("wall only", the behaviour before), called in turn within each round so they share the machine.
The probe has the default rate, so every call runs the entry and exit hooks and a few make an event.
A round's cost is the probed call's median minus the plain call's median. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Dict, List, Tuple

import probebook.agent.probes as probes
from bench import _targets as T
from probebook.agent import Agent


def _wall_only(self: Any, frame: Any) -> Any:  # the entry hook as it was: no clock read for a metric
    return None if self.spec.kind != "span" else _shipped(self, frame)


_shipped = probes.ProbeRuntime.on_enter


def _median_ns(fn: Any, n: int, agent: Any = None) -> Tuple[float, int]:
    """The median time of one call of `fn`, and the events the agent emitted meanwhile (drained every
    1,000 calls, between timed calls, so that none is dropped)."""
    clock = time.perf_counter_ns
    out: List[int] = []
    emitted = 0
    for i in range(n):
        t0 = clock()
        fn(i)
        out.append(clock() - t0)
        if agent is not None and i % 1000 == 999:
            emitted += len(agent.drain_events())
    if agent is not None:
        emitted += len(agent.drain_events())
    return float(statistics.median(out)), emitted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    agent = Agent()
    # the default rate: every call pays the hooks, a few make an event (a probe emitting on every call
    # of a tight loop goes over the agent's CPU budget and is disabled, as it should be)
    agent.add_probe({"kind": "metric", "where": "bench._targets:target",
                     "metric": {"name": "target_ms", "type": "duration"}})
    rounds: List[Dict[str, float]] = []
    try:
        for _ in range(opts.rounds):
            base, _ = _median_ns(T.target_plain, opts.n)
            probes.ProbeRuntime.on_enter = _shipped
            cpu, with_cpu = _median_ns(T.target, opts.n, agent)
            probes.ProbeRuntime.on_enter = _wall_only
            wall, wall_only = _median_ns(T.target, opts.n, agent)
            probes.ProbeRuntime.on_enter = _shipped
            status = agent.probes()[0].status
            if not with_cpu or not wall_only or status != "emitting":  # the probe must be live in both
                raise SystemExit(f"the probe emitted {with_cpu} and {wall_only} events, status {status}")
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
