"""inventory: the catalog, search, stock reservations (a movement ledger) and availability pages.

    python -m shop inventory --spec run/inventory.json
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .context import ServiceContext, load_context
from .db import ConnectionPool
from .observe import METRICS
from .schema import WAREHOUSES
from .web import Request, Response, Router, serve

DEFAULTS: Dict[str, Any] = {"workers": 8, "db_pool_size": 8, "availability_ttl_s": 30.0, "search_limit": 10}
REGIONS = {"eu": ("ams1", "fra1", "lon1", "mad1"), "us": ("nyc1", "sfo1")}
# words of letters, digits and single spaces: what product names are made of
QUERY_PATTERN = re.compile(r"^(\w+\s?)*$")


class StockLedger:
    """Availability is the sum of a SKU's movements; a reservation appends negative ones."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def available(self, conn: Any, sku: str, warehouses: Sequence[str] = WAREHOUSES) -> int:
        marks = ",".join("?" * len(warehouses))
        row = conn.execute(f"SELECT COALESCE(SUM(delta), 0) FROM movements WHERE sku = ? AND warehouse IN ({marks})",
                           (sku, *warehouses)).fetchone()
        return int(row[0])

    def reserve(self, order_id: int, items: List[Dict[str, Any]]) -> Optional[str]:
        """Reserve every line or none; answer the first SKU that is short, if any."""
        with self.pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for item in items:
                    sku, qty = str(item["sku"]), int(item["qty"])
                    stock = {w: self.available(conn, sku, (w,)) for w in WAREHOUSES}
                    if sum(stock.values()) < qty:
                        conn.execute("ROLLBACK")
                        return sku
                    source = max(stock, key=lambda w: stock[w])  # ship from the fullest warehouse
                    conn.execute("INSERT INTO movements (sku, warehouse, delta, reason, ts) VALUES (?, ?, ?, ?, ?)",
                                 (sku, source, -qty, f"order {order_id}", time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return None


class AvailabilityCache:
    """Availability pages by request, refreshed after `ttl` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: Dict[str, Tuple[float, Dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def key(self, request: Request) -> str:
        return request.query_string

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, page: Dict[str, Any]) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, page)
            METRICS.cache_entries.labels("availability").set(len(self._entries))


class Inventory:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.pool = ConnectionPool(ctx.data("inventory.db"), int(ctx.settings.get("db_pool_size")), name="inventory")
        self.ledger = StockLedger(self.pool)
        self.availability = AvailabilityCache(float(ctx.settings.get("availability_ttl_s")))

    def product(self, sku: str) -> Optional[Dict[str, Any]]:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT sku, name, category, price, weight_g FROM products WHERE sku = ?",
                               (sku,)).fetchone()
        if row is None:
            return None
        return {"sku": row[0], "name": row[1], "category": row[2], "price": row[3], "weight_g": row[4]}

    def search(self, query: str) -> Optional[List[Dict[str, Any]]]:
        started = time.perf_counter()
        valid = QUERY_PATTERN.match(query) is not None
        elapsed = time.perf_counter() - started
        self.ctx.log.debug("query checked", valid=valid, ms=round(elapsed * 1000, 3))
        if not valid:
            return None
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT sku, name, price FROM products WHERE name LIKE ? LIMIT ?",
                                (f"%{query}%", int(self.ctx.settings.get("search_limit")))).fetchall()
        return [{"sku": r[0], "name": r[1], "price": r[2]} for r in rows]

    def availability_page(self, sku: str, region: str) -> Dict[str, Any]:
        warehouses = REGIONS.get(region, WAREHOUSES)
        with self.pool.connection() as conn:
            per = {w: self.ledger.available(conn, sku, (w,)) for w in warehouses}
            recent = conn.execute("SELECT warehouse, delta, ts FROM movements WHERE sku = ? ORDER BY id DESC LIMIT 40",
                                  (sku,)).fetchall()
        return {"sku": sku, "region": region, "warehouses": per, "total": sum(per.values()),
                "recent": [{"warehouse": w, "delta": d, "ts": ts} for w, d, ts in recent]}

    def prewarm(self) -> None:
        """Fill the availability cache for every product page the storefront asks for."""
        with self.pool.connection() as conn:
            skus = [r[0] for r in conn.execute("SELECT sku FROM products ORDER BY sku")]
        for sku in skus:
            for region in REGIONS:
                self.availability.put(f"sku={sku}&region={region}", self.availability_page(sku, region))


def build_router(inv: Inventory) -> Router:
    router = Router()

    @router.route("GET", "/products/<sku>")
    def get_product(req: Request, sku: str) -> Response:
        product = inv.product(sku)
        return Response(200, product) if product else Response(404, {"error": f"no product {sku}"})

    @router.route("PUT", "/products/<sku>/price")
    def set_price(req: Request, sku: str) -> Response:
        price = (req.body or {}).get("price")
        with inv.pool.connection() as conn:
            changed = conn.execute("UPDATE products SET price = ? WHERE sku = ?", (price, sku)).rowcount
        return Response(200, {"sku": sku, "price": price}) if changed else Response(404, {"error": f"no product {sku}"})

    @router.route("GET", "/search")
    def search(req: Request) -> Response:
        found = inv.search(req.query.get("q", "").strip())
        if found is None:
            return Response(400, {"error": "search terms may only hold letters, digits and spaces"})
        return Response(200, {"results": found})

    @router.route("POST", "/reserve")
    def reserve(req: Request) -> Response:
        body = req.body or {}
        short = inv.ledger.reserve(int(body["order_id"]), list(body["items"]))
        if short is not None:
            return Response(409, {"error": "out of stock", "sku": short})
        return Response(200, {"reserved": True})

    @router.route("GET", "/availability")
    def availability(req: Request) -> Response:
        key = inv.availability.key(req)
        page = inv.availability.get(key)
        if page is None:
            page = inv.availability_page(req.query.get("sku", ""), req.query.get("region", "eu"))
            inv.availability.put(key, page)
        return Response(200, page)

    return router


def main(argv: Optional[Sequence[str]] = None) -> None:
    ctx = load_context(argv, DEFAULTS)
    inv = Inventory(ctx)
    inv.prewarm()
    serve(ctx, build_router(inv), int(ctx.settings.get("workers")))

