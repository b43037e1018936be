"""A brake on guessing the agent's tokens (the tokens themselves: `probebook.protocol.tokens`).

>>> limiter = FailedAuthLimiter(max_failures=2, window=60.0)
>>> limiter.failed("10.0.0.7"), limiter.failed("10.0.0.7"), limiter.retry_after("10.0.0.7") > 0
(False, True, True)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Tuple

__all__ = ["FailedAuthLimiter"]


class FailedAuthLimiter:
    """Counts failed authentications per client address; after `max_failures` within `window`
    seconds the address's wrong tokens are refused (HTTP 429) until the window has passed. A correct
    token is served whatever the count (the caller checks it first): every client of a 127.0.0.1 server
    shares one address, and a local process must not lock the operator out."""

    def __init__(self, max_failures: int = 10, window: float = 60.0, max_addresses: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self._clock = clock  # seconds; a test passes its own instead of sleeping through a window
        self.window = window
        self.max_addresses = max_addresses
        self._failures: "OrderedDict[str, Tuple[float, int]]" = OrderedDict()  # addr -> (window start, count)
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it may try now."""
        with self._lock:
            start, count = self._failures.get(address, (0.0, 0))
            left = start + self.window - self._clock()
            if left <= 0:
                self._failures.pop(address, None)
                return 0.0
            return left if count >= self.max_failures else 0.0

    def failed(self, address: str) -> bool:
        """Record a failure; True when this one locks the address out."""
        now = self._clock()
        with self._lock:
            start, count = self._failures.pop(address, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            self._failures[address] = (start, count + 1)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
            return count + 1 == self.max_failures
