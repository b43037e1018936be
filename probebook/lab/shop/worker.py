"""worker: drains the job queue. Fulfilment writes a receipt to the archive volume; price imports
push a vendor's price list to inventory. Failed jobs go back on the queue with a backoff.

    python -m shop worker --spec run/worker.json
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Dict, Optional, Sequence, Tuple

from .context import ServiceContext, load_context
from .db import ConnectionPool
from .observe import METRICS, incoming_trace
from .web import RetryPolicy, Router, Upstream, serve

DEFAULTS: Dict[str, Any] = {"poll_s": 0.1, "batch": 10, "retry_after_s": 1.0, "max_attempts": 50}


class Archive:
    """Receipts, one JSON line each, in a file per day on the archive volume."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def append(self, record: Dict[str, Any]) -> None:
        path = os.path.join(self.directory, time.strftime("receipts-%Y%m%d.jsonl"))
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()


class Worker:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.queue = ConnectionPool(ctx.data("queue.db"), 2, name="queue")
        self.archive = Archive(ctx.data("..", "volumes", "archive"))
        self.inventory = Upstream("inventory", ctx.peers["inventory"])

    def claim(self) -> Optional[Tuple[int, str, Dict[str, Any], int]]:
        with self.queue.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT id, kind, payload, attempts FROM jobs WHERE status = 'queued' AND "
                               "available_at <= ? ORDER BY id LIMIT 1", (time.time(),)).fetchone()
            if row is not None:
                conn.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (row[0],))
            conn.execute("COMMIT")
        return (row[0], row[1], json.loads(row[2]), row[3]) if row else None

    def finish(self, job_id: int, ok: bool, attempts: int) -> None:
        with self.queue.connection() as conn:
            if ok:
                conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            elif attempts + 1 >= int(self.ctx.settings.get("max_attempts")):
                conn.execute("UPDATE jobs SET status = 'dead', attempts = ? WHERE id = ?", (attempts + 1, job_id))
            else:
                conn.execute("UPDATE jobs SET status = 'queued', attempts = ?, available_at = ? WHERE id = ?",
                             (attempts + 1, time.time() + float(self.ctx.settings.get("retry_after_s")), job_id))

    def run_job(self, kind: str, payload: Dict[str, Any]) -> None:
        if kind == "fulfil":
            self.archive.append({"order_id": payload["order_id"], "user": payload["user"], "total": payload["total"],
                                 "items": payload["items"], "ts": time.time()})
        elif kind == "import_prices":
            for row in payload["rows"]:
                self.inventory.call("PUT", f"/products/{row['sku']}/price", {"price": row["price"]},
                                    RetryPolicy(2, 0.1, 2.0))
        else:
            raise ValueError(f"unknown job kind {kind!r}")

    def step(self) -> bool:
        claimed = self.claim()
        if claimed is None:
            return False
        job_id, kind, payload, attempts = claimed
        with incoming_trace(payload.get("traceparent")):
            try:
                self.run_job(kind, payload)
                ok = True
            except Exception as exc:
                self.ctx.log.warning("job failed, will retry", job=job_id, kind=kind, attempts=attempts + 1)
                ok = False
            METRICS.jobs.labels(kind, "done" if ok else "failed").inc()
            self.finish(job_id, ok, attempts)
        return True

    def depth(self) -> int:
        with self.queue.connection() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()[0])

    def loop(self) -> None:
        while True:
            try:
                busy = self.step()
                METRICS.queue_depth.labels("jobs").set(self.depth())
            except Exception as exc:  # the queue database itself failed: say so, go on
                self.ctx.log.error("queue unavailable", error=type(exc).__name__)
                busy = False
            if not busy:
                time.sleep(float(self.ctx.settings.get("poll_s")))


def main(argv: Optional[Sequence[str]] = None) -> None:
    ctx = load_context(argv, DEFAULTS)
    worker = Worker(ctx)
    threading.Thread(target=worker.loop, name="worker", daemon=True).start()
    serve(ctx, Router(), workers=2)

