"""The control plane's costs: time to first event, and a service's throughput with the agent.

    python -m bench.control [--rounds 3] [--seconds 5]

1. Notebook client -> probe active -> first event received, on loopback: an `AgentClient` adds a
   log probe to a ticker under `probebook agent run` (calls every 1 ms) and long-polls events until
   the probe's first log line arrives; 30 times. Goal: p50 < 100 ms.
2. An HTTP service under load (minishop, `wrk -t1 -c8`), A/B/C rounds interleaved in one run:
   A no agent, B agent loaded with no probes, C agent with a snapshot probe (rate 1/s) on the hot
   handler. Goals: B within 1 % of A, C within 2 % of A (medians of the rounds).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any, Dict, List

from probebook.connectors.agent import AgentClient
from probebook.lab import minishop
from probebook.lab.local_fleet import LocalFleet
from probebook.lab.procs import free_port
from probebook.lab.ticker import TICK_LINE


def first_event_latency(n: int = 30) -> Dict[str, Any]:
    with LocalFleet(1, "ticker", interval=0.001) as fleet:
        (url,) = fleet.wait_ready()
        client = AgentClient(url, token=fleet.secret)
        after = client.events().next
        took = []
        for _ in range(n):
            t0 = time.perf_counter()
            probe = client.add_probe({"kind": "log", "where": f"lab/ticker.py:{TICK_LINE}", "template": "n={n}"})
            got = False
            while not got:
                page = client.events(after=after, timeout=2.0)
                after = page.next
                got = any(e.kind == "log" and e.probe_id == probe.id for e in page.events)
            took.append((time.perf_counter() - t0) * 1000)
            client.remove_probe(probe.id)
        client.close()
    took.sort()
    return {"n": n, "p50_ms": round(statistics.median(took), 1), "p99_ms": round(took[-1], 1),
            "min_ms": round(took[0], 1)}


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"service on {port} did not start")


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of process `pid` (all its threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(port: int, seconds: int) -> float:
    out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c8", f"-d{seconds}s",
                          f"http://127.0.0.1:{port}/checkout?user=7&items=3&seed=1"],
                         capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def throughput(rounds: int, seconds: int) -> Dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"error": "wrk not installed (apt-get install wrk)"}
    tmp = tempfile.mkdtemp(prefix="probebook-bench-")
    port = free_port()
    script = os.path.join(tmp, "shop.py")
    with open(script, "w") as fh:
        fh.write(textwrap.dedent(f"""
            from probebook.lab import minishop
            minishop.serve({port}).serve_forever()
        """))
    lines, start = inspect.getsourcelines(minishop.price_cart)
    hot = start + next(i for i, line in enumerate(lines) if "cart.total = round(" in line)
    results: Dict[str, List[float]] = {"A_no_agent": [], "B_agent_idle": [], "C_snapshot_probe": []}
    cpu_us: Dict[str, List[float]] = {k: [] for k in results}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # wrk's closes make broken pipes
    try:
        for _ in range(rounds):
            for case in results:
                if case == "A_no_agent":
                    proc = subprocess.Popen(["taskset", "-c", "1", sys.executable, script], start_new_session=True,
                                            **quiet)
                    fleet = None
                    pid = proc.pid
                else:
                    fleet = LocalFleet(1, "shop", target=["taskset", "-c", "1", sys.executable, script]).start()
                    url = fleet.wait_ready()[0]
                    proc = None
                    pid = int(next(iter(fleet.port_files())))
                _wait_port(port)
                probe_client = None
                if case == "C_snapshot_probe":
                    probe_client = AgentClient(url, token=fleet.secret)  # type: ignore[union-attr]
                    probe_client.add_probe({"kind": "snapshot", "where": f"lab/minishop.py:{hot}", "rate": 1})
                _wrk(port, 1)  # warm up
                cpu0 = _cpu_s(pid)
                rps = _wrk(port, seconds)
                results[case].append(rps)
                cpu_us[case].append((_cpu_s(pid) - cpu0) / (rps * seconds) * 1e6)
                if probe_client is not None:
                    emitted = probe_client.probes()[0].emitted
                    if emitted < seconds:
                        raise RuntimeError(f"the snapshot probe emitted only {emitted} times")
                    probe_client.close()
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)
                if fleet is not None:
                    fleet.stop()
                time.sleep(0.5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    base = med["A_no_agent"]
    return {"rounds": rounds, "seconds": seconds, "requests_per_s": {k: [round(x) for x in v] for k, v in results.items()},
            "median_requests_per_s": {k: round(v) for k, v in med.items()},
            "agent_idle_change_pct": round((med["B_agent_idle"] / base - 1) * 100, 2),
            "snapshot_probe_change_pct": round((med["C_snapshot_probe"] / base - 1) * 100, 2),
            "server_cpu_us_per_request": {k: round(statistics.median(v), 1) for k, v in cpu_us.items()}}


def main() -> Dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    opts = ap.parse_args()
    return {"python": sys.version.split()[0], "first_event": first_event_latency(),
            "throughput": throughput(opts.rounds, opts.seconds)}


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
