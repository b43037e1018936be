"""Snapshot hit with default limits on a frame of ~10 locals (nested dicts, objects), per call.

    python -m bench.snapshot [--n 2000] [--rounds 5]

Ours: a snapshot probe (args, locals, 20-frame stack) at the line, rate unlimited for the run.
ddtrace: its own capture of the same frame from a hook injected at the same line of an identical
copy of the function with `inject_hook`, with the same limits (level 2, 100 items, 255 chars, 20
fields): arguments and locals (`capture_pairs`, what ours captures) and, for reference, its full
`_capture_context`, which also captures module globals.

The plain copy, ours and ddtrace's take turns in blocks of 50 calls, each call timed alone, so all
see the same machine (this VM's speed drifts by tens of percent within a minute). After each
block the captures are read and encoded to JSON, as the agent's reader thread and ddtrace's encoder
do in a service (outside the timings: each side's reader leaves the same kind of cold caches and
freed memory to its next hit, and each side pays for its own garbage collections). A
round's cost per hit is (call - median plain call of that round); the result is the median round.
Goal: ours <= 0.5x ddtrace's args+locals capture, p99 <= 1 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable, Dict, List

from bench import _targets as T
from probebook.agent import Agent, AgentLimits


_BLOCK = 50


def pct(xs, q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _round(fns: Dict[str, Callable], args, n: int, readers: Dict[str, Callable[[], object]]) -> dict:
    clock = time.perf_counter_ns
    times: Dict[str, List[int]] = {name: [] for name in fns}
    for _ in range(max(1, n // _BLOCK)):
        for name, fn in fns.items():
            ts = times[name]
            for _ in range(_BLOCK):
                t0 = clock()
                fn(*args)
                ts.append(clock() - t0)
            if name in readers:  # outside the timings, like a reader thread
                readers[name]()
    base = pct(sorted(times.pop("plain")), 0.5)
    out: dict = {"plain_p50_us": base / 1000}
    for name, ts in times.items():
        over = sorted(max(0, t - base) for t in ts)
        out[name] = {"p50_us": pct(over, 0.5) / 1000, "p99_us": pct(over, 0.99) / 1000}
    if "ddtrace_args_locals" in out:
        for q in ("p50", "p99"):
            out[f"ratio_{q}_vs_ddtrace_args_locals"] = out["probebook"][f"{q}_us"] / out["ddtrace_args_locals"][f"{q}_us"]
    return out


def _ddtrace_hooks(line: int, keep: List[object]) -> Dict[str, Callable]:
    """ddtrace's captures injected into the copies (empty when ddtrace is not installed); each
    capture is appended to `keep`."""
    try:
        from ddtrace.debugging._safety import get_args, get_locals
        from ddtrace.debugging._signal import utils
        from ddtrace.debugging._signal.snapshot import _capture_context
        from ddtrace.internal.bytecode_injection import inject_hook
    except Exception:  # ddtrace is optional
        return {}
    frame_of = sys._getframe

    def dd_args_locals(_):
        frame = frame_of(1)
        keep.append((utils.capture_pairs(get_args(frame)), utils.capture_pairs(get_locals(frame))))

    def dd_full(_):
        keep.append(_capture_context(frame_of(1), (None, None, None)))

    first = T.handle.__code__.co_firstlineno
    for fn, hook in ((T.handle_dd, dd_args_locals), (T.handle_dd_full, dd_full)):
        inject_hook(fn, hook, fn.__code__.co_firstlineno + line - first, "bench")
    return {"ddtrace_args_locals": T.handle_dd, "ddtrace_full_context": T.handle_dd_full}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    order = T.Order(17, "u-42", [{"price": 3.5, "sku": "a"}, {"price": 9.25, "sku": "b"}] * 3)
    args = (order, {"id": "u-42", "tier": "gold", "flags": [1, 2]}, 51.0)
    line = T.line_of("# SNAP")

    agent = Agent(AgentLimits(cpu_budget=100.0, process_snapshot_rate=1e9, snapshot_rate=1e9))
    probe = agent.add_probe({"kind": "snapshot", "where": f"bench/_targets.py:{line}", "rate": 1e9})
    seen: List[int] = []
    sample: List[object] = []
    dd_captures: List[object] = []

    def read_ours() -> None:  # what the agent's HTTP reader does with a batch
        events = [e for e in agent.drain_events() if e.kind == "snapshot"]
        json.dumps([e.to_dict() for e in events])
        seen.append(len(events))
        if events and not sample:
            sample.append(sorted(events[0].locals))

    def read_ddtrace() -> None:  # what ddtrace's encoder does with its snapshots
        json.dumps(dd_captures, default=repr)
        dd_captures.clear()

    fns = {"plain": T.handle_plain, "probebook": T.handle, **_ddtrace_hooks(line, dd_captures)}
    readers = {"probebook": read_ours, "ddtrace_args_locals": read_ddtrace, "ddtrace_full_context": read_ddtrace}
    _round(fns, args, 200, readers)  # warm up
    rounds = [_round(fns, args, opts.n, readers) for _ in range(opts.rounds)]
    agent.remove_probe(probe.id)
    agent.close()

    out: dict = {"python": sys.version.split()[0], "n": opts.n, "rounds": rounds,
                 "probebook_events": sum(seen), "probebook_locals": sample[0] if sample else []}
    for name in fns:
        if name != "plain":
            out[name] = {q: statistics.median(r[name][q] for r in rounds) for q in ("p50_us", "p99_us")}
    out["ddtrace"] = None if "ddtrace_args_locals" not in fns else True
    if out["ddtrace"]:
        for q in ("p50", "p99"):
            key = f"ratio_{q}_vs_ddtrace_args_locals"
            out[key] = statistics.median(r[key] for r in rounds)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
