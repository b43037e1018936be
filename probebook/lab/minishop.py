"""A tiny checkout service: the demo's target. Its bug is invisible in its logs.

Some carts are priced with a discount that is stored as a percentage string for a few
users ("15" instead of 0.15), so their totals come out wrong; the service logs nothing odd.
"""

from __future__ import annotations

import json
import random
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Tuple

__all__ = ["Cart", "price_cart", "serve", "DISCOUNTS"]

DISCOUNTS: Dict[int, object] = {7: 0.10, 13: "15", 21: 0.05}


class Cart:
    def __init__(self, user_id: int, items: List[Tuple[str, float, int]]) -> None:
        self.user_id = user_id
        self.items = items
        self.total = 0.0


def price_cart(cart: Cart) -> float:
    subtotal = sum(price * qty for _, price, qty in cart.items)
    discount = DISCOUNTS.get(cart.user_id, 0)
    rate = float(discount) if not isinstance(discount, float) else discount
    cart.total = round(subtotal * (1 - rate), 2)
    return cart.total


def checkout(user_id: int, n_items: int, seed: int) -> dict:
    rng = random.Random(seed)
    items = [(f"sku-{rng.randint(1, 50)}", round(rng.uniform(1, 40), 2), rng.randint(1, 3)) for _ in range(n_items)]
    cart = Cart(user_id, items)
    total = price_cart(cart)
    if total < 0:
        raise ValueError(f"negative total for user {user_id}")
    return {"user": user_id, "total": total, "items": len(items)}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        try:
            parts = dict(p.split("=", 1) for p in self.path.partition("?")[2].split("&") if "=" in p)
            body = checkout(int(parts.get("user", 1)), int(parts.get("items", 3)), int(parts.get("seed", 0)))
            code = 200
        except Exception as exc:  # the service answers 500 like a real one would
            body, code = {"error": type(exc).__name__}, 500
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return


def serve(port: int = 0) -> ThreadingHTTPServer:
    """Start the service on 127.0.0.1 (a free port by default) in the caller's thread."""
    return ThreadingHTTPServer(("127.0.0.1", port), _Handler)
