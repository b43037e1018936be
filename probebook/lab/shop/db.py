"""SQLite access for the shop: a bounded connection pool that says how full it is.

>>> import os, tempfile
>>> pool = ConnectionPool(os.path.join(tempfile.mkdtemp(), "x.db"), size=2, name="doc")
>>> with pool.connection() as conn:
...     conn.execute("select 1").fetchone()[0], pool.in_use
(1, 1)
>>> pool.in_use
0
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from typing import Iterator, List

from .observe import METRICS

__all__ = ["ConnectionPool", "PoolTimeout", "connect"]


class PoolTimeout(Exception):
    """Every pooled connection stayed checked out for the whole wait."""


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class ConnectionPool:
    """At most `size` connections; `acquire` waits up to `timeout` seconds for a free one."""

    def __init__(self, path: str, size: int = 8, timeout: float = 2.0, name: str = "main") -> None:
        self.path, self.size, self.timeout, self.name = path, size, timeout, name
        self._idle: "queue.LifoQueue[sqlite3.Connection]" = queue.LifoQueue()
        self._opened: List[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.in_use = 0
        METRICS.pool_size.labels(name).set(size)
        METRICS.pool_in_use.labels(name).set(0)

    def acquire(self) -> sqlite3.Connection:
        started = time.perf_counter()
        with self._lock:
            if self._idle.empty() and len(self._opened) < self.size:
                self._opened.append(connect(self.path))
                self._idle.put(self._opened[-1])
        try:
            conn = self._idle.get(timeout=self.timeout)
        except queue.Empty:
            raise PoolTimeout(f"no free connection in pool {self.name} after {self.timeout}s "
                              f"({self.in_use}/{self.size} in use)") from None
        finally:
            METRICS.pool_wait.labels(self.name).observe(time.perf_counter() - started)
        with self._lock:
            self.in_use += 1
            METRICS.pool_in_use.labels(self.name).set(self.in_use)
        return conn

    def release(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            self.in_use -= 1
            METRICS.pool_in_use.labels(self.name).set(self.in_use)
        self._idle.put(conn)

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = self.acquire()
        try:
            yield conn
        finally:
            self.release(conn)
