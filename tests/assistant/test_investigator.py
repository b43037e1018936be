"""The deterministic investigator on a service written here (never the lab's): it proves where a bad
value is made, two calls away from where it breaks, and where the time of a slow route goes."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import tinyshop  # noqa: E402

from probebook.agent import Agent  # noqa: E402
from probebook.assistant import Alert, Assistant  # noqa: E402
from probebook.session import Investigation  # noqa: E402


@pytest.fixture()
def shop(tmp_path):
    agent = Agent()
    inv = Investigation()
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "audit.jsonl"))
    yield inv, agent
    inv.close()
    agent.close() if hasattr(agent, "close") else None


def investigate(inv, traffic, text, alert, route, wait_s=5):
    """Customers on `traffic` while the assistant investigates `text` with one alert on `route`; the
    verdict, and the progress lines to show when an assertion fails."""
    api, stop, t = tinyshop.start(traffic)
    lines = []
    try:
        verdict = Assistant(inv).investigate(text, alerts=[Alert(alert, {"service": "tinyshop", "route": route})],
                                             progress=lines.append, wait_s=wait_s)
    finally:
        stop.set()
        t.join()
    return verdict, "\n".join(lines + verdict.reasons)


def test_errors_are_followed_to_where_the_bad_value_is_made(shop):
    inv, _ = shop
    verdict, why = investigate(inv, "pay", "POST /pay answers 500 for some customers", "HighErrorRate", "/pay")
    assert verdict.kind == "proven", why
    assert verdict.locus.endswith("tinyshop.py:Billing.discount_for")
    assert verdict.predicate.op == ">" and verdict.predicate.value == 0.2
    # the cited evidence is in the store, from the assistant's own probe, and the verdict is journaled
    rows = inv.sql("SELECT count(*) AS n FROM snapshots WHERE evidence_id IN ("
                   + ", ".join(f"'{e}'" for e in verdict.evidence) + ")")
    assert rows["n"][0] == len(verdict.evidence) > 0
    assert inv.sql("SELECT kind FROM assistant_verdicts")["kind"].to_list() == ["proven"]
    assert inv.probes().filter(inv.probes()["status"] != "removed").height == 0  # nothing left behind


def test_a_failed_operation_is_traced_to_the_function_that_returns_the_wrong_type(shop):
    inv, _ = shop
    verdict, why = investigate(inv, "line", "GET /line fails with 500 for some products", "HighErrorRate", "/line")
    assert verdict.kind == "proven", why
    assert verdict.locus.endswith("tinyshop.py:PriceBook.price")
    assert (verdict.predicate.op, verdict.predicate.value) == ("type", "str")


def test_a_bad_item_inside_a_collection_is_traced_to_the_function_that_returns_it(shop):
    """cart_total fails on carts that hold one row with a text price: its locals differ only inside the
    list `lines`. The rows' columns are compared, and the text price is followed to where it is made."""
    inv, _ = shop
    verdict, why = investigate(inv, "cart", "POST /cart answers 500 for some carts", "HighErrorRate", "/cart")
    assert verdict.kind == "proven", why
    assert verdict.locus.endswith("tinyshop.py:PriceBook.price"), why
    assert (verdict.predicate.op, verdict.predicate.value) == ("type", "str"), why


def test_latency_descends_into_the_callee_that_holds_the_time(shop):
    inv, _ = shop
    verdict, why = investigate(inv, "report", "GET /report is slow", "HighLatency", "/report", wait_s=3)
    assert verdict.kind == "proven", why
    assert verdict.locus.endswith("tinyshop.py:slow_lookup")


def test_latency_in_a_library_call_is_claimed_when_the_thread_works(shop):
    inv, _ = shop
    verdict, why = investigate(inv, "search", "GET /search is slow", "HighLatency", "/search", wait_s=3)
    assert verdict.kind == "proven", why
    assert verdict.locus.endswith("tinyshop.py:check_query")
    assert verdict.predicate.field == "cpu_ms" and verdict.predicate.value > 1


