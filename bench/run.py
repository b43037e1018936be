"""Run the agent benchmarks side by side and record them in docs/performance.md.

    python -m bench.run            # print results
    python -m bench.run --write    # also rewrite the generated section of docs/performance.md

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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    opts = ap.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    results: Dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    results["armed"] = [_run(py, "bench.armed") for py in _pythons()]
    main_py = _pythons()[0]
    results["loghit"] = _run(main_py, "bench.loghit")
    results["snapshot"] = _run(main_py, "bench.snapshot")
    with open(os.path.join(RESULTS, "agent.json"), "w") as fh:
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
    lines = [f"Measured {r['when']} on {r['machine']} with `python -m bench.run --write`.", "",
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
    lg = r["loghit"]
    lines += ["", "**Dynamic log line with 3 variables, cost on the application thread** (`python -m bench.loghit`)", ""]
    if "error" in lg:
        lines.append(f"error: {lg['error']}")
    else:
        lines += [f"Python {lg['python']}, {lg['n']} calls: p50 {lg['cost_p50_us']:.1f} us, "
                  f"p99 {lg['cost_p99_us']:.1f} us per hit (goal: p99 <= 10 us). Sample line: `{lg['sample']}`."]
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
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
