"""gateway: the storefront API (aiohttp, async). Product pages, search, checkout, order status.

    python -m shop gateway --spec run/gateway.json
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any, Awaitable, Callable, Dict, Optional, Sequence

import aiohttp
from aiohttp import web

from .context import ServiceContext, load_context
from .observe import METRICS, incoming_trace, outgoing_traceparent
from .web import RetryPolicy, UpstreamError, health_body, start_admin

DEFAULTS: Dict[str, Any] = {
    "orders": {"max_attempts": 1, "backoff_s": 0.1, "timeout_s": 5.0},
    "inventory": {"max_attempts": 2, "backoff_s": 0.05, "timeout_s": 2.0},
    "risk_timeout_s": 2.0,
}


class Peer:
    """An async client of one service: JSON, trace header, metrics, the configured retry policy."""

    def __init__(self, name: str, base_url: str, session: aiohttp.ClientSession) -> None:
        self.name, self.base_url, self.session = name, base_url.rstrip("/"), session

    async def call(self, method: str, path: str, body: Any = None, policy: RetryPolicy = RetryPolicy(),
                   params: Optional[Dict[str, str]] = None) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(method, path, body, policy.timeout_s, params)
            except UpstreamError as err:
                if not policy.retries(err.status, attempt):
                    raise
                await asyncio.sleep(policy.backoff_s * attempt)

    async def _once(self, method: str, path: str, body: Any, timeout: float,
                    params: Optional[Dict[str, str]]) -> Any:
        started, code = time.perf_counter(), "error"
        try:
            async with self.session.request(method, self.base_url + path, json=body, params=params,
                                            headers={"traceparent": outgoing_traceparent()},
                                            timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                code = str(resp.status)
                payload = await resp.json(content_type=None)
                if resp.status >= 400:
                    raise UpstreamError(self.name, resp.status, payload)
                return payload
        except asyncio.TimeoutError:
            raise UpstreamError(self.name, 0, None, "timeout") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise UpstreamError(self.name, 0, None, type(exc).__name__) from None
        finally:
            METRICS.client_requests.labels(self.name, code).inc()
            METRICS.client_latency.labels(self.name).observe(time.perf_counter() - started)


class RiskClient:
    """Fraud scores from payments."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def score(self, user_id: int, timeout: float) -> Dict[str, Any]:
        url = f"{self.base_url}/risk?user={user_id}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())


def order_payload(user: Dict[str, Any], body: Dict[str, Any]) -> Dict[str, Any]:
    return {"user": user["id"], "items": body["items"], "coupon": body.get("coupon"), "currency": user["currency"]}


def order_payload_v2(user: Dict[str, Any], body: Dict[str, Any]) -> Dict[str, Any]:
    """The new checkout flow: charge in the currency the shopper saw prices in."""
    currency = body.get("display_currency") or user["currency"]
    return {"user": user["id"], "items": body["items"], "coupon": body.get("coupon"), "currency": currency}


