"""Order totals: line prices times quantities, less the coupon's rate, rounded to cents."""

from __future__ import annotations

from typing import Iterable, Tuple

__all__ = ["PricingError", "order_total"]


class PricingError(ValueError):
    """A total that cannot be charged."""


def order_total(lines: Iterable[Tuple[str, float, int]], rate: float) -> float:
    subtotal = sum(price * qty for _sku, price, qty in lines)
    total = round(subtotal * (1 - rate), 2)
    if total < 0:
        raise PricingError(f"total {total} is negative")
    return total
