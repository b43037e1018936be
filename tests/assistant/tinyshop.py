"""A tiny service the assistant has never seen: routes, a price calculation that refuses negative
totals, and a discount lookup that returns a whole percent for one code (the defect)."""

import asyncio
import contextlib
import os
import re
import sqlite3
import tempfile
import threading
import time


class PriceError(Exception):
    pass


DISCOUNTS = {"SPRING": 0.1, "VIP": 0.2, "BROKEN": 15}
FLAGS = {"discounts": True}  # off: a charge runs no discount code at all


class Billing:
    def discount_for(self, code):
        if not code:
            return 0.0
        return DISCOUNTS.get(code, 0.0)

    def charge(self, items, code):
        subtotal = sum(items)
        if not FLAGS["discounts"]:
            return round(subtotal, 2)
        discount = self.discount_for(code)
        return final_amount(subtotal, discount)


def final_amount(subtotal, discount):
    amount = round(subtotal * (1 - discount), 2)
    if amount < 0:
        raise PriceError(f"negative amount {amount}")
    return amount


class PriceBook:
    """Unit prices, as a nightly import left them: one is text."""

    def __init__(self):
        self._cache = {"sku-1": 9.5, "sku-2": 4.0, "sku-3": "12.00"}

    def price(self, sku):
        return self._cache[sku]


def line_total(book, sku, qty):
    unit = book.price(sku)
    amount = unit * 1.2 * qty
    return round(amount, 2)


def cart_total(lines):
    subtotal = sum(price * qty for _sku, price, qty in lines)
    return round(subtotal * 1.2, 2)


def slow_lookup(n):
    total = 0
    for i in range(60000):  # its own Python code holds the time
        total += i % 7
    return n * 2 + total % 2


def fast_format(n):
    return str(n)


QUERY = re.compile(r"^(\w+\s?)*$")


def check_query(q):
    return QUERY.match(q) is not None  # the time is the regex engine's work, in a library call


def fetch(n, wait):
    time.sleep(wait)  # a helper every path uses: quick for /quick, slow for the nightly batch
    return n


def wait_for_disk(n):
    time.sleep(0.03)  # the time is a wait in a library call: no CPU
    return n


class Receipts:
    def save(self, n):
        # every third receipt goes to a volume that is not mounted: open() fails, not a rule of ours
        path = "/nonexistent-probebook-volume/receipt.txt" if n % 3 == 0 else os.devnull
        with open(path, "a") as fh:
            fh.write(f"receipt {n}\n")
        return n


class Jobs:
    """A job runner that drops what it caught: its log line says a job failed, never why."""

    def __init__(self):
        self.receipts, self.failed, self.log = Receipts(), 0, []

    def run(self, n):
        self.receipts.save(n)

    def step(self, n):
        try:
            self.run(n)
        except Exception:
            self.log.append("job failed, will retry")
            self.failed += 1


class QuotaExceeded(Exception):
    pass


class Quota:
    def take(self, n):
        if n % 2 == 0:
            raise QuotaExceeded("no quota left")  # our own rule: a symptom of whoever used the quota up
        return n


class Batches:
    """Drops what it caught too, but what it catches is our own rule refusing, not a failure."""

    def __init__(self):
        self.quota, self.log = Quota(), []

    def step(self, n):
        try:
            self.quota.take(n)
        except QuotaExceeded:
            self.log.append("batch skipped, will retry")


class Courier:
    """Sends through a dispatcher that refuses every other message; it retries a refused one `attempts`
    times, waiting `backoff * attempt` seconds between (0: no backoff at all, the defect)."""

    def __init__(self, backoff=0.0, attempts=4):
        self.backoff, self.attempts = backoff, attempts

    def dispatch(self, n):
        if n % 2 == 0:
            raise ConnectionError("dispatcher busy")
        return n

    def send(self, n):
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.dispatch(n)
            except ConnectionError:
                if attempt >= self.attempts:
                    raise
                time.sleep(self.backoff * attempt)

    def drain(self, items):
        """A batch, not a retry: after a failure it goes on to the next item."""
        sent = 0
        for n in items:
            try:
                self.dispatch(n)
                sent += 1
            except ConnectionError:
                sent += 0
        return sent


