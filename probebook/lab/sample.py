"""A sample service that keeps itself busy: a loop of orders, so probes see hits with no load generator.

``python -m probebook.lab.sample [INTERVAL_S]`` prices an order every INTERVAL_S (default 0.02 s);
every 17th order is declined with a `ValueError` (the loop catches it), so exception probes have
something to see. `SampleService` runs it under the agent the way a user would, on a free port:

>>> with SampleService() as svc:                                          # doctest: +SKIP
...     inv.connect("sample", svc.url, token_file=svc.token_file)
...     inv.probe("log", "sample", svc.where("order.total ="), template="total={order.total}")

`where(marker)` names the line of this file that holds `marker`, so callers never hard-code numbers.
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import Dict, List, Optional, Tuple

from .local_fleet import LocalFleet

__all__ = ["Order", "price", "handle", "SampleService", "line_of", "where"]

DISCOUNTS: Dict[int, float] = {3: 0.10, 7: 0.25}


class Order:
    def __init__(self, order_id: int, user: int, items: List[Tuple[str, float, int]]) -> None:
        self.id = order_id
        self.user = user
        self.items = items
        self.total = 0.0
        self.payment_token = f"tok_{order_id:08d}"  # redacted in every capture (by its name)
        self.note = "gift wrap, " * 30  # longer than a capture keeps: shown truncated


def price(order: Order) -> float:
    subtotal = sum(unit * qty for _, unit, qty in order.items)
    discount = DISCOUNTS.get(order.user, 0.0)
    order.total = round(subtotal * (1 - discount), 2)
    return order.total


def handle(order_id: int) -> Dict[str, float]:
    items = [(f"sku-{(order_id * 7 + i) % 50}", 5.0 + (order_id + i) % 20, 1 + i % 3) for i in range(1 + order_id % 4)]
    order = Order(order_id, order_id % 10, items)
    total = price(order)
    if order_id % 17 == 0:
        raise ValueError(f"order {order_id}: payment declined")
    return {"order": order_id, "total": total}


def main() -> None:
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 0.02
    n = 0
    try:
        while True:
            n += 1
            try:
                handle(n)
            except ValueError:
                pass  # a declined order: the service carries on, like a real one
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


def line_of(marker: str) -> int:
    """The number of the first line of the service's code (`Order`, `price`, `handle`) holding `marker`."""
    for fn in (Order.__init__, price, handle):
        lines, start = inspect.getsourcelines(fn)
        for offset, text in enumerate(lines):
            if marker in text:
                return start + offset
    raise LookupError(f"no line of the sample service holds {marker!r}")


def where(marker: str) -> str:
    """A probe location, ``lab/sample.py:N``, for the line that holds `marker`."""
    return f"lab/sample.py:{line_of(marker)}"


class SampleService(LocalFleet):
    """The sample service under ``probebook agent run``: `count` processes (one by default), free ports,
    a fresh token file, and with `broker` (``redis://...``) registered for fleet access.

    ``with SampleService() as svc`` waits until the agent is up and stops it at the end; or
    ``svc = SampleService().start()`` and later ``svc.stop()`` (which also removes its directory).
    """

    def __init__(self, name: str = "sample", interval: float = 0.02, count: int = 1, broker: Optional[str] = None,
                 python: str = sys.executable) -> None:
        # `-c` rather than `-m`: the code then lives in module probebook.lab.sample (not __main__), so
        # `probebook.lab.sample:handle` names it as well as `lab/sample.py:LINE` does
        run = "from probebook.lab.sample import main; main()"
        super().__init__(count, name, broker=broker, target=[python, "-c", run, str(interval)], python=python)

    @property
    def url(self) -> str:
        """The agent's URL, once its port file is there (waits for it after a bare `start()`)."""
        return self.wait_ready()[0]

    @staticmethod
    def where(marker: str) -> str:
        return where(marker)


if __name__ == "__main__":
    main()
