"""bank: the card provider, an outside company's API. Not ours: it runs without the agent.

Its behaviour comes from ``external/bank.json`` (latency, error and decline rates), which the lab
changes to play an outage on the provider's side.

    python -m shop bank --spec run/bank.json
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from typing import Any, Dict, Optional, Sequence

from .context import load_context
from .settings import WatchedJson
from .web import Request, Response, Router, serve

DEFAULTS: Dict[str, Any] = {"workers": 32, "seed": 7}
BEHAVIOUR: Dict[str, Any] = {"latency_ms": 45.0, "latency_sigma": 0.5, "error_rate": 0.0, "decline_rate": 0.02,
                             "risk_latency_ms": 150.0}


def main(argv: Optional[Sequence[str]] = None) -> None:
    ctx = load_context(argv, DEFAULTS)
    behaviour = WatchedJson(ctx.data("..", "external", "bank.json"), "behaviour")
    rng = random.Random(int(ctx.settings.get("seed")))
    lock = threading.Lock()
    router = Router()

    def now() -> Dict[str, Any]:
        return {**BEHAVIOUR, **behaviour.refresh()}

    def draw(median_ms: float, sigma: float) -> float:
        with lock:
            return median_ms / 1000.0 * math.exp(sigma * rng.gauss(0.0, 1.0))

    @router.route("POST", "/v1/authorize")
    def authorize(req: Request) -> Response:
        b = now()
        time.sleep(draw(float(b["latency_ms"]), float(b["latency_sigma"])))
        with lock:
            roll = rng.random()
        if roll < float(b["error_rate"]):
            return Response(503, {"error": "upstream acquirer unavailable"})
        if roll < float(b["error_rate"]) + float(b["decline_rate"]):
            return Response(402, {"error": "do not honor"})
        return Response(200, {"authorization": uuid.uuid4().hex[:12]})

    @router.route("GET", "/v1/risk")
    def risk(req: Request) -> Response:
        b = now()
        time.sleep(draw(float(b["risk_latency_ms"]), 0.3))
        with lock:
            return Response(200, {"score": round(rng.random() * 0.95, 3)})

    serve(ctx, router, int(ctx.settings.get("workers")))

