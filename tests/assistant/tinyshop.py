"""A tiny service the assistant has never seen: routes, a price calculation that refuses negative
totals, and a discount lookup that returns a whole percent for one code (the defect)."""

import threading
import time


class PriceError(Exception):
    pass


DISCOUNTS = {"SPRING": 0.1, "VIP": 0.2, "BROKEN": 15}


class Billing:
    def discount_for(self, code):
        if not code:
            return 0.0
        return DISCOUNTS.get(code, 0.0)

    def charge(self, items, code):
        subtotal = sum(items)
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


def slow_lookup(n):
    total = 0
    for i in range(60000):  # its own Python code holds the time
        total += i % 7
    return n * 2 + total % 2


def fast_format(n):
    return str(n)


class Api:
    def __init__(self):
        self.billing = Billing()
        self.book = PriceBook()
        self.routes = {"/pay": self.pay, "/report": self.report, "/line": self.line}

    def line(self, sku, qty):
        return {"status": 200, "total": line_total(self.book, sku, qty)}

    def pay(self, items, code):
        return {"status": 200, "amount": self.billing.charge(items, code)}

    def report(self, n):
        v = slow_lookup(n)
        return fast_format(v)


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
            else:
                api.report(i)
        except (PriceError, TypeError):
            pass
        time.sleep(0.02)


def start(kind="pay"):
    api, stop = Api(), threading.Event()
    t = threading.Thread(target=serve, args=(api, stop, kind), daemon=True)
    t.start()
    return api, stop, t
