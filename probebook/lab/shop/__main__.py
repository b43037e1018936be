"""``python -m shop SERVICE --spec FILE``: run one service of the shop.

The service module is imported under its own name (``shop.orders``, not ``__main__``), so probes
can name its functions as ``shop.orders:OrderService.create``.
"""

import importlib
import sys

SERVICES = ("gateway", "orders", "payments", "inventory", "worker", "bank")

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in SERVICES:
        sys.exit(f"usage: python -m shop {{{','.join(SERVICES)}}} --spec FILE")
    importlib.import_module(f"shop.{sys.argv[1]}").main(sys.argv[2:])
