"""The agent's cost to a service, counted in instructions (valgrind callgrind), not seconds.

    python -m bench.control_instructions [--low 50] [--high 250]

Wall-clock throughput on a shared 2-core VM moves by tens of percent between rounds (see
`bench/control.py`), too much to see a 1 % effect. Instruction counts are repeatable. Each case runs
minishop under callgrind and serves `low`, then (in a fresh process) `high` sequential requests;
instructions per request = (I(high) - I(low)) / (high - low), so start-up cancels out.

A: no agent. B: under `probebook agent run`, no probes. C: B plus a snapshot probe (rate 1/s) on the
hot handler. Under valgrind the service runs ~50x slower, so the agent's time-based work (its
0.2 s housekeeping tick, the 1/s snapshots) falls on far fewer requests than in real life: B and C
are upper bounds. For C we also report instructions per snapshot, and its share of the service's work at
the wall-clock request rate measured by `bench/control.py` (`--real-rps`). Per-request counts of the
same case differ by about 1 % between runs (thread start-up, GC, connection handling), so a
difference inside that band is no measurable cost.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

from probebook.connectors.agent import AgentClient
from bench.control import _wait_port
from probebook.lab import minishop
from probebook.lab.procs import free_port


def _instructions(path: str) -> int:
    with open(path) as fh:
        for line in fh:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def per_call(argv: List[str], cwd: str, env: Dict[str, str], ns: Tuple[int, int] = (2000, 12000)) -> float:
    """Instructions per unit of work of `argv` + [N] (a program that does N units and nothing else that
    grows with N), counted by callgrind at both `ns`: (I(n2) - I(n1)) / (n2 - n1); start-up cancels out."""
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            out = os.path.join(tmp, f"cg.{n}")
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv, str(n)],
                           check=True, capture_output=True, cwd=cwd, env=env)
            counts.append(_instructions(out))
    return (counts[1] - counts[0]) / (ns[1] - ns[0])


def _run(case: str, requests: int, tmp: str, hot_line: int) -> Dict[str, Any]:
    port = free_port()
    script = os.path.join(tmp, "shop.py")
    out = os.path.join(tmp, f"cg-{case}-{requests}.out")
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, script, str(port)]
    token = "bench-token-000000000001"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBEBOOK_")}
    ports = os.path.join(tmp, f"ports-{case}-{requests}")
    if case == "A_no_agent":
        cmd = vg
    else:
        os.makedirs(ports)
        tokens = os.path.join(tmp, "tokens")
        with open(tokens, "w") as fh:
            fh.write(f"bench:{token}\n")
        cmd = [sys.executable, "-m", "probebook.cli", "agent", "run", "--name", "shop", "--port-file", ports + os.sep,
               "--token-file", tokens, "--audit", os.path.join(tmp, "audit.log"), "--"] + vg
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    snapshots = 0
    try:
        _wait_port(port, 120.0)
        client: Optional[AgentClient] = None
        if case != "A_no_agent":
            deadline = time.time() + 60
            while not os.listdir(ports) and time.time() < deadline:
                time.sleep(0.2)
            info = json.load(open(os.path.join(ports, os.listdir(ports)[0])))
            client = AgentClient(info["url"], token=token, timeout=60)
            if case == "C_snapshot_probe":
                client.add_probe({"kind": "snapshot", "where": f"lab/minishop.py:{hot_line}", "rate": 1})
        t0 = time.time()
        for i in range(requests):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/checkout?user=7&items=3&seed={i}", timeout=60).read()
        wall = time.time() - t0
        if client is not None:
            snapshots = sum(p.emitted for p in client.probes())
            client.close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # serve_forever ends cleanly; callgrind writes its totals
        proc.wait(120)
    return {"instructions": _instructions(out), "wall_s": round(wall, 2), "snapshots": snapshots}


def main() -> Dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--low", type=int, default=50)
    ap.add_argument("--high", type=int, default=250)
    ap.add_argument("--real-rps", type=float, default=4300.0,
                    help="wall-clock requests/s of minishop without valgrind (bench/control.py) to scale C")
    opts = ap.parse_args()
    if shutil.which("valgrind") is None:
        return {"error": "valgrind not installed"}
    lines, start = inspect.getsourcelines(minishop.price_cart)
    hot = start + next(i for i, line in enumerate(lines) if "cart.total = round(" in line)
    tmp = tempfile.mkdtemp(prefix="probebook-cg-")
    with open(os.path.join(tmp, "shop.py"), "w") as fh:
        fh.write(textwrap.dedent("""
            import sys
            from probebook.lab import minishop
            srv = minishop.serve(int(sys.argv[1]))
            try:
                srv.serve_forever()
            except KeyboardInterrupt:
                pass
        """))
    out: Dict[str, Any] = {"python": sys.version.split()[0], "low": opts.low, "high": opts.high, "cases": {}}
    try:
        for case in ("A_no_agent", "B_agent_idle", "C_snapshot_probe"):
            lo, hi = _run(case, opts.low, tmp, hot), _run(case, opts.high, tmp, hot)
            per = (hi["instructions"] - lo["instructions"]) / (opts.high - opts.low)
            out["cases"][case] = {"per_request": round(per), "low": lo, "high": hi}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    a = out["cases"]["A_no_agent"]["per_request"]
    b = out["cases"]["B_agent_idle"]["per_request"]
    c = out["cases"]["C_snapshot_probe"]
    out["agent_idle_pct"] = round((b / a - 1) * 100, 2)
    out["snapshot_probe_pct_under_valgrind"] = round((c["per_request"] / a - 1) * 100, 2)
    extra_snaps = c["high"]["snapshots"] - c["low"]["snapshots"]
    if extra_snaps > 0:
        per_snapshot = (c["per_request"] - b) * (opts.high - opts.low) / extra_snaps
        out["instructions_per_snapshot"] = round(per_snapshot)
        # at the real request rate one snapshot a second is spread over real_rps requests
        out["real_rps"] = opts.real_rps
        out["snapshot_share_at_real_rps_pct"] = round(per_snapshot / (opts.real_rps * a) * 100, 3)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
