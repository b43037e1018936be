"""Run the agent benchmarks side by side and record them in docs/performance.md.

    python -m bench.run            # print results
    python -m bench.run --write    # also rewrite the generated section of docs/performance.md
    python -m bench.run --write --only loghit,snapshot   # re-measure some, keep the others' last results

The armed-probe benchmark runs on every Python venv present (.venv, .venv-3.9 ...), each in its
own process; the log and snapshot benchmarks run on the main venv. Results: bench/results/*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
DOC = os.path.join(ROOT, "docs", "performance.md")
BEGIN, END = "<!-- bench:agent:begin -->", "<!-- bench:agent:end -->"


def _pythons() -> List[str]:
    found = [os.path.join(ROOT, ".venv", "bin", "python")]
    for v in ("3.9", "3.10", "3.12", "3.13"):
        p = os.path.join(ROOT, f".venv-{v}", "bin", "python")
        if os.path.exists(p):
            found.append(p)
    return [p for p in found if os.path.exists(p)]


def _run(python: str, module: str, *args: str) -> Dict[str, Any]:
    out = subprocess.run([python, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout)


_BENCHES = ("armed", "loghit", "snapshot", "evidence", "control", "fleet", "instructions")


def _measure(name: str, results: Dict[str, Any]) -> None:
    main_py = _pythons()[0]
    if name == "armed":
        results["armed"] = [_run(py, "bench.armed") for py in _pythons()]
    elif name == "loghit":
        results["loghit"] = _run(main_py, "bench.loghit", "--instructions")
        results["loghit_other"] = [_run(py, "bench.loghit", "--rounds", "3", "--instructions") for py in _pythons()[1:]]
    elif name == "snapshot":
        results["snapshot"] = _run(main_py, "bench.snapshot")
    elif name == "evidence":
        results["evidence"] = _run(main_py, "bench.evidence")
    elif name == "control":
        results["control"] = _run(main_py, "bench.control", "--rounds", "5", "--seconds", "5")
    elif name == "fleet":
        results["fleet"] = _run(main_py, "bench.fleet_arm", "--agents", "100", "--repeat", "5")
    elif name == "instructions":
        results["instructions"] = _run(main_py, "bench.control_instructions", "--low", "50", "--high", "450")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(_BENCHES)}; the others are "
                                               "taken from the last results file, with the time each was measured")
    opts = ap.parse_args()
    only = [n for n in opts.only.split(",") if n] or list(_BENCHES)
    unknown = sorted(set(only) - set(_BENCHES))
    if unknown:
        ap.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(_BENCHES)}")
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "agent.json")
    results: Dict[str, Any] = {}
    if len(only) < len(_BENCHES) and os.path.exists(path):
        with open(path) as fh:
            results = json.load(fh)
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results.update({"when": now, "machine": f"{platform.machine()}, {os.cpu_count()} cores"})
    measured = results.setdefault("measured", {})
    for name in only:
        _measure(name, results)
        measured[name] = now
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1)
    text = render(results)
    print(text)
    if opts.write:
        doc = open(DOC).read() if os.path.exists(DOC) else f"# Performance\n\n{BEGIN}\n{END}\n"
        head, _, rest = doc.partition(BEGIN)
        _, _, tail = rest.partition(END)
        with open(DOC, "w") as fh:
            fh.write(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    return 0


def _f(x: Any, nd: int = 0) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def render(r: Dict[str, Any]) -> str:
    when = r.get("measured", {})
    stamps = sorted(set(when.values())) or [r["when"]]
    lines = [f"Measured on {r['machine']} with `python -m bench.run --write`"
             + (f", {stamps[0]}." if len(stamps) == 1 else ": " + "; ".join(
                 f"{', '.join(n for n in _BENCHES if when.get(n) == t)} {t}" for t in stamps) + "."), "",
             "**Armed probe, condition false, cost per hit** (`python -m bench.armed`; ns per call, best of 7)", "",
             "| Python | plain call | probebook | ddtrace inject_hook (no-op hook) | sys.settrace | probebook over plain | ddtrace over plain | probebook / ddtrace |",
             "|---|---|---|---|---|---|---|---|"]
    for a in r["armed"]:
        if "error" in a:
            lines.append(f"| ? | error: {a['error']} |")
            continue
        lines.append("| {python} | {p} | {o} | {d} | {s} | {oo} | {do} | {ratio} |".format(
            python=a["python"], p=_f(a["plain_ns"]), o=_f(a["probebook_ns"]), d=_f(a.get("ddtrace_ns")),
            s=_f(a["settrace_ns"]), oo=_f(a["probebook_over_plain_ns"]), do=_f(a.get("ddtrace_over_plain_ns")),
            ratio=_f(a.get("probebook_vs_ddtrace"), 2)))
    floors = [a for a in r["armed"] if "floor_empty_callback_ns" in a]
    if floors:
        lines += ["", "What any Python-level `sys.monitoring` LINE callback costs per hit over the plain call, before "
                  "its own work (same runs): " + "; ".join(
                      f"{a['python']}: empty callback {a['floor_empty_callback_ns']:.0f} ns, getting the frame "
                      f"{a['floor_frame_object_ns']:.0f} ns, reading one local through `f_locals` "
                      f"{a['floor_read_one_local_ns']:.0f} ns" for a in floors) + "."]
    lg = r["loghit"]
    lines += ["", "**Dynamic log line with 3 variables, cost on the application thread** (`python -m bench.loghit`)", ""]
    if "error" in lg:
        lines.append(f"error: {lg['error']}")
    else:
        per_round = ", ".join(f"{rd['cost_p50_us']:.1f}/{rd['cost_p99_us']:.1f}" for rd in lg["rounds"])
        lines += [f"Python {lg['python']}, {len(lg['rounds'])} rounds of {lg['n']} calls, each probed call beside an "
                  f"unprobed copy: median round p50 {lg['cost_p50_us']:.1f} us, p99 {lg['cost_p99_us']:.1f} us per hit "
                  f"(goal: p99 <= 10 us); every round's p50/p99: {per_round} us. Sample line: `{lg['sample']}`."]
        other = [o for o in r.get("loghit_other", []) if "error" not in o]
        if other:
            lines += ["", "Other Pythons, 3 rounds each (median round): " + "; ".join(
                f"{o['python']} p50 {o['cost_p50_us']:.1f} us, p99 {o['cost_p99_us']:.1f} us" for o in other) + "."]
        counted = [o for o in [lg, *other] if o.get("instructions_per_hit")]
        if counted:
            lines += ["", "Instructions per hit (`--instructions`, callgrind; these repeat where wall time drifts): "
                      + ", ".join(f"{o['python']} {o['instructions_per_hit']:,}" for o in counted) + "."]
    sn = r["snapshot"]
    lines += ["", "**Snapshot of a 10-local frame, default limits** (`python -m bench.snapshot`; us per hit)", ""]
    if "error" in sn:
        lines.append(f"error: {sn['error']}")
    else:
        lines += ["| capture | p50 | p99 |", "|---|---|---|",
                  f"| probebook (args, locals, 20-frame stack) | {sn['probebook']['p50_us']:.0f} | {sn['probebook']['p99_us']:.0f} |"]
        if sn.get("ddtrace_args_locals"):
            lines += [
                f"| ddtrace capture_pairs(args + locals) | {sn['ddtrace_args_locals']['p50_us']:.0f} | {sn['ddtrace_args_locals']['p99_us']:.0f} |",
                f"| ddtrace _capture_context (adds globals) | {sn['ddtrace_full_context']['p50_us']:.0f} | {sn['ddtrace_full_context']['p99_us']:.0f} |",
                "", f"probebook / ddtrace args+locals: p50 {sn['ratio_p50_vs_ddtrace_args_locals']:.2f}x, "
                    f"p99 {sn['ratio_p99_vs_ddtrace_args_locals']:.2f}x (goal <= 0.5x, p99 <= 1 ms)."]
    ev = r.get("evidence", {})
    lines += ["", "**Evidence store** (`python -m bench.evidence`; 1M events, 75 % metric points, 25 % log lines)", ""]
    lines.append(f"error: {ev['error']}" if "error" in ev else
                 f"Ingestion {ev['ingest_events_per_s']:,} events/s (goal >= 200,000); grouped query (count, mean, "
                 f"p99 by metric and minute) p50 {ev['query_p50_ms']} ms, p99 {ev['query_p99_ms']} ms (goal p99 < 200 ms).")
    ct = r.get("control", {})
    lines += ["", "**Control plane** (`python -m bench.control --rounds 5 --seconds 5`)", ""]
    if "error" in ct:
        lines.append(f"error: {ct['error']}")
    else:
        fe, tp = ct["first_event"], ct["throughput"]
        lines.append(f"Client adds a probe -> first event received, loopback: p50 {fe['p50_ms']} ms, max {fe['p99_ms']} ms "
                     f"over {fe['n']} (goal p50 < 100 ms).")
        if "error" in tp:
            lines.append(f"Throughput: error: {tp['error']}")
        else:
            med, cpu = tp["median_requests_per_s"], tp["server_cpu_us_per_request"]
            lines += ["", "| minishop under wrk -t1 -c8 (server on CPU 1, wrk on CPU 0) | requests/s (median of rounds) | "
                          "server CPU per request |", "|---|---|---|"]
            for key, label in (("A_no_agent", "no agent"), ("B_agent_idle", "agent, no probes"),
                               ("C_snapshot_probe", "agent, snapshot probe 1/s on the hot handler")):
                lines.append(f"| {label} | {med[key]:,} | {cpu[key]} us |")
            lines += ["", f"Agent idle: {tp['agent_idle_change_pct']:+.1f} % throughput (goal within 1 %); with the "
                          f"snapshot probe: {tp['snapshot_probe_change_pct']:+.1f} % (goal within 2 %). Every round: "
                          f"`{json.dumps(tp['requests_per_s'])}`."]
    ins = r.get("instructions", {})
    lines += ["", "**The agent's cost in instructions** (`python -m bench.control_instructions --low 50 --high 450`; "
                  "valgrind callgrind, minishop, instructions per request)", ""]
    if "error" in ins:
        lines.append(f"error: {ins['error']}")
    else:
        cs = ins["cases"]
        lines += ["| case | instructions per request |", "|---|---|"]
        for key, label in (("A_no_agent", "no agent"), ("B_agent_idle", "agent, no probes"),
                           ("C_snapshot_probe", "agent, snapshot probe 1/s (under valgrind's slow clock)")):
            lines.append(f"| {label} | {cs[key]['per_request']:,} |")
        lines += ["", f"Agent idle: {ins['agent_idle_pct']:+.2f} % instructions per request (run-to-run band of one "
                      f"case: about 1 %). One snapshot costs {ins.get('instructions_per_snapshot', 0):,} instructions: "
                      f"at {ins.get('real_rps', 0):,.0f} requests/s that is {ins.get('snapshot_share_at_real_rps_pct')} % "
                      f"of the service's work."]
    fl = r.get("fleet", {})
    lines += ["", "**Fleet** (`python -m bench.fleet_arm --agents 100 --repeat 5`)", ""]
    lines.append(f"error: {fl['error']}" if "error" in fl else "```\n" + json.dumps(fl, indent=1)[:1500] + "\n```")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
