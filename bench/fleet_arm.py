"""Arming one probe on a fleet of agent processes through Redis, against direct HTTP in the same run.

    python -m bench.fleet_arm [--agents 100] [--repeat 5]

Starts a throwaway redis-server and N agent processes (`probebook agent run --broker ...` around
the smallest target, `probebook.lab.ticker`), waits until all have registered, then times
`RedisFleet.add_probe` until every instance has answered with the probe installed (goal: < 2 s
for 100). The baseline is the same probe placed by `ServiceClient` over HTTP (32 connections at
once) on the same processes. Prints JSON on stdout and a one-line summary on stderr; writes
bench/results/fleet_arm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Dict, List

from probebook.connectors import RedisFleet, ServiceClient
from probebook.lab.local_fleet import LocalFleet
from probebook.lab.redis_server import RedisServer
from probebook.lab.ticker import TICK_LINE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
SPEC = {"kind": "log", "where": f"lab/ticker.py:{TICK_LINE}", "template": "n={n}", "rate": 1}
_ARMED = ("installed", "emitting")


def _rss_mib(pids: List[int]) -> List[float]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
            out.append(kb / 1024)
        except (OSError, StopIteration, ValueError):
            continue
    return out


def _time_redis(fleet: RedisFleet, n: int) -> float:
    t0 = time.perf_counter()
    probe = fleet.add_probe(SPEC, timeout=30)
    took = time.perf_counter() - t0
    armed = sum(1 for r in probe.results.values() if r.ok and r.probe is not None and r.probe.status in _ARMED)
    if armed != n:
        raise RuntimeError(f"through Redis: {probe.summary()}")
    fleet.remove_probe(probe.id, timeout=30)
    return took


def _time_http(service: ServiceClient, n: int) -> float:
    t0 = time.perf_counter()
    probe = service.add_probe(SPEC)
    took = time.perf_counter() - t0
    armed = sum(1 for r in probe.results.values() if r.ok and r.probe is not None and r.probe.status in _ARMED)
    if armed != n:
        raise RuntimeError(f"over HTTP: {probe.summary()}")
    service.remove_probe(probe.id)
    return took


def _summary(xs: List[float]) -> Dict[str, float]:
    return {"p50_s": round(statistics.median(xs), 4), "min_s": round(min(xs), 4), "max_s": round(max(xs), 4)}


def main() -> Dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    opts = ap.parse_args()
    n = opts.agents
    out: Dict[str, Any] = {"python": sys.version.split()[0], "agents": n, "repeat": opts.repeat,
                           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "goal_s": 2.0}
    with RedisServer() as redis:
        agents = LocalFleet(n, "fleetbench", broker=redis.url, interval=0.2)
        try:
            t0 = time.perf_counter()
            agents.start()
            agents.wait_ready(timeout=300)
            fleet = RedisFleet(redis.url, "fleetbench", agents.token_name, agents.secret, timeout=30)
            while sum(not i.stale for i in fleet.instances()) < n:
                if time.perf_counter() - t0 > 300:
                    raise RuntimeError(f"only {len(fleet.instances())} of {n} agents registered in Redis")
                time.sleep(0.1)
            out["startup_s"] = round(time.perf_counter() - t0, 2)
            rss = _rss_mib([p.pid for p in agents.procs])
            out["rss_mib_per_agent"] = round(statistics.median(rss), 1) if rss else None
            service = ServiceClient(agents.port_dir, token=agents.secret, timeout=30)
            _time_redis(fleet, n), _time_http(service, n)  # warm up both paths
            redis_s, http_s = [], []
            for _ in range(opts.repeat):  # interleaved, so that both see the same machine
                redis_s.append(_time_redis(fleet, n))
                http_s.append(_time_http(service, n))
            service.close()
            fleet.close()
        finally:
            agents.stop()
    out["redis"] = _summary(redis_s)
    out["http_direct"] = _summary(http_s)
    out["redis_vs_http_p50"] = round(out["redis"]["p50_s"] / max(1e-9, out["http_direct"]["p50_s"]), 3)
    out["met_goal"] = out["redis"]["max_s"] < out["goal_s"]
    return out


if __name__ == "__main__":
    result = main()
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "fleet_arm.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(result, indent=1))
    r, h = result["redis"], result["http_direct"]
    print(f"fleet_arm: {result['agents']} agents: all installed through Redis in p50 {r['p50_s'] * 1000:.0f} ms "
          f"(max {r['max_s'] * 1000:.0f} ms, goal < 2000 ms); direct HTTP p50 {h['p50_s'] * 1000:.0f} ms; "
          f"redis/http {result['redis_vs_http_p50']:.2f}; {result['rss_mib_per_agent']} MiB RSS per agent",
          file=sys.stderr)
