"""Functions the benchmarks probe. Kept in their own module so line numbers are stable."""


def target(x):
    y = x + 1  # PROBE
    return y


def target_plain(x):
    y = x + 1
    return y


class Order:
    def __init__(self, oid, user, items):
        self.oid = oid
        self.user = user
        self.items = items
        self.meta = {"source": "web", "tags": ["a", "b"], "nested": {"k": 1, "v": [1, 2, 3]}}


def handle(order, user, total):
    items = order.items
    count = len(items)
    prices = [i["price"] for i in items]
    headers = {"content-type": "application/json", "x-request-id": "abc123", "accept": "*/*"}
    config = {"retries": 3, "timeout": 2.5, "pool": {"size": 10, "used": 7}}
    name = "checkout-service"
    flag = True
    ratio = total / max(count, 1)
    note = "x" * 40
    return ratio  # SNAP


# Identical copies of `handle`, by design: each peer in bench/snapshot.py gets its own code object
# with the same body, so all of them can be called in turn within one run.
def handle_dd(order, user, total):
    items = order.items
    count = len(items)
    prices = [i["price"] for i in items]
    headers = {"content-type": "application/json", "x-request-id": "abc123", "accept": "*/*"}
    config = {"retries": 3, "timeout": 2.5, "pool": {"size": 10, "used": 7}}
    name = "checkout-service"
    flag = True
    ratio = total / max(count, 1)
    note = "x" * 40
    return ratio


def handle_dd_full(order, user, total):
    items = order.items
    count = len(items)
    prices = [i["price"] for i in items]
    headers = {"content-type": "application/json", "x-request-id": "abc123", "accept": "*/*"}
    config = {"retries": 3, "timeout": 2.5, "pool": {"size": 10, "used": 7}}
    name = "checkout-service"
    flag = True
    ratio = total / max(count, 1)
    note = "x" * 40
    return ratio


def handle_plain(order, user, total):
    items = order.items
    count = len(items)
    prices = [i["price"] for i in items]
    headers = {"content-type": "application/json", "x-request-id": "abc123", "accept": "*/*"}
    config = {"retries": 3, "timeout": 2.5, "pool": {"size": 10, "used": 7}}
    name = "checkout-service"
    flag = True
    ratio = total / max(count, 1)
    note = "x" * 40
    return ratio


def log_target(order, user, total):
    ratio = total / 3  # LOG
    return ratio


def log_target_plain(order, user, total):
    ratio = total / 3
    return ratio


def line_of(marker):
    import inspect
    import sys

    src = inspect.getsource(sys.modules[__name__]).splitlines()
    return next(i for i, line in enumerate(src, 1) if line.rstrip().endswith(marker))