class PageCache:
    """Pages by key; `key` keys them on the whole query, so a per-visit part makes every key new."""

    def __init__(self):
        self._pages, self.views = {}, {}

    def key(self, query):
        return query

    def get(self, key):
        return self._pages.get(key)

    def put(self, key, page):
        self._pages[key] = page


def product_page(cache, sku, visit):
    query = f"sku={sku}&region=eu&visit={visit}"
    cache.views[sku] = cache.views.get(sku, 0) + 1  # a bounded map: a few skus, stored again and again
    key = cache.key(query)
    page = cache.get(key)
    if page is None:
        page = {"sku": sku}
        cache.put(key, page)
    return page


class PoolFull(Exception):
    pass


class Pool:
    """`size` connections; `acquire` fails at once when all are out. With `reclaim_s`, connections held
    longer than that are taken back (a leak-detecting pool), so a leak drains it again and again."""

    def __init__(self, size=4, reclaim_s=None):
        self.size, self.in_use, self.reclaim_s, self._out = size, 0, reclaim_s, {}
        self._lock = threading.Lock()

    def acquire(self):
        with self._lock:
            now = time.monotonic()
            if self.reclaim_s is not None:
                for conn in [c for c, t in self._out.items() if now - t > self.reclaim_s]:
                    del self._out[conn]
                    self.in_use -= 1
            if self.in_use >= self.size:
                raise PoolFull(f"{self.in_use}/{self.size} in use")
            self.in_use += 1
            conn = object()
            self._out[conn] = now
            return conn

    def release(self, conn):
        with self._lock:
            if self._out.pop(conn, None) is not None:
                self.in_use -= 1


class Orders:
    def __init__(self, pool):
        self.pool, self.stock = pool, {"sku-1": 10 ** 9, "sku-2": 0}

    def create(self, sku):
        conn = self.pool.acquire()
        if self.stock[sku] <= 0:
            return {"status": 409}  # the defect: the connection is never given back on this path
        try:
            self.stock[sku] -= 1
        finally:
            self.pool.release(conn)
        return {"status": 201, "conn": id(conn)}


