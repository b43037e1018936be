"""Code shapes the engine must probe. Lines to probe carry a `# at:name` marker.

Keep this file free of other imports of probebook: it plays the part of a user's service.
"""

import asyncio
import functools
import threading
import time

SECRET_FLAG = "module-global"


def plain(a, b):
    total = a + b  # at:plain
    return total * 2


class Cart:
    tax = 0.5

    def __init__(self, items):
        self.items = list(items)

    def total(self, discount=0):
        subtotal = sum(self.items)  # at:method
        return subtotal - discount

    @classmethod
    def empty(cls):
        made = cls([])  # at:classmethod
        return made

    @staticmethod
    def price(cents):
        euros = cents / 100  # at:staticmethod
        return euros

    @property
    def count(self):
        n = len(self.items)  # at:property
        return n


def make_adder(k):
    def adder(x):
        y = x + k  # at:closure
        return y

    return adder


def with_wraps(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def without_wraps(fn):
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@with_wraps
def decorated(x):
    doubled = x * 2  # at:decorated
    return doubled


@without_wraps
def decorated_bare(x):
    tripled = x * 3  # at:decorated_bare
    return tripled


square = lambda v: v * v  # at:lambda


async def fetch(n):
    await asyncio.sleep(0)
    got = n + 1  # at:async
    return got


def countdown(n):
    while n > 0:
        yield n  # at:generator
        n -= 1


async def acount(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i  # at:asyncgen


def fact(n):
    if n <= 1:
        return 1  # at:recursion
    return n * fact(n - 1)


def fails(x):
    ratio = 10 / x  # at:fails
    return ratio


def deep_fail(order):
    qty = order["qty"]
    return _inner_fail(qty)


def _inner_fail(qty):
    per_item = 100
    return per_item / qty  # at:inner_fail


class Looper:
    """A function that is already running when the probe is placed."""

    def __init__(self, name=""):
        self.stop = threading.Event()
        self.ticks = 0
        self.name = name

    def run(self):
        while not self.stop.is_set():
            self.ticks += 1  # at:loop
            time.sleep(0.002)


def slow(ms):
    time.sleep(ms / 1000)
    return ms  # at:slow


def busy(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


# a comment line for the no-code test  at:comment


def echo(value):
    return value  # at:echo
