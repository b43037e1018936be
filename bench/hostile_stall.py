"""The longest a probe hit holds the host's call, under the worst expressions we know, with big data.

    python -m bench.hostile_stall [--repeat 5] [--json OUT]

Each expression below is placed, through a real `Agent`, as the condition of a log probe, then as a
captured expression of a snapshot probe, on `stall_target`, whose locals are large: 200,000 ints and
strings, a 4 MB string, 50,000 nested lists, a 300,000-key dict, 10,000-digit ints. The probed call
is timed against the same call unprobed; the probe's extra time is the host's stall. Expressions
that the work budget refuses stop before the costly operation (and disable the probe); accepted ones
run whole. Reports, per expression, the worst stall over `--repeat` placements and the peak memory
one hit allocated (tracemalloc, a separate pass), then the maximum of each.

Goal (issue 17): no hit holds the host's call longer than 10 ms on this 2-core VM.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from typing import Any, Dict, List, Tuple

from probebook.agent import Agent, AgentLimits

HERE = os.path.relpath(os.path.abspath(__file__), os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stall_target(ints, strs, big, nested, d, huge, h2, words, lst2, longs, longs2, creds):
    n = len(ints)  # STALL
    return n


def stall_plain(ints, strs, big, nested, d, huge, h2, words, lst2, longs, longs2, creds):
    n = len(ints)
    return n


def data() -> Dict[str, Any]:
    return {
        "ints": list(range(200_000)), "strs": [str(i) * 10 for i in range(200_000)], "big": "ab" * 2_000_000,
        "nested": [[i, str(i)] for i in range(50_000)], "d": {str(i): i for i in range(300_000)},
        "huge": 7 ** 11_000, "h2": 3 ** 5_000, "words": "a " * 500_000, "lst2": list(range(200_000)),
        "longs": ["x" * 10_000 for _ in range(300)], "longs2": ["x" * 10_000 for _ in range(300)],
        "creds": {"user": "u", "password": "p" * 50},
    }


# the worst cases found: builds, sorts, scans, conversions, near the budget and far over it
EXPRESSIONS: List[str] = """sorted(ints)
sorted(ints[:6000])
sorted(strs[:4000])
sorted(longs)
sorted(['a' * 999999, 'a' * 999999] * 499999)
str(ints)
str(ints[:20000])
str(nested)
str(nested[:3000])
str([['a' * 999999] * 999999])
'zz' in big
'zz' in big[:2500000]
big.count('zz')
big[:3000000].upper()
big.split('b')
words.split()
words[:100000].split()
ints == lst2
ints[:45000] == lst2[:45000]
longs == longs2
'x' in d
d.get('77')
set(strs)
set(strs[:40000])
huge // h2
huge % h2
str(huge)
str(h2)
min(ints)
max(strs[:90000])
sum(ints[:90000])
list(big)
tuple(ints)
' '.join(strs)
' '.join(strs[:30000])
'a' * 999999 + 'b' * 999999 + 'c' * 999999
big[:3000000]
ints[:90000]
any(nested)
-1 in ints[:90000]
[1, 2] in nested
round(huge, -4000)
frozenset(ints[:40000])
longs.count('y')
sorted(str(nested[:300]))
len(str(creds)) > 0
(((big + big) + (big + big)) + ((big + big) + (big + big)))
str(str(str(ints[:9000])))
sorted(sorted(sorted(ints[:3000])))""".splitlines()


def _place(agent: Agent, expr: str, placement: str) -> str:
    where = f"{HERE}:{_line()}"
    if placement == "condition":
        spec = {"kind": "log", "where": where, "template": "hit", "when": expr, "rate": 1000}
    else:
        spec = {"kind": "snapshot", "where": where, "capture": [expr], "rate": 1000}
    return agent.add_probe(spec).id


def _line() -> int:
    with open(os.path.abspath(__file__)) as fh:
        for i, text in enumerate(fh, 1):
            if text.rstrip().endswith("# STALL"):
                return i
    raise LookupError("# STALL")


def _stall(agent: Agent, expr: str, placement: str, values: Dict[str, Any]) -> Tuple[float, str]:
    pid = _place(agent, expr, placement)
    try:
        t0 = time.perf_counter()
        stall_plain(**values)
        t1 = time.perf_counter()
        stall_target(**values)
        t2 = time.perf_counter()
        info = agent.get_probe(pid)
        return max(0.0, (t2 - t1) - (t1 - t0)), info.status
    finally:
        agent.remove_probe(pid)
        agent.drain_events()


def _peak(agent: Agent, expr: str, placement: str, values: Dict[str, Any]) -> int:
    pid = _place(agent, expr, placement)
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        stall_target(**values)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        agent.remove_probe(pid)
        agent.drain_events()


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="also write the result here")
    opts = ap.parse_args()
    values = data()
    agent = Agent(AgentLimits(cpu_budget=100.0, snapshot_rate=1000.0, process_snapshot_rate=1000.0))
    rows = []
    try:
        for expr in EXPRESSIONS:
            for placement in ("condition", "capture"):
                stalls = [_stall(agent, expr, placement, values) for _ in range(opts.repeat)]
                worst = max(s for s, _ in stalls)
                rows.append({"expression": expr, "placement": placement, "worst_ms": round(worst * 1000, 3),
                             "status": stalls[0][1]})
        tracemalloc.start()
        for row in rows:
            row["peak_kib"] = round(_peak(agent, row["expression"], row["placement"], values) / 1024, 1)
        tracemalloc.stop()
    finally:
        agent.close()
    top = max(rows, key=lambda r: r["worst_ms"])
    big = max(rows, key=lambda r: r["peak_kib"])
    out = {"placements": len(rows), "repeat": opts.repeat,
           "max_stall_ms": top["worst_ms"], "max_stall_expression": f"{top['placement']}: {top['expression']}",
           "max_peak_kib": big["peak_kib"], "max_peak_expression": f"{big['placement']}: {big['expression']}",
           "disabled": sum(1 for r in rows if r["status"] == "disabled"), "rows": rows}
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))
    for r in sorted(rows, key=lambda r: -r["worst_ms"])[:10]:
        print(f"{r['worst_ms']:9.3f} ms {r['peak_kib']:10.1f} KiB  {r['status']:10} {r['placement']:9} {r['expression'][:60]}")
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
