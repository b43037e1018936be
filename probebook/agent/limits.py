"""Budgets that keep probes cheap: rates, the process snapshot cap and the CPU budget.

>>> bucket = RateLimiter(rate=1.0, burst=1)
>>> t = time.monotonic()
>>> bucket.allow(now=t), bucket.allow(now=t + 0.1), bucket.allow(now=t + 1.2)
(True, False, True)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Mapping

from probebook.errors import SpecError

__all__ = ["AgentLimits", "RateLimiter", "CpuBudget", "LIMIT_CEILINGS", "probe_rate"]

_monotonic = time.monotonic


# what an operator may raise each process-wide limit to, at most: beyond, the agent could hurt its host
LIMIT_CEILINGS = {"snapshot_rate": 1000.0, "log_rate": 10_000.0, "process_snapshot_rate": 1000.0,
                  "default_ttl": 7 * 86400.0, "max_ttl": 7 * 86400.0, "cpu_budget": 0.25, "cpu_window": 300.0,
                  "condition_budget": 0.01, "condition_failures": 1000, "event_capacity": 1_000_000,
                  "expired_grace": 3600.0}


def probe_rate(kind: str, rate: Any, limits: "AgentLimits") -> float:
    """A probe's events a second: its own `rate`, at most the ceiling of its kind's limit (a probe may not
    do what an operator may not set for every probe; code that embeds the agent with a higher limit, a
    benchmark, may go to that), else the agent's default for the kind.

    >>> probe_rate("log", None, AgentLimits()), probe_rate("snapshot", 5.0, AgentLimits())
    (100.0, 5.0)
    """
    key = "snapshot_rate" if kind in ("snapshot", "exception") else "log_rate"
    if rate is None:
        return float(getattr(limits, key))
    most = max(LIMIT_CEILINGS[key], float(getattr(limits, key)))
    if not float(rate) <= most:  # inf and nan too
        raise SpecError(f"rate: at most {most:g} events a second is allowed for a {kind} probe, got {rate!r}",
                        "rate")
    return float(rate)


@dataclass(frozen=True)
class AgentLimits:
    """Process-wide limits; change them at run time with `Agent.set_limits`."""

    snapshot_rate: float = 1.0  # default per-probe rate of snapshot and exception probes, per s
    log_rate: float = 100.0  # default per-probe rate of log, metric and span probes, per s
    process_snapshot_rate: float = 100.0  # all snapshot-like events in the process, per s
    default_ttl: float = 900.0  # s
    max_ttl: float = 3600.0  # s
    cpu_budget: float = 0.02  # share of one core spent in probes over the window
    cpu_window: float = 10.0  # s
    condition_budget: float = 0.001  # s per evaluation before it counts as a failure
    condition_failures: int = 10  # consecutive failures that disable a probe
    event_capacity: int = 10_000
    expired_grace: float = 10.0  # s an expired probe stays listed (status `expired`) before it leaves the list

    def with_changes(self, changes: Mapping[str, Any]) -> "AgentLimits":
        """A copy with `changes` applied; unknown, non-positive or over-the-ceiling values raise `SpecError`."""
        known = {f.name: f for f in fields(self)}
        clean: Dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                raise SpecError(f"limits: unknown key {key!r}; allowed: {', '.join(sorted(known))}", key)
            want = int if known[key].type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise SpecError(f"{key}: expected a positive number, got {value!r}", key)
            if value > LIMIT_CEILINGS[key]:
                raise SpecError(f"{key}: at most {LIMIT_CEILINGS[key]:g} is allowed, got {value!r}", key)
            clean[key] = want(value)
        out = replace(self, **clean)
        if out.default_ttl > out.max_ttl:
            raise SpecError(f"default_ttl ({out.default_ttl:g}s) exceeds max_ttl ({out.max_ttl:g}s)", "default_ttl")
        return out


class RateLimiter:
    """Token bucket: `rate` events per second, bursts up to `burst`. Lock-free under the GIL is
    not guaranteed, so a small lock keeps counts exact across threads."""

    __slots__ = ("rate", "burst", "_tokens", "_stamp", "_lock")

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def allow(self, now: float = 0.0) -> bool:
        with self._lock:
            return self.take(now)

    def ready(self, now: float = 0.0) -> bool:
        """Would `take` succeed now? A read, without the lock and without taking: a hint for work worth
        doing only for a hit that will be admitted, not a promise."""
        return self._tokens + ((now or _monotonic()) - self._stamp) * self.rate >= 1.0

    def take(self, now: float = 0.0) -> bool:
        """`allow` for a caller that already holds a lock guarding this bucket."""
        now = now or _monotonic()
        tokens = self._tokens + (now - self._stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False


class CpuBudget:
    """Time spent inside probes over a sliding window, as a share of one core.

    Time is added in nanoseconds by whoever spent it, into one-second buckets. Adding takes no
    lock: two threads adding at the same instant may lose one addition, which only makes the
    account a little generous; the budget is a brake, not a bill. `exceeded()` recomputes the
    share at most every 50 ms, so the probes' hot path pays for a comparison, not a sum.
    """

    _RECHECK = 0.05

    def __init__(self, share: float = 0.02, window: float = 10.0) -> None:
        self.share = share
        self.window = max(1, int(window))
        self._buckets = [0] * self.window
        self._bucket_sec = [0] * self.window
        self._next_check = 0.0
        self._over = False

    def add(self, ns: int, now: float = 0.0) -> None:
        sec = int(now or _monotonic())
        i = sec % self.window
        if self._bucket_sec[i] != sec:
            self._bucket_sec[i] = sec
            self._buckets[i] = 0
        self._buckets[i] += ns

    def spend(self, ns: int) -> bool:
        """`add` then `exceeded`, with one clock read (the probes' hot path)."""
        now = _monotonic()
        self.add(ns, now)
        return self.exceeded(now)

    def used(self) -> float:
        """Share of one core used by probes over the last window (0.0 .. n)."""
        now = int(time.monotonic())
        total = sum(b for b, s in zip(self._buckets, self._bucket_sec) if now - s < self.window)
        return total / (self.window * 1e9)

    def refund(self, ns: int) -> None:
        """Take back `ns` spent by a probe that has ended (removed, expired, disabled): what it cost
        stops with it, and must not disable the next, unrelated probe. Newest buckets first."""
        now = int(time.monotonic())
        for i in sorted(range(self.window), key=lambda i: -self._bucket_sec[i]):
            if ns <= 0:
                break
            if now - self._bucket_sec[i] < self.window:
                take = min(ns, self._buckets[i])
                self._buckets[i] -= take
                ns -= take
        self._next_check = 0.0

    def exceeded(self, now: float = 0.0) -> bool:
        now = now or _monotonic()
        if now >= self._next_check:
            self._next_check = now + self._RECHECK
            self._over = self.used() > self.share
        return self._over
