"""payments: charges customers through the card provider (an outside company) and scores risk.

    python -m shop payments --spec run/payments.json
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Sequence

from .context import ServiceContext, load_context
from .web import Request, Response, RetryPolicy, Router, Upstream, UpstreamError, serve

DEFAULTS: Dict[str, Any] = {"workers": 8, "provider_timeout_s": 2.0, "provider_slots": 6, "slot_wait_s": 2.0,
                            "currencies": ["USD", "EUR", "GBP"], "risk_threshold": 0.9}


class ProviderBusy(Exception):
    """Every provider slot stayed taken for the whole wait."""


class CardProvider:
    """The outside card processor, with a bounded number of calls in flight (its contract)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.api = Upstream("provider", ctx.peers["bank"])
        self.slots = threading.BoundedSemaphore(int(ctx.settings.get("provider_slots")))

    def authorize(self, charge: Dict[str, Any]) -> Dict[str, Any]:
        if not self.slots.acquire(timeout=float(self.ctx.settings.get("slot_wait_s"))):
            raise ProviderBusy("no provider slot free")
        try:
            timeout = float(self.ctx.settings.get("provider_timeout_s"))
            try:
                answer = self.api.call("POST", "/v1/authorize", charge, RetryPolicy(1, 0.0, timeout))
                status = 200
            except UpstreamError as err:
                answer, status = err.body or {}, err.status
            return {"status": status, "answer": answer}
        finally:
            self.slots.release()


def build_router(ctx: ServiceContext, provider: CardProvider) -> Router:
    router = Router()

    @router.route("POST", "/charges")
    def charge(req: Request) -> Response:
        body = req.body or {}
        currency = str(body.get("currency", ""))
        if currency not in ctx.settings.get("currencies"):
            ctx.log.warning("charge rejected", order_id=body.get("order_id"), reason="unsupported currency")
            return Response(422, {"error": "unsupported currency"})
        try:
            result = provider.authorize({"amount": body.get("amount"), "currency": currency,
                                         "reference": f"order-{body.get('order_id')}"})
        except ProviderBusy:
            return Response(503, {"error": "payment provider busy"})
        status = result["status"]
        if status == 200:
            return Response(201, {"charged": True, "authorization": result["answer"].get("authorization")})
        if status == 402:
            return Response(402, {"error": "card declined"})
        ctx.log.warning("provider error", status=status)
        return Response(504 if status == 0 else 502, {"error": "payment provider failed"})

    @router.route("GET", "/risk")
    def risk(req: Request) -> Response:
        score = provider.api.call("GET", f"/v1/risk?user={req.query.get('user', '')}",
                                  policy=RetryPolicy(1, 0.0, 2.0))
        flagged = float(score.get("score", 0.0)) >= float(ctx.settings.get("risk_threshold"))
        return Response(200, {"score": score.get("score"), "flagged": flagged})

    return router


def main(argv: Optional[Sequence[str]] = None) -> None:
    ctx = load_context(argv, DEFAULTS)
    serve(ctx, build_router(ctx, CardProvider(ctx)), int(ctx.settings.get("workers")))

