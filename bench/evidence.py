"""Evidence store: ingestion rate and a grouped query over 1M events.

    python -m bench.evidence [--events 1000000]

Ingestion feeds metric and log events (the `Event.to_dict()` shapes agents send) in batches of
10,000 into a DuckDB file. The query groups metric points by name and minute. Goals: >= 200k events/s,
query p99 < 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from probebook.evidence import EvidenceStore


def _events(start: int, n: int):
    out = []
    for i in range(start, start + n):
        if i % 4:
            out.append({"kind": "metric", "seq": i, "ts": 1_700_000_000 + i / 1000, "probe_id": "p1",
                        "file": "/srv/orders/app.py", "line": 42, "function": "checkout", "thread": "w1",
                        "trace_id": "", "name": f"latency_{i % 7}", "metric_type": "histogram",
                        "value": (i % 1000) / 10, "unit": "ms", "error": i % 50 == 0})
        else:
            out.append({"kind": "log", "seq": i, "ts": 1_700_000_000 + i / 1000, "probe_id": "p2",
                        "file": "/srv/orders/app.py", "line": 40, "function": "checkout", "thread": "w1",
                        "trace_id": "abc", "message": f"user={i % 97} total={i % 1000}"})
    return out


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    n = ap.parse_args().events
    batch = 10_000
    with tempfile.TemporaryDirectory() as tmp:
        store = EvidenceStore(os.path.join(tmp, "bench.duckdb"))
        batches = [_events(s, batch) for s in range(1, n + 1, batch)]  # agents number events from 1
        t0 = time.perf_counter()
        for b in batches:
            store.ingest(b, service="orders", instance_id="i1")
        ingest_s = time.perf_counter() - t0
        total = store.count("metrics") + store.count("logs")
        q = ("SELECT name, date_trunc('minute', ts) AS minute, count(*) AS n, avg(value) AS mean, "
             "quantile_cont(value, 0.99) AS p99 FROM metrics GROUP BY ALL ORDER BY name, minute")
        times = []
        for _ in range(30):
            t = time.perf_counter()
            df = store.sql(q)
            times.append(time.perf_counter() - t)
        times.sort()
        store.close()
    return {"events": total, "ingest_events_per_s": round(total / ingest_s), "query_rows": df.height,
            "query_p50_ms": round(times[len(times) // 2] * 1000, 1),
            "query_p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))] * 1000, 1)}


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