class Ledger:
    """Stock as a ledger of movements in SQLite. A booking takes the write lock (BEGIN IMMEDIATE) and,
    holding it, totals the SKU's movements: with no index each total scans the whole table, so the
    bookings queue for the lock behind each other's scans (the defect is the scan, not the lock)."""

    def __init__(self):
        self.path = os.path.join(tempfile.mkdtemp(prefix="tinyshop-ledger-"), "ledger.db")
        conn = sqlite3.connect(self.path)
        conn.execute("CREATE TABLE moves (sku TEXT, delta INTEGER)")
        conn.executemany("INSERT INTO moves VALUES (?, ?)", ((f"sku-{i % 50}", 1) for i in range(450000)))
        conn.commit()
        conn.close()

    def stock(self, conn, sku):
        return conn.execute("SELECT SUM(delta) FROM moves WHERE sku = ?", (sku,)).fetchone()[0]

    def book(self, sku):
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            # no sync to disk at COMMIT: what the lock is held for is the scan and the insert, on any disk
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("BEGIN IMMEDIATE")
            try:
                left = self.stock(conn, sku)
                conn.execute("INSERT INTO moves VALUES (?, -1)", (sku,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return left
        finally:
            conn.close()


@contextlib.contextmanager
def traced(user):
    yield user


def fraud_score(user):
    time.sleep(0.015)  # a blocking wait on the event loop's thread: every request waits with it
    return user % 3


class AsyncApi:
    def __init__(self):
        self.routes = {"/storefront": self.storefront}

    async def storefront(self, user):
        with traced(user):  # a generator: its call spans the awaits inside, it holds no loop
            score = fraud_score(user)
            await asyncio.sleep(0.02)
        return {"status": 200, "score": score}


class Api:
    def __init__(self):
        self.billing = Billing()
        self.book = PriceBook()
        self.jobs = Jobs()
        self.batches = Batches()
        self.courier = Courier()
        self.orders = Orders(Pool())
        self.pages = PageCache()
        self.ledger = None  # made by the first booking (it writes a database)
        self.routes = {"/pay": self.pay, "/report": self.report, "/line": self.line, "/search": self.search,
                       "/cart": self.cart, "/ping": self.ping, "/quick": self.quick,
                       "/export": self.export, "/tally": self.tally, "/book": self.booking}

    def booking(self, sku):
        return {"status": 201, "left": self.ledger.book(sku)}

    def cart(self, skus):
        lines = [(sku, self.book.price(sku), 1 + len(sku) % 3) for sku in skus]
        return {"status": 200, "total": cart_total(lines)}

    def line(self, sku, qty):
        return {"status": 200, "total": line_total(self.book, sku, qty)}

    def pay(self, items, code):
        return {"status": 200, "amount": self.billing.charge(items, code)}

    def report(self, n):
        v = slow_lookup(n)
        return fast_format(v)

    def ping(self, n):
        return fast_format(n)

    def quick(self, n):
        return fetch(n, 0.001)

    def nightly(self, n):  # not a route: a batch job that calls the same helper, slowly
        return fetch(n, 0.05)

    def tally(self, n):
        fetch(n, 0.004)  # the shared helper, once a call; the batch below makes most of its calls
        total = 0
        for i in range(150000):  # the route's own code holds its time
            total += i % 7
        return total

    def refill(self, n):  # not a route: a batch job that calls the helper many times
        for _ in range(6):
            fetch(n, 0.004)

    def search(self, q):
        return {"status": 200 if check_query(q) else 400}

    def export(self, n):
        return {"status": 200, "rows": wait_for_disk(n)}


def serve(api, stop, kind="pay"):
    """Plays the customers: every 20 ms a request, a few with the broken code."""
    codes = ["", "SPRING", "VIP", "BROKEN", ""]
    i = 0
    while not stop.is_set():
        i += 1
        try:
            if kind == "pay":
                api.pay([10.0, 5.5], codes[i % len(codes)])
            elif kind == "line":
                api.line(f"sku-{1 + i % 3}", 1 + i % 4)
            elif kind == "search":
                api.search("A" * 17 + "?")
            elif kind == "shared":  # the /quick route and a batch job share a helper
                api.quick(i) if i % 4 == 0 else api.nightly(i)  # the batch makes most of the calls
            elif kind == "tally":  # /tally and a batch that calls its helper twelve times as often
                api.tally(i) if i % 3 == 0 else api.refill(i)
            elif kind == "mixed":  # a fast route and a slow one, alternately
                api.ping(i) if i % 2 else api.report(i)
            elif kind == "export":
                api.export(i)
            elif kind == "jobs":
                api.jobs.step(i)
            elif kind == "batches":
                api.batches.step(i)
            elif kind == "cart":  # every fourth cart holds sku-3, whose price is text
                api.cart(["sku-1", "sku-2"] + (["sku-3"] if i % 4 == 0 else []))
            elif kind == "pages":
                product_page(api.pages, f"sku-{i % 3}", i)
            elif kind.startswith("orders"):
                if kind == "orders-reclaim":
                    api.orders.pool.reclaim_s = 1.0
                api.orders.create("sku-2" if i % 5 == 0 else "sku-1")
            elif kind.startswith("notify"):
                if kind == "notify-backoff":
                    api.courier.backoff = 0.002
                api.courier.drain(range(i, i + 4))
                api.courier.send(i)
            else:
                api.report(i)
        except (PriceError, TypeError, ConnectionError, PoolFull):
            pass
        time.sleep(0.02)


def serve_async(stop):
    """Customers of the async storefront: a few concurrent requests on one event loop."""
    api = AsyncApi()

    async def customers():
        i = 0
        while not stop.is_set():
            i += 1
            await asyncio.gather(*(api.storefront(i + k) for k in range(3)))
            await asyncio.sleep(0.02)

    asyncio.run(customers())


def book(api, stop):
    """A customer that books one SKU after another (several of them at once contend for the lock)."""
    i = 0
    while not stop.is_set():
        i += 1
        api.booking(f"sku-{i % 50}")
        time.sleep(0.005)


class _Together:
    """Several customer threads, joined as one."""

    def __init__(self, threads):
        self.threads = threads

    def join(self):
        for t in self.threads:
            t.join()


def start(kind="pay"):
    api, stop = Api(), threading.Event()
    if kind == "book":
        api.ledger = Ledger()
        threads = [threading.Thread(target=book, args=(api, stop), daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        return api, stop, _Together(threads)
    t = threading.Thread(target=serve_async, args=(stop,), daemon=True) if kind == "storefront" else \
        threading.Thread(target=serve, args=(api, stop, kind), daemon=True)
    t.start()
    return api, stop, t
