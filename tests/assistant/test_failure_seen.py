"""Which failure verification watches after a fix that rewrote the proof's line: the exception raised through
the verdict's function, not an unrelated one the investigation happened to catch more often."""

import time
from types import SimpleNamespace

import pytest

from probebook.assistant.model import Verdict
from probebook.assistant.verify import failure_seen
from probebook.evidence import EvidenceStore
from probebook.evidence.predicate import Predicate


def exc(seq, probe_id, exc_type, function):
    return {"kind": "exception", "seq": seq, "ts": time.time(), "probe_id": probe_id, "file": "/srv/shop/app.py",
            "line": 10, "function": "handle", "thread": "MainThread", "trace_id": "", "exc_type": exc_type,
            "message": {"type": "str", "value": "boom"},
            "frames": [{"function": "handle", "file": "/srv/shop/app.py", "line": 10, "module": "shop.app"},
                       {"function": function, "file": "/srv/shop/orders.py", "line": 40, "module": "shop.orders"}]}


@pytest.fixture()
def inv():
    store = EvidenceStore()
    store.record_probe("gw", "gateway", "exception", "shop/app.py:handle", {"where": "shop.app:handle"})
    store.record_probe("ord", "orders", "exception", "shop/orders.py:checkout", {"where": "shop.orders:checkout"})
    # the gateway's timeouts are the most caught; the orders' TypeError is raised through the verdict's function
    store.ingest([exc(i, "gw", "TimeoutError", "call_upstream") for i in range(1, 9)], "gateway", "g1")
    store.ingest([exc(i, "ord", "TypeError", "PriceCache.price") for i in range(1, 4)]
                 + [exc(i, "ord", "KeyError", "load_cart") for i in range(4, 9)], "orders", "o1")
    store.record_probe("bil", "billing", "exception", "shop/billing.py:charge", {"where": "shop.billing:charge"})
    store.ingest([dict(exc(i, "bil", "RuntimeError", "charge"), frames=None) for i in range(1, 3)], "billing", "b1")
    yield SimpleNamespace(store=store, sql=store.sql)
    store.close()


def verdict(service, locus):
    return Verdict("proven", service, locus, "a str price", Predicate(capture="price", op="type", value="str"),
                   evidence=["exc-1"])


def test_without_a_verdict_the_most_caught_exception_is_watched(inv):
    service, spec, exc_type, n = failure_seen(inv)
    assert (service, exc_type, n, spec["where"]) == ("gateway", "TimeoutError", 8, "shop.app:handle")


def test_an_exception_raised_through_the_verdicts_function_comes_first(inv):
    service, spec, exc_type, n = failure_seen(inv, verdict("orders", "shop/orders.py:PriceCache.price"))
    assert (service, exc_type, n, spec["where"]) == ("orders", "TypeError", 3, "shop.orders:checkout")


def test_with_none_through_its_function_the_verdicts_service_comes_before_the_most_caught(inv):
    service, _, exc_type, n = failure_seen(inv, verdict("orders", "shop/orders.py:Ledger.total"))
    assert (service, exc_type, n) == ("orders", "KeyError", 5)


def test_the_verdicts_own_service_comes_before_an_exception_through_a_same_named_function_elsewhere(inv):
    service, _, exc_type, n = failure_seen(inv, verdict("gateway", "shop/orders.py:PriceCache.price"))
    assert (service, exc_type, n) == ("gateway", "TimeoutError", 8)
    # an exception without frames in the verdict's service is its own all the same
    service, _, exc_type, n = failure_seen(inv, verdict("billing", "shop/billing.py:charge"))
    assert (service, exc_type, n) == ("billing", "RuntimeError", 2)


def test_elsewhere_an_exception_through_the_verdicts_function_comes_before_the_most_caught(inv):
    service, _, exc_type, n = failure_seen(inv, verdict("payments", "shop/cart.py:load_cart"))
    assert (service, exc_type, n) == ("orders", "KeyError", 5)


def test_a_function_is_the_verdicts_by_its_whole_name_only(inv):
    """`load` is not `load_cart`, `Other.price` is not `PriceCache.price`: with no frame through the
    verdict's function and no exception in its service, the most caught is watched."""
    for locus in ("shop/cart.py:load", "shop/cart.py:cart", "shop/other.py:Other.price", "orders process"):
        service, _, exc_type, _ = failure_seen(inv, verdict("payments", locus))
        assert (service, exc_type) == ("gateway", "TimeoutError"), locus
