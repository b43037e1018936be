"""Two small HTTP services and an outside provider, for the assistant's cross-service tests.

    python twoshop.py front PORT_FILE BACK_URL     /pay -> calls back /charge; 5xx from back -> 502
                                                   (/order: through a client that raises in its
                                                   except handler, and the error leaves: 500)
    python twoshop.py back PORT_FILE PROVIDER_URL  /charge -> a fee from a rate table (one code is a
                                                   whole percent: ValueError), then the provider
    python twoshop.py provider PORT_FILE MODE      the outside card provider (no agent); MODE
                                                   "flaky" answers 503 to every third call,
                                                   "declines" 402 (a refusal, not an outage)

(aback.py beside it is an asyncio back whose /deliver works out the days on the event loop's thread.)

front /ship sends back /deliver the shopper's region, which `region_of` writes in lower case for
every fourth shopper; back answers 422 to a region it does not know, and spends its time on the
others in `route_days`. front /stock calls back with no error handling at all (a refused connection
leaves as URLError); /ship turns it into an UpstreamError with the reason; /quote lets that
UpstreamError out; /track asks again twice after a failure, with a growing wait.
"""

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

RATES = {"": 0.0, "SPRING": 0.02, "VIP": 0.03, "BROKEN": 3}
REGIONS = ("EU", "US", "UK")


class UpstreamError(Exception):
    def __init__(self, peer, status, path, reason=""):
        super().__init__(f"{peer} answered {status} to {path}" if status else f"{peer} did not answer: {reason}")
        self.peer, self.status, self.path, self.reason = peer, status, path, reason


class Peer:
    """A client of another HTTP service, with its name."""

    def __init__(self, name, base_url):
        self.name, self.base_url = name, base_url.rstrip("/")

    def get(self, path, query):
        try:
            with urllib.request.urlopen(f"{self.base_url}{path}?{query}", timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            status = err.code
        except urllib.error.URLError as err:  # no answer at all
            raise UpstreamError(self.name, 0, path, reason=str(err.reason)) from None
        if status >= 400:
            raise UpstreamError(self.name, status, path)
        return {}

    def strict(self, path, query):
        """A client that raises in its except handler: at the raise, every failure looks the same."""
        try:
            with urllib.request.urlopen(f"{self.base_url}{path}?{query}", timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise UpstreamError(self.name, err.code, path) from None

    def fetch(self, path):
        """A bare call: a failure of any kind leaves through the caller."""
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=5) as resp:
            return json.loads(resp.read())


def fee_rate(code):
    return RATES.get(code, 0.0)


def fee_for(amount, rate):
    fee = round(amount * rate, 2)
    if fee > amount:
        raise ValueError(f"fee {fee} above the amount {amount}")
    return fee


class Back:
    def __init__(self, provider_url):
        self.provider = Peer("acquirer", provider_url)

    def charge(self, amount, code):
        fee = fee_for(amount, fee_rate(code))
        try:
            self.provider.get("/authorize", f"amount={amount + fee}")
        except UpstreamError as err:
            return 502, {"error": f"{err.peer} failed"}
        return 200, {"fee": fee}

    def deliver(self, q):
        region = q.get("region", "")
        if region not in REGIONS:
            return 422, {"error": "unknown region"}
        return 200, {"region": region, "days": route_days(region)}


def route_days(region):
    days, i, end = 0, 0, time.thread_time() + 0.020  # 20 ms of CPU whatever the machine's speed
    while True:  # its own code holds the time of every delivery quote
        for j in range(2000):
            days = (days + (i + j) * len(region)) % 7
        i += 2000
        if time.thread_time() >= end:
            return 2 + days % 2


def region_of(user):
    region = REGIONS[user % 3]
    if user % 4 == 0:
        region = region.lower()  # the defect: every fourth shopper's region in lower case
    return region


class Front:
    def __init__(self, back_url):
        self.back = Peer("back", back_url)

    def pay(self, amount, code):
        try:
            return 200, self.back.get("/charge", f"amount={amount}&code={code}")
        except UpstreamError:
            return 502, {"error": "payment failed"}

    def order(self, amount, code):
        return 200, self.back.strict("/charge", f"amount={amount}&code={code}")  # a failure leaves: a 500

    def ship(self, user):
        region = region_of(user)
        try:
            return 200, self.back.get("/deliver", urlencode({"user": user, "region": region}))
        except UpstreamError as err:
            return 502, {"error": f"{err.peer} answered {err.status}"}

    def stock(self):
        return 200, self.back.fetch("/deliver?region=EU")

    def quote(self):
        return 200, self.back.get("/deliver", "region=EU")  # our client's UpstreamError leaves uncaught

    def track(self):
        """Asks back up to three times, waiting a little longer after each failure: a retry loop with a backoff."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return 200, self.back.get("/deliver", "region=EU")
            except UpstreamError as err:
                if attempt >= 3:
                    return 502, {"error": f"{err.peer} did not answer"}
                time.sleep(0.01 * attempt)


def serve(port_file, handle):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                status, body = handle(url.path, q)
            except Exception as exc:  # noqa: BLE001 - an unhandled error answers 500, like a framework
                status, body = 500, {"error": type(exc).__name__}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    # TWOSHOP_SERIAL=1: one request at a time, the others queue in the listen backlog before any handler runs
    server = (HTTPServer if os.environ.get("TWOSHOP_SERIAL") else ThreadingHTTPServer)(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as fh:
        fh.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


def main():
    role, port_file, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    if role == "front":
        front = Front(arg)
        routes = {"/pay": lambda q: front.pay(float(q.get("amount", 10)), q.get("code", "")),
                  "/order": lambda q: front.order(float(q.get("amount", 10)), q.get("code", "")),
                  "/ship": lambda q: front.ship(int(q.get("user", 0))),
                  "/stock": lambda q: front.stock(), "/quote": lambda q: front.quote(),
                  "/track": lambda q: front.track()}
    elif role == "back":
        back = Back(arg)
        routes = {"/charge": lambda q: back.charge(float(q.get("amount", 10)), q.get("code", "")),
                  "/deliver": back.deliver}
    else:
        counter = {"n": 0}
        lock = threading.Lock()

        def authorize(q):
            with lock:
                counter["n"] += 1
                n = counter["n"]
            if n % 3 == 0 and arg in ("flaky", "declines"):  # an outage, or a business refusal
                return (503, {"error": "busy"}) if arg == "flaky" else (402, {"error": "card declined"})
            return 200, {"ok": True}
        routes = {"/authorize": authorize}
    serve(port_file, lambda path, q: routes[path](q) if path in routes else (404, {}))


if __name__ == "__main__":
    main()
