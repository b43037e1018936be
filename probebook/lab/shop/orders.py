"""orders: prices a cart, reserves stock, charges the customer, records the order, queues fulfilment.

    python -m shop orders --spec run/orders.json
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, Optional, Sequence, Tuple

from .context import ServiceContext, load_context
from .db import ConnectionPool, PoolTimeout
from .observe import METRICS, JsonLog, current_trace_id, outgoing_traceparent
from .pricing import order_total
from .web import Request, Response, RetryPolicy, Router, Upstream, UpstreamError, serve

DEFAULTS: Dict[str, Any] = {
    "workers": 8, "db_pool_size": 6, "db_pool_timeout_s": 1.0, "price_cache_ttl_s": 5.0,
    "inventory": {"max_attempts": 2, "backoff_s": 0.05, "timeout_s": 2.0},
    "payments": {"max_attempts": 2, "backoff_s": 0.2, "timeout_s": 3.0},
}


class PriceCache:
    """Unit prices from inventory, kept for `ttl` seconds."""

    def __init__(self, inventory: Upstream, ttl: float, log: JsonLog) -> None:
        self.inventory, self.ttl, self.log = inventory, ttl, log
        self._entries: Dict[str, Tuple[float, float]] = {}

    def price(self, sku: str, policy: RetryPolicy) -> float:
        now = time.monotonic()
        entry = self._entries.get(sku)
        if entry is not None and entry[0] > now:
            return entry[1]
        self.log.debug("price cache miss", sku=sku)
        product = self.inventory.call("GET", f"/products/{sku}", policy=policy)
        price = product["price"]
        self._entries[sku] = (now + self.ttl, price)
        METRICS.cache_entries.labels("prices").set(len(self._entries))
        return price


class OrderService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        get = ctx.settings.get
        self.pool = ConnectionPool(ctx.data("orders.db"), int(get("db_pool_size")), float(get("db_pool_timeout_s")),
                                   name="orders")
        self.queue = ConnectionPool(ctx.data("queue.db"), 2, name="queue")
        self.inventory = Upstream("inventory", ctx.peers["inventory"])
        self.payments = Upstream("payments", ctx.peers["payments"])
        self.prices = PriceCache(self.inventory, float(get("price_cache_ttl_s")), ctx.log)
        self._lock = threading.Lock()

    def policy(self, peer: str) -> RetryPolicy:
        return RetryPolicy.from_settings(self.ctx.settings.get(peer))

    def coupon_rate(self, code: Optional[str]) -> float:
        if not code:
            return 0.0
        with self.pool.connection() as conn:
            row = conn.execute("SELECT pct FROM coupons WHERE code = ?", (code,)).fetchone()
        return float(row[0]) if row else 0.0

    def create(self, body: Dict[str, Any]) -> Response:
        user_id, currency = int(body["user"]), str(body.get("currency", "USD"))
        items = [{"sku": str(i["sku"]), "qty": int(i["qty"])} for i in body["items"]]
        lines = [(i["sku"], self.prices.price(i["sku"], self.policy("inventory")), i["qty"]) for i in items]
        rate = self.coupon_rate(body.get("coupon"))
        total = order_total(lines, rate)
        conn = self.pool.acquire()
        order_id = conn.execute(
            "INSERT INTO orders (user_id, total, currency, status, trace_id, created) VALUES (?, ?, ?, 'pending', ?, ?)",
            (user_id, total, currency, current_trace_id(), time.time())).lastrowid
        try:
            self.inventory.call("POST", "/reserve", {"order_id": order_id, "items": items}, self.policy("inventory"))
        except UpstreamError as err:
            if err.status == 409:
                conn.execute("UPDATE orders SET status = 'out_of_stock' WHERE id = ?", (order_id,))
                return Response(409, {"error": "out of stock", "sku": (err.body or {}).get("sku")})
            self.pool.release(conn)
            raise
        try:
            self.payments.call("POST", "/charges", {"order_id": order_id, "user": user_id, "amount": total,
                                                    "currency": currency}, self.policy("payments"))
            conn.executemany("INSERT INTO order_lines (order_id, sku, qty, price) VALUES (?, ?, ?, ?)",
                             [(order_id, sku, qty, price) for sku, price, qty in lines])
            conn.execute("UPDATE orders SET status = 'paid' WHERE id = ?", (order_id,))
        except UpstreamError:
            conn.execute("UPDATE orders SET status = 'payment_failed' WHERE id = ?", (order_id,))
            raise
        finally:
            self.pool.release(conn)
        self.enqueue("fulfil", {"order_id": order_id, "user": user_id, "total": total, "items": items})
        return Response(201, {"order_id": order_id, "total": total, "currency": currency})

    def enqueue(self, kind: str, payload: Dict[str, Any]) -> None:
        now = time.time()
        with self.queue.connection() as conn:
            conn.execute("INSERT INTO jobs (kind, payload, status, available_at, created) VALUES (?, ?, 'queued', ?, ?)",
                         (kind, json.dumps({**payload, "traceparent": outgoing_traceparent()}), now, now))

    def get(self, order_id: int) -> Optional[Dict[str, Any]]:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT id, user_id, total, currency, status FROM orders WHERE id = ?",
                               (order_id,)).fetchone()
        return dict(zip(("order_id", "user", "total", "currency", "status"), row)) if row else None


def build_router(svc: OrderService) -> Router:
    router = Router()

    @router.route("POST", "/orders")
    def create(req: Request) -> Response:
        try:
            return svc.create(req.body or {})
        except PoolTimeout:
            svc.ctx.log.warning("database busy", route=req.route)
            return Response(503, {"error": "database busy, try again"})
        except UpstreamError as err:
            if err.target == "payments" and err.status == 402:
                return Response(402, {"error": "payment declined"})
            svc.ctx.log.warning("dependency failed", target=err.target, status=err.status, reason=err.reason)
            return Response(502, {"error": f"{err.target} failed"})

    @router.route("GET", "/orders/<order_id>")
    def get(req: Request, order_id: str) -> Response:
        order = svc.get(int(order_id)) if order_id.isdigit() else None
        return Response(200, order) if order else Response(404, {"error": f"no order {order_id}"})

    return router


def main(argv: Optional[Sequence[str]] = None) -> None:
    ctx = load_context(argv, DEFAULTS)
    serve(ctx, build_router(OrderService(ctx)), int(ctx.settings.get("workers")))