def test_latency_that_waits_in_a_library_call_is_not_claimed(shop):
    inv, _ = shop
    verdict, why = investigate(inv, "export", "GET /export is slow", "HighLatency", "/export", wait_s=3)
    assert verdict.kind == "likely", why
    assert verdict.locus.endswith("tinyshop.py:wait_for_disk")
    assert "calls out of our code" in verdict.cause, verdict.cause


def test_nothing_to_see_is_inconclusive_not_a_guess(shop):
    inv, _ = shop
    verdict = Assistant(inv).investigate("POST /pay answers 500", alerts=[
        Alert("HighErrorRate", {"service": "tinyshop", "route": "/pay"})], wait_s=1)
    assert verdict.kind == "inconclusive"


def test_a_plain_call_that_holds_the_event_loop_is_found(shop):
    inv, _ = shop
    verdict, why = investigate(inv, "storefront", "every storefront page is slow", "HighLatency", "/storefront",
                               wait_s=3)
    assert verdict.kind == "proven", why
    assert verdict.locus.endswith("tinyshop.py:fraud_score")
    assert verdict.predicate.field == "value" and verdict.predicate.value >= 5


def test_an_error_swallowed_under_a_quoted_log_line_is_proven_where_it_is_raised(shop):
    inv, _ = shop
    verdict, why = investigate(inv, "jobs", "receipts are not written; the runner logs 'job failed, will retry' "
                               "with no reason", "QueueBacklog", "", wait_s=3)
    assert verdict.kind == "proven", why
    assert verdict.locus.endswith("tinyshop.py:Receipts.save")
    assert verdict.predicate.field == "message" and "No such file or directory" in verdict.predicate.value


def test_our_own_rule_raising_under_a_quoted_log_line_is_not_claimed_as_the_cause(shop):
    inv, _ = shop
    verdict, why = investigate(inv, "batches", "batches pile up; the runner logs 'batch skipped, will retry'",
                               "QueueBacklog", "", wait_s=3)
    assert "by its own rule" in why
    assert not (verdict.kind == "proven" and verdict.locus.endswith("Quota.take")), why


@pytest.mark.parametrize("traffic", ["notify", "notify-backoff"])
def test_retries_with_no_backoff_are_proven_at_the_loop_that_amplifies(shop, traffic):
    """Every refused message is sent 4 times. With no wait between the attempts the loop is proven the
    cause; with a backoff it amplifies too, but what to fix is not proven. A batch that goes on to the
    next item after a failure (`drain`) is no retry loop."""
    inv, _ = shop
    verdict, why = investigate(inv, traffic, "the dispatcher is flooded", "RetryAmplification", "", wait_s=3)
    assert verdict.locus.endswith("tinyshop.py:Courier.send"), why
    assert "Courier.drain retries" not in why
    if traffic == "notify":
        assert verdict.kind == "proven", why
        assert (verdict.predicate.capture, verdict.predicate.value) == ("self.backoff * attempt", 0)
    else:
        assert verdict.kind == "likely", why


@pytest.mark.parametrize("traffic", ["orders-reclaim", "orders"])
def test_a_path_that_never_gives_its_connection_back_is_found(shop, traffic):
    """Orders.create keeps its connection when the sku is sold out. A pool that takes leaked connections
    back after a while lets the leak run again, and it is proven where it runs with the pool full; a
    pool that stays full stops every caller first, so the leak is only `likely` (said, not proven)."""
    inv, _ = shop
    verdict, why = investigate(inv, traffic, "orders are refused: the pool is saturated", "PoolSaturated", "",
                               wait_s=3)
    assert verdict.locus.endswith("tinyshop.py:Orders.create"), why
    assert verdict.kind == ("proven" if traffic == "orders-reclaim" else "likely"), why
    assert verdict.predicate.capture == "self.pool.in_use >= self.pool.size", why


