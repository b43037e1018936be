"""Instructions per hit of ordinary probes, this tree against a baseline commit, side by side.

    python -m bench.hit_cost [--baseline REV] [--json OUT]

Each probe below is placed on `bench/_targets.py:log_target` and hit 2,000 then 12,000 times under
valgrind's callgrind; (I(12000) - I(2000)) / 10000 is its cost per hit in instructions, which repeat
from run to run where this VM's wall time drifts by tens of percent. The baseline is the same code
at REV (default: HEAD), checked out in a temporary git worktree and run the same way. Prints JSON:
per probe, the baseline's and this tree's instructions per hit and their ratio.

Written for issue 17: the work budget and the checks against laundering and odd dict keys must not
make ordinary probes slower.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict

from bench import _targets as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> probe spec, at the `# LOG` line of log_target(order, user, total)
PROBES: Dict[str, dict] = {
    "log, 3 values (one attribute)": {"kind": "log", "template": "order={order.oid} user={user} total={total}"},
    "log, condition true": {"kind": "log", "template": "t={total}", "when": "total > 10 and order.user == user"},
    "log, expression parts": {"kind": "log", "template": "n={len(order.items)} first={order.items[0]['price'] * 2}"},
    "metric, value expression": {"kind": "metric", "metric": {"name": "bench_total", "type": "gauge",
                                                              "value": "total * 2"}},
    "snapshot, 2 captures": {"kind": "snapshot", "capture": ["len(order.items)", "order.meta['source']"]},
    # false on every hit, decided by the inline guard compiled into the code on <= 3.11
    "log, condition false (parameter)": {"kind": "log", "template": "t={total}", "when": "total < 0.0"},
}
ARGS = (T.Order(17, "u-42", [{"price": 3.5}, {"price": 9.25}]), "u-42", 12.75)


def _hits_only(name: str, n: int) -> None:
    """What callgrind counts: n probed calls and nothing else that grows with n."""
    from probebook.agent import Agent, AgentLimits

    agent = Agent(AgentLimits(cpu_budget=100.0, log_rate=1e9, snapshot_rate=1e9, process_snapshot_rate=1e9,
                              event_capacity=1_000_000))
    spec = dict(PROBES[name], where=f"bench/_targets.py:{T.line_of('# LOG')}", rate=1e9)
    agent.add_probe(spec)
    for i in range(n):
        T.log_target(*ARGS)
        if i % 1000 == 999:
            agent.drain_events()
    agent.close()


def _instructions(root: str, name: str) -> int:
    from bench.control_instructions import per_call

    env = dict(os.environ, PYTHONPATH=root, PYTHONHASHSEED="0")  # dict and set work repeats exactly
    # this file runs against `root`'s probebook and bench._targets (a baseline may predate this file)
    return int(per_call([sys.executable, os.path.abspath(__file__), "--hits-only", name], root, env))


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="HEAD", help="the commit to compare with (default HEAD)")
    ap.add_argument("--json", help="also write the result here")
    ap.add_argument("--only", action="append", help="measure only this probe (repeatable; default all)")
    ap.add_argument("--hits-only", nargs=2, metavar=("PROBE", "N"), help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.hits_only:
        _hits_only(opts.hits_only[0], int(opts.hits_only[1]))
        return {}
    base = tempfile.mkdtemp(prefix="pb-baseline-")
    subprocess.run(["git", "worktree", "add", "--detach", base, opts.baseline], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", opts.baseline], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
        rows = {}
        for name in opts.only or PROBES:
            before, after = _instructions(base, name), _instructions(ROOT, name)
            rows[name] = {"baseline": before, "now": after, "ratio": round(after / before, 3)}
        out = {"baseline": rev, "instructions_per_hit": rows}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", base], cwd=ROOT, capture_output=True)
    print(json.dumps(out, indent=2))
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
