"""The shop's customers: a seeded load generator with a realistic mix of users, clients and items.

    python -m probebook.lab.loadgen --state STATE_DIR

Arrivals are Poisson at ``rps``; users are drawn with Zipf-like activity, SKUs with Zipf-like
popularity. Web clients send the currency they display prices in (lower case, as browsers format
it); iOS clients do not. The profile in ``<state>/load.json`` is re-read every second, so a scenario
can change the traffic (a sold-out hot item, pasted product codes in search). Every second the
outcome of the last 10 s is written to ``<state>/loadgen.json`` (the users' view of the shop).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import string
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from .seed import COUPONS

__all__ = ["DEFAULT_PROFILE", "LoadGenerator", "main"]

DEFAULT_PROFILE: Dict[str, Any] = {
    "rps": 16.0,
    "mix": {"product": 0.45, "search": 0.15, "checkout": 0.30, "order": 0.10},
    "coupon_share": 0.15,
    "pasted_search_share": 0.0,  # searches for product codes pasted from an ad
    "hot_sku": None,  # a flash-sale item ...
    "hot_share": 0.0,  # ... in this share of checkouts
}
_WINDOW = 10.0
_MAX_IN_FLIGHT = 48


class LoadGenerator:
    def __init__(self, state_dir: str, gateway: str, seed: int) -> None:
        self.state_dir, self.gateway = state_dir, gateway.rstrip("/")
        self.rng = random.Random(seed)
        with open(os.path.join(state_dir, "data", "users.json"), encoding="utf-8") as fh:
            self.users: List[Dict[str, Any]] = json.load(fh)
        with open(os.path.join(state_dir, "data", "catalog.json"), encoding="utf-8") as fh:
            catalog = json.load(fh)
        self.skus: List[str] = catalog["skus"]
        self.words: List[str] = sorted({w for name in catalog["names"] for w in name.split() if w.isalpha()})
        self.user_weights = [1.0 / (i + 1) ** 0.8 for i in range(len(self.users))]
        self.sku_weights = [1.0 / (i + 1) ** 0.9 for i in range(len(self.skus))]
        self.profile = dict(DEFAULT_PROFILE)
        self.orders: Deque[int] = collections.deque(maxlen=200)
        self.outcomes: Deque[Tuple[float, str, int, float]] = collections.deque()
        self.lock = threading.Lock()
        self.sessions: Dict[int, str] = {}
        self.in_flight = 0
        self.shed = 0  # customers who gave up before asking: too many requests already waiting

    # ---------------------------------------------------------------- what customers do
    def _session(self, user: Dict[str, Any]) -> str:
        if user["id"] not in self.sessions or self.rng.random() < 0.05:
            self.sessions[user["id"]] = "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=16))
        return self.sessions[user["id"]]

    def next_request(self) -> Tuple[str, str, str, Optional[Dict[str, Any]], Dict[str, str]]:
        """(kind, method, path, body, headers) of the next customer action."""
        p, rng = self.profile, self.rng
        mix = p["mix"]
        kind = rng.choices(list(mix), [float(v) for v in mix.values()])[0]
        user = rng.choices(self.users, self.user_weights)[0]
        headers = {"X-Session": self._session(user), "User-Agent": f"shop-{user['client']}/5.2"}
        if kind == "product":
            sku = rng.choices(self.skus, self.sku_weights)[0]
            return kind, "GET", f"/api/products/{sku}?region={user['region']}", None, headers
        if kind == "search":
            if rng.random() < float(p.get("pasted_search_share") or 0):
                code = "".join(rng.choices(string.ascii_uppercase + string.digits, k=rng.randint(21, 22)))
                return kind, "GET", f"/api/search?q={code}%3F", None, headers
            terms = "+".join(rng.sample(self.words, rng.randint(1, 2)))
            return kind, "GET", f"/api/search?q={terms}", None, headers
        if kind == "order":
            with self.lock:
                order_id = rng.choice(self.orders) if self.orders else 1
            return kind, "GET", f"/api/orders/{order_id}", None, headers
        items = [{"sku": sku, "qty": rng.randint(1, 3)}
                 for sku in dict.fromkeys(rng.choices(self.skus, self.sku_weights, k=rng.randint(1, 4)))]
        if p.get("hot_sku") and rng.random() < float(p.get("hot_share") or 0):
            items[0] = {"sku": p["hot_sku"], "qty": 1}
        body: Dict[str, Any] = {"user": user["id"], "items": items}
        if rng.random() < float(p["coupon_share"]):
            body["coupon"] = rng.choice(sorted(COUPONS))
        if user["client"] == "web":
            body["display_currency"] = user["currency"].lower()
        return kind, "POST", "/api/checkout", body, headers

    def send(self, kind: str, method: str, path: str, body: Optional[Dict[str, Any]], headers: Dict[str, str]) -> None:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.gateway + path, data=data, method=method,
                                     headers={**headers, "Content-Type": "application/json"})
        started, status = time.monotonic(), 0
        try:
            with urllib.request.urlopen(req, timeout=10.0) as resp:
                status = resp.status
                answer = json.loads(resp.read() or b"null")
            if kind == "checkout" and isinstance(answer, dict) and "order_id" in answer:
                with self.lock:
                    self.orders.append(int(answer["order_id"]))
        except urllib.error.HTTPError as err:
            status = err.code
        except (OSError, ValueError):
            status = 0
        with self.lock:
            self.outcomes.append((time.time(), kind, status, time.monotonic() - started))

    def _send_counted(self, *request: Any) -> None:
        try:
            self.send(*request)
        finally:
            with self.lock:
                self.in_flight -= 1

    # ---------------------------------------------------------------- running
    def reload(self) -> None:
        try:
            with open(os.path.join(self.state_dir, "load.json"), encoding="utf-8") as fh:
                self.profile = {**DEFAULT_PROFILE, **json.load(fh)}
        except (OSError, ValueError):
            pass

    def report(self) -> Dict[str, Any]:
        now = time.time()
        with self.lock:
            while self.outcomes and self.outcomes[0][0] < now - _WINDOW:
                self.outcomes.popleft()
            rows = list(self.outcomes)
        kinds: Dict[str, Any] = {}
        for kind in sorted({r[1] for r in rows}):
            mine = sorted(r[3] for r in rows if r[1] == kind)
            failed = sum(1 for r in rows if r[1] == kind and (r[2] == 0 or r[2] >= 500))
            kinds[kind] = {"requests": len(mine), "failed": failed,
                           "p95_ms": round(mine[int(0.95 * (len(mine) - 1))] * 1000, 1)}
        return {"ts": now, "window_s": _WINDOW, "rps": round(len(rows) / _WINDOW, 2), "kinds": kinds,
                "in_flight": self.in_flight, "shed_total": self.shed}

    def run(self, duration: Optional[float] = None) -> None:
        pool = ThreadPoolExecutor(max_workers=_MAX_IN_FLIGHT, thread_name_prefix="customer")
        started = next_report = time.monotonic()
        next_at = started
        while duration is None or time.monotonic() - started < duration:
            now = time.monotonic()
            if now >= next_report:
                self.reload()
                tmp = os.path.join(self.state_dir, "loadgen.json.tmp")
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(self.report(), fh)
                os.replace(tmp, os.path.join(self.state_dir, "loadgen.json"))
                next_report = now + 1.0
            if now < next_at:
                time.sleep(min(next_at - now, 0.05))
                continue
            request = self.next_request()
            with self.lock:
                busy = self.in_flight >= _MAX_IN_FLIGHT
                self.in_flight += 0 if busy else 1
                self.shed += 1 if busy else 0
            if not busy:
                pool.submit(self._send_counted, *request)
            next_at += self.rng.expovariate(max(0.1, float(self.profile["rps"])))
            next_at = max(next_at, now - 1.0)  # after a stall, do not fire a backlog all at once
        pool.shutdown(wait=True)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m probebook.lab.loadgen")
    parser.add_argument("--state", required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duration", type=float, default=None)
    args = parser.parse_args(argv)
    LoadGenerator(args.state, args.gateway, args.seed).run(args.duration)


if __name__ == "__main__":
    main()
