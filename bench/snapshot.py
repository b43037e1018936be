"""Snapshot hit with default limits on a frame of ~10 locals (nested dicts, objects), per call.

    python -m bench.snapshot [--n 3000]

Ours: a snapshot probe (args, locals, 20-frame stack) at the line, rate unlimited for the run.
ddtrace: its own capture of the same frame from a hook injected at the same line with
`inject_hook`, with the same limits (level 2, 100 items, 255 chars, 20 fields): arguments and
locals (`capture_pairs`, what ours captures) and, for reference, its full `_capture_context`,
which also captures module globals. Per-call cost = call time - median plain call time.
Goal: ours <= 0.5x ddtrace's args+locals capture, p99 <= 1 ms.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench import _targets as T
from bench.loghit import _timings, pct
from probebook.agent import Agent, AgentLimits


def _cost(timings, base):
    over = sorted(max(0, t - base) for t in timings)
    return {"p50_us": pct(over, 0.5) / 1000, "p99_us": pct(over, 0.99) / 1000}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    n = ap.parse_args().n
    order = T.Order(17, "u-42", [{"price": 3.5, "sku": "a"}, {"price": 9.25, "sku": "b"}] * 3)
    args = (order, {"id": "u-42", "tier": "gold", "flags": [1, 2]}, 51.0)
    line = T.line_of("# SNAP")
    _timings(T.handle, args, 500)
    plain = _timings(T.handle, args, n)
    base = pct(plain, 0.5)
    out = {"python": sys.version.split()[0], "n": n, "plain_p50_us": base / 1000}

    agent = Agent(AgentLimits(cpu_budget=100.0, process_snapshot_rate=1e9, event_capacity=n + 10))
    probe = agent.add_probe({"kind": "snapshot", "where": f"bench/_targets.py:{line}", "rate": 1e9})
    ours = _timings(T.handle, args, n)
    snaps = [e for e in agent.drain_events() if e.kind == "snapshot"]
    agent.remove_probe(probe.id)
    agent.close()
    out["probebook"] = _cost(ours, base)
    out["probebook_events"] = len(snaps)
    out["probebook_locals"] = sorted(snaps[0].locals) if snaps else []

    try:
        from ddtrace.debugging._safety import get_args, get_locals
        from ddtrace.debugging._signal import utils
        from ddtrace.debugging._signal.snapshot import _capture_context
        from ddtrace.internal.bytecode_injection import eject_hook, inject_hook
    except Exception:  # ddtrace is optional
        out["ddtrace"] = None
        return out

    frame_of = sys._getframe

    def dd_args_locals(_):
        frame = frame_of(1)
        utils.capture_pairs(get_args(frame))
        utils.capture_pairs(get_locals(frame))

    def dd_full(_):
        _capture_context(frame_of(1), (None, None, None))

    original = T.handle.__code__
    for name, hook in (("ddtrace_args_locals", dd_args_locals), ("ddtrace_full_context", dd_full)):
        inject_hook(T.handle, hook, line, name)
        out[name] = _cost(_timings(T.handle, args, n), base)
        eject_hook(T.handle, hook, line, name)
        T.handle.__code__ = original
    out["ratio_p50_vs_ddtrace_args_locals"] = out["probebook"]["p50_us"] / out["ddtrace_args_locals"]["p50_us"]
    out["ratio_p99_vs_ddtrace_args_locals"] = out["probebook"]["p99_us"] / out["ddtrace_args_locals"]["p99_us"]
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