class Gateway:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        with open(ctx.data("users.json"), encoding="utf-8") as fh:
            self.users: Dict[int, Dict[str, Any]] = {int(u["id"]): u for u in json.load(fh)}
        self.risk = RiskClient(ctx.peers["payments"])
        self.orders: Peer
        self.inventory: Peer

    def policy(self, peer: str) -> RetryPolicy:
        return RetryPolicy.from_settings(self.ctx.settings.get(peer))

    async def start(self, app: web.Application) -> None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        self.orders = Peer("orders", self.ctx.peers["orders"], session)
        self.inventory = Peer("inventory", self.ctx.peers["inventory"], session)
        app["session"] = session
        app["lag"] = asyncio.get_running_loop().create_task(self.watch_loop())

    async def stop(self, app: web.Application) -> None:
        app["lag"].cancel()
        await app["session"].close()

    async def watch_loop(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.1)
            METRICS.loop_lag.set(max(0.0, time.perf_counter() - before - 0.1))

    async def product(self, request: web.Request) -> web.Response:
        sku = request.match_info["sku"]
        params = {"sku": sku, "region": request.query.get("region", "eu")}
        product, availability = await asyncio.gather(
            self.inventory.call("GET", f"/products/{sku}", policy=self.policy("inventory")),
            self.inventory.call("GET", "/availability", params=params, policy=self.policy("inventory")))
        return web.json_response({"product": product, "in_stock": availability["total"] > 0})

    async def search(self, request: web.Request) -> web.Response:
        found = await self.inventory.call("GET", "/search", params={"q": request.query.get("q", "")},
                                          policy=self.policy("inventory"))
        return web.json_response(found)

    async def checkout(self, request: web.Request) -> web.Response:
        body = await request.json()
        user = self.users.get(int(body.get("user", 0)))
        if user is None:
            return web.json_response({"error": "unknown user"}, status=404)
        if self.ctx.settings.flag("risk_checks").on_for(user["id"], user["country"]):
            risk = self.risk.score(user["id"], float(self.ctx.settings.get("risk_timeout_s")))
            if risk.get("flagged"):
                return web.json_response({"error": "checkout needs review"}, status=403)
        if self.ctx.settings.flag("new_checkout_flow").on_for(user["id"], user["country"]):
            payload = order_payload_v2(user, body)
        else:
            payload = order_payload(user, body)
        order = await self.orders.call("POST", "/orders", payload, self.policy("orders"))
        return web.json_response(order, status=201)

    async def order_status(self, request: web.Request) -> web.Response:
        order = await self.orders.call("GET", f"/orders/{request.match_info['order_id']}", policy=self.policy("orders"))
        return web.json_response(order)


Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


def observed(ctx: ServiceContext) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Endpoint) -> web.StreamResponse:
        if request.path == "/health":
            return await handler(request)
        started = time.perf_counter()
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        METRICS.inflight.inc()
        with incoming_trace(request.headers.get("traceparent")):
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
            except UpstreamError as err:
                status = err.status if 400 <= err.status < 500 else (504 if err.reason == "timeout" else 502)
                if status >= 500:
                    ctx.log.warning("dependency failed", target=err.target, status=err.status, reason=err.reason)
                response = web.json_response({"error": f"{err.target} failed"}, status=status)
            except Exception as exc:  # a real service answers 500 and logs it
                ctx.log.error("request failed", route=route, error=type(exc).__name__)
                response = web.json_response({"error": "internal error"}, status=500)
            finally:
                METRICS.inflight.dec()
            elapsed = time.perf_counter() - started
            METRICS.requests.labels(route, request.method, str(response.status)).inc()
            METRICS.latency.labels(route).observe(elapsed)
            ctx.log.info("request", route=route, status=response.status, ms=round(elapsed * 1000, 2))
        return response
    return middleware


def build_app(ctx: ServiceContext) -> web.Application:
    gw = Gateway(ctx)
    app = web.Application(middlewares=[observed(ctx)])
    close_admin = start_admin(ctx)

    async def leave_admin_port(app: web.Application) -> None:
        close_admin()

    app.on_startup.append(gw.start)
    app.on_shutdown.append(leave_admin_port)
    app.on_cleanup.append(gw.stop)

    async def health(request: web.Request) -> web.Response:
        return web.json_response(health_body(ctx))

    app.add_routes([
        web.get("/health", health),
        web.get("/api/products/{sku}", gw.product), web.get("/api/search", gw.search),
        web.post("/api/checkout", gw.checkout), web.get("/api/orders/{order_id}", gw.order_status),
    ])
    return app


def main(argv: Optional[Sequence[str]] = None) -> None:
    ctx = load_context(argv, DEFAULTS)
    ctx.log.info("listening", port=ctx.port)
    web.run_app(build_app(ctx), host="127.0.0.1", port=ctx.port, print=None, access_log=None, reuse_port=True,
                shutdown_timeout=2.0)