def test_a_cache_that_grows_is_traced_to_the_function_that_makes_its_keys(shop):
    """Every product page is cached under its whole query, and the query carries the visit: every key
    is new. The part that makes them new (`visit=`) is found by taking the keys apart, and the claim is
    proven where the key is made; the views map, stored into as often, does not grow."""
    inv, _ = shop
    verdict, why = investigate(inv, "pages", "memory grows without bound", "CacheGrowth", "", wait_s=3)
    assert verdict.kind == "proven", why
    assert verdict.locus.endswith("tinyshop.py:PageCache.key"), why
    assert (verdict.predicate.op, verdict.predicate.value) == ("contains", "visit="), why


def test_of_two_alerted_routes_the_slower_is_descended_first(shop):
    """Two HighLatency alerts on one service, the fast route's first: both handlers are timed together,
    the slow route is measured first, and its own slow code is proven."""
    inv, _ = shop
    api, stop, t = tinyshop.start("mixed")
    lines = []
    try:
        verdict = Assistant(inv).investigate("the shop is slow", alerts=[
            Alert("HighLatency", {"service": "tinyshop", "route": "/ping"}),
            Alert("HighLatency", {"service": "tinyshop", "route": "/report"})], progress=lines.append, wait_s=3)
    finally:
        stop.set()
        t.join()
    why = "\n".join(lines + verdict.reasons)
    assert verdict.kind == "proven", why
    assert verdict.locus.endswith("tinyshop.py:slow_lookup"), why
    order = next(line for line in lines if line.startswith("latency: routes by p90 time"))
    assert order.index("report") < order.index("ping"), why
    # the slow route was descended into before the fast one was measured on its own
    first = next(line for line in lines if line.startswith("latency:") and line != order)
    assert "report" in first or "slow_lookup" in first, why


def test_a_helper_shared_with_a_busier_caller_is_held_to_what_the_route_can_spend_in_it(shop):
    """`fetch` (4 ms) is called once by each /tally and six times by each run of a batch: over all its
    callers it holds more than /tally's whole time, though /tally's own loop holds most of it. What
    /tally's calls can have spent in `fetch` (its median, once a call) is too little to descend into;
    the route itself holds the time, said `likely` because `fetch`'s share of it is not measured."""
    inv, _ = shop
    verdict, why = investigate(inv, "tally", "GET /tally is slow", "HighLatency", "/tally", wait_s=3)
    assert "fetch is called from elsewhere too" in why, why
    assert (verdict.locus or "").endswith(":Api.tally"), why
    assert verdict.kind == "likely" and "shared with other callers" in verdict.cause, why


def test_a_helper_shared_with_a_slower_caller_is_not_blamed_for_the_route(shop):
    """`fetch` is called by the /quick route (1 ms) and by a batch job (50 ms): timed over all its callers
    it holds far more than /quick's time. It is not followed from /quick, and nothing is proven there."""
    inv, _ = shop
    verdict, why = investigate(inv, "shared", "GET /quick is slow", "HighLatency", "/quick", wait_s=3)
    assert "fetch is called from elsewhere too" in why, why
    assert verdict.kind != "proven" and not (verdict.locus or "").endswith(":fetch"), why
    assert "shared with other callers" in verdict.cause, why


def test_a_wait_for_a_lock_is_followed_to_what_its_holders_do(shop):
    """Bookings wait at BEGIN IMMEDIATE for the write lock that other bookings hold while they scan
    the ledger: the time is a wait in a library call, and its cause is the scan done holding the lock."""
    inv, _ = shop
    verdict, why = investigate(inv, "book", "POST /book is slow", "HighLatency", "/book", wait_s=4)
    assert "waits for a lock that its calls hold while in Ledger.stock" in why, why
    assert verdict.kind == "proven", why
    assert verdict.locus.endswith("tinyshop.py:Ledger.stock"), why
