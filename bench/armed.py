"""Armed probe whose condition is false: cost per hit, against peers in the same run.

    python -m bench.armed [--n 200000]
    python -m bench.armed --instructions

Peers: the plain call; ddtrace's `inject_hook` with a no-op hook (when ddtrace is installed);
`sys.settrace` with a line tracer that checks the same condition. Prints JSON.

`--instructions` counts instead of timing, under valgrind's callgrind: each case (plain, probebook,
ddtrace) calls the target 2,000 and then 12,000 times in a process of its own, and (I(12000) -
I(2000)) / 10000 is its instructions per call, which repeat exactly where wall time here moves by tens
of percent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench import _targets as T
from probebook.agent import Agent, AgentLimits


def _per_call_ns(fn, n: int, repeat: int = 7) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


_CASES = ("plain", "probebook", "ddtrace")


def _calls_only(case: str, n: int) -> None:
    """What callgrind counts for one case: the target armed as `case` says, called n times."""
    line = T.line_of("# PROBE")
    if case == "probebook":
        agent = Agent(AgentLimits(cpu_budget=100.0))
        agent.add_probe({"kind": "log", "where": f"bench/_targets.py:{line}", "template": "y={x}", "when": "x < 0"})
    elif case == "ddtrace":
        from ddtrace.internal.bytecode_injection import inject_hook

        inject_hook(T.target, _noop, line, "probe")
    target = T.target
    for i in range(n):
        target(i)


def _noop(arg):
    pass


def instructions() -> dict:
    """Instructions per call of each case, and over the plain call, counted by callgrind."""
    import importlib.util
    import os

    from bench.control_instructions import per_call

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out: dict = {"python": sys.version.split()[0]}
    for case in _CASES:
        if case == "ddtrace" and importlib.util.find_spec("ddtrace") is None:
            continue  # ddtrace is optional: not installed, or no wheel for this Python
        out[f"{case}_instructions"] = per_call([sys.executable, "-m", "bench.armed", "--calls-only", case], root,
                                               dict(os.environ, PYTHONHASHSEED="0"))
    plain = out["plain_instructions"]
    out["probebook_over_plain_instructions"] = out["probebook_instructions"] - plain
    if "ddtrace_instructions" in out:
        out["ddtrace_over_plain_instructions"] = out["ddtrace_instructions"] - plain
        out["probebook_vs_ddtrace_instructions"] = (out["probebook_over_plain_instructions"]
                                                    / max(1e-9, out["ddtrace_over_plain_instructions"]))
    return out


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    ap.add_argument("--calls-only", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.calls_only:
        _calls_only(args.calls_only[0], int(args.calls_only[1]))
        return {}
    if args.instructions:
        return instructions()
    n = args.n
    line = T.line_of("# PROBE")
    out = {"python": sys.version.split()[0], "n": n}
    out["plain_ns"] = _per_call_ns(T.target, n)

    agent = Agent(AgentLimits(cpu_budget=100.0))  # a benchmark is meant to be hot: no auto-disable
    probe = agent.add_probe({"kind": "log", "where": f"bench/_targets.py:{line}", "template": "y={x}",
                             "when": "x < 0"})
    out["probebook_ns"] = _per_call_ns(T.target, n)
    info = agent.remove_probe(probe.id)
    assert info.hits == 0 and agent._probes == {}, info
    agent.close()

    try:
        from ddtrace.internal.bytecode_injection import eject_hook, inject_hook
    except Exception:  # ddtrace is optional: not installed, or no wheel for this Python
        out["ddtrace_ns"] = None
    else:
        def noop(arg):
            pass

        original = T.target.__code__
        inject_hook(T.target, noop, line, "probe")
        out["ddtrace_ns"] = _per_call_ns(T.target, n)
        eject_hook(T.target, noop, line, "probe")
        T.target.__code__ = original

    def tracer(frame, event, arg):
        if event == "call":
            return tracer if frame.f_code is T.target.__code__ else None
        if event == "line" and frame.f_lineno == line and frame.f_locals["x"] < 0:
            pass
        return tracer

    sys.settrace(tracer)
    out["settrace_ns"] = _per_call_ns(T.target, n // 4)
    sys.settrace(None)

    if sys.version_info >= (3, 12):
        out.update(_monitoring_floor(n))

    plain = out["plain_ns"]
    out["probebook_over_plain_ns"] = out["probebook_ns"] - plain
    if out["ddtrace_ns"]:
        out["ddtrace_over_plain_ns"] = out["ddtrace_ns"] - plain
        out["probebook_vs_ddtrace"] = out["probebook_over_plain_ns"] / max(1e-9, out["ddtrace_over_plain_ns"])
    out["settrace_over_plain_ns"] = out["settrace_ns"] - plain
    return out


def _monitoring_floor(n: int) -> dict:
    """What any `sys.monitoring` LINE probe pays per hit before its own work, over the plain call:
    the callback alone; plus the frame object; plus reading one local through `f_locals`."""
    mon = sys.monitoring
    tool = next((t for t in (5, 2, 1, 0) if mon.get_tool(t) is None), None)
    if tool is None:
        return {}
    mon.use_tool_id(tool, "bench-floor")
    code, line, getframe = T.target_plain.__code__, T.target_plain.__code__.co_firstlineno + 1, sys._getframe
    plain = _per_call_ns(T.target_plain, n)

    disable = mon.DISABLE  # the return line, as the agent does for lines without probes

    def empty(c, ln):
        if ln != line:
            return disable
        return None

    def frame_only(c, ln):
        if ln != line:
            return disable
        getframe(1)

    def one_local(c, ln):
        if ln != line:
            return disable
        getframe(1).f_locals["x"]

    out = {}
    try:
        for name, cb in (("empty_callback", empty), ("frame_object", frame_only), ("read_one_local", one_local)):
            mon.register_callback(tool, mon.events.LINE, cb)
            mon.set_local_events(tool, code, mon.events.LINE)
            out[f"floor_{name}_ns"] = _per_call_ns(T.target_plain, n) - plain
            mon.set_local_events(tool, code, 0)
    finally:
        mon.register_callback(tool, mon.events.LINE, None)
        mon.free_tool_id(tool)
    return out


if __name__ == "__main__":
    result = main()
    if result:
        print(json.dumps(result, indent=1))
