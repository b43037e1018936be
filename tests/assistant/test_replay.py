"""Fix validation by replaying captured production inputs: a service written here (never the lab's) is
probed in production, its captured calls are run again from the running source and from a fixed source in
a child process on a copy of the code, and the report says, call by call, what changed."""

import os
import sqlite3
import textwrap
import time

import pytest
from support import package_on_disk, wait_for

from probebook.agent import Agent
from probebook.assistant.replay import captured_calls, replay, same
from probebook.errors import AssistantError
from probebook.session import Investigation

SRC = textwrap.dedent('''
    import os
    import sqlite3

    DB = os.path.join(os.path.dirname(__file__), "orders.db")


    class PriceError(Exception):
        pass


    class Billing:
        def __init__(self):
            self.rates = {"SPRING": 0.1, "BROKEN": 15}

        def amount(self, subtotal, code, note=""):
            discount = self.rates.get(code, 0.0)
            total = round(subtotal * (1 - discount), 2)  # at:amount
            if total < 0:
                raise PriceError(f"negative amount {total}")
            con = sqlite3.connect(DB)
            con.execute("INSERT INTO charges VALUES (?)", (total,))
            con.commit()
            con.close()
            return total
''')
# the fix is in the method: the captured `self` carries production's rates (a fix to __init__ would not
# reach the objects production already made, nor the replay, which rebuilds them from their capture)
FIXED = SRC.replace("discount = self.rates.get(code, 0.0)\n",
                    "discount = self.rates.get(code, 0.0)\n        discount = discount / 100 if discount > 1 else discount\n")


@pytest.fixture()
def production(tmp_path):
    """The service's code on disk, imported and probed in this process, with four calls made."""
    root = tmp_path / "srv"
    with package_on_disk(root, "shop", {"billing": SRC}) as (billing,):
        con = sqlite3.connect(root / "shop" / "orders.db")
        con.execute("CREATE TABLE charges (total REAL)")
        con.commit()
        con.close()
        agent, inv = Agent(), Investigation()
        inv.attach("shop", agent, audit_path=str(tmp_path / "audit.jsonl"))
        line = next(i for i, text in enumerate(SRC.splitlines()) if "at:amount" in text)
        inv.probe("snapshot", "shop", f"shop/billing.py:{line}", rate=100)
        bill = billing.Billing()
        for subtotal, code in [(10.0, "SPRING"), (20.0, "BROKEN"), (5.0, None), (7.5, "BROKEN")]:
            try:
                bill.amount(subtotal, code, note="x" * 400 if subtotal == 5.0 else "")
            except billing.PriceError:
                pass
        wait_for(lambda: inv.store.count("snapshots") >= 4, timeout=10, what="four snapshots")
        yield inv, str(root)
        inv.close()


def _rows_in_production_db(root):
    con = sqlite3.connect(os.path.join(root, "shop", "orders.db"))
    try:
        return con.execute("SELECT count(*) FROM charges").fetchone()[0]
    finally:
        con.close()


def test_the_fix_passes_the_calls_that_failed_and_answers_the_others_as_before(production):
    inv, root = production
    assert FIXED != SRC
    every = captured_calls(inv, "shop/billing.py:Billing.amount")
    assert len(every) == 4 and set(every[0].arguments) == {"self", "subtotal", "code", "note"}
    failing = [c.evidence_id for c in every if c.arguments["code"].get("value") == "BROKEN"]
    calls = captured_calls(inv, "shop/billing.py:Billing.amount", failing)
    charges = _rows_in_production_db(root)

    report = replay(calls, root, "shop.billing", "Billing.amount", {"shop/billing.py": FIXED})
    assert report.validated, report.to_dict()
    by_id = {r["evidence_id"]: r for r in report.rows}
    for eid in failing:
        assert by_id[eid]["before"]["raised"] == "PriceError" and by_id[eid]["before"]["ok"] is False
        assert by_id[eid]["before"]["message"].startswith("negative amount")
        assert by_id[eid]["after"]["ok"] is True
    (spring,) = [r for r in report.rows if r["arguments"]["code"] == "'SPRING'"]
    assert {k: v for k, v in spring["before"].items() if k != "ms"} == {"ok": True, "type": "float", "value": "9.0"}
    assert same(spring["before"], spring["after"]) and spring["before"]["ms"] >= 0
    # the call whose note was cut at the capture's limits is replayed all the same: `amount` never reads it
    assert not report.not_rebuilt and len(report.rows) == 4
    assert report.summary().startswith("fix validated: 2 of 2 failing calls now pass, 2 of 2 other calls")
    assert "fresh copy" in report.isolation and "1 SQLite file(s) copied fresh" in report.isolation
    assert _rows_in_production_db(root) == charges  # the copies' inserts never reached the service's database


def test_a_fix_that_breaks_a_passing_call_is_not_validated(production):
    inv, root = production
    every = captured_calls(inv, "shop/billing.py:Billing.amount")
    failing = [c.evidence_id for c in every if c.arguments["code"].get("value") == "BROKEN"]
    wrong = FIXED.replace("round(subtotal * (1 - discount), 2)", "round(subtotal * (1 - discount), 1) + 0.01")
    report = replay(captured_calls(inv, "shop/billing.py:Billing.amount", failing), root, "shop.billing",
                    "Billing.amount", {"shop/billing.py": wrong})
    assert not report.validated and "fix NOT validated: 2 of 2 failing calls now pass, 0 of 2 other" in report.summary()


def test_bad_requests_are_one_line(production, tmp_path):
    inv, root = production
    calls = captured_calls(inv, "shop/billing.py:Billing.amount")
    with pytest.raises(AssistantError, match="no such folder"):
        replay(calls, str(tmp_path / "nowhere"), "shop.billing", "Billing.amount", {})
    with pytest.raises(AssistantError, match="a path relative to"):
        replay(calls, root, "shop.billing", "Billing.amount", {"../etc/passwd": ""})
    with pytest.raises(AssistantError, match="ModuleNotFoundError"):
        replay(calls, root, "shop.nothing", "Billing.amount", {})
    with pytest.raises(AssistantError, match="write path.py:Qual.name"):
        captured_calls(inv, "Billing.amount")


HELD = textwrap.dedent('''
    import os
    import queue
    import sqlite3
    import threading


    class Quotas:
        def __init__(self, path):
            self.conn = sqlite3.connect(path, check_same_thread=False)
            self._lock = threading.Lock()
            self.limits = {"eu": 100, "us": 10}
            self.seen = {f"user-{i}": i for i in range(500)}  # more than a capture holds
            self.owner = {"name": "ann", "password": "hunter2"}  # the password is redacted in every capture
            self.journal = open(path + ".journal", "a", encoding="utf-8")
            self.jobs = queue.Queue()
            self.audit = open(path + ".audit", "wb")
            with open(path + ".rules", "w") as fh:
                fh.write("eu first\\n")
            self.rules = open(path + ".rules", encoding="utf-8")

        def left(self, region, spent):
            with self._lock:  # at:left
                limit = self.limits.get(region, 0)
            self.journal.write(f"{region} {spent}\\n")
            self.journal.flush()
            self.audit.write(region.encode())
            if spent > limit:
                raise ValueError(f"over quota by {spent - limit}")
            return limit - spent

        def sync(self, region):
            os.fsync(self.journal.fileno())  # at:sync
            return region

        def take(self, region):
            self.jobs.put(region)  # at:take
            return self.jobs.get()

        def rule(self, region):
            return self.rules.readline().strip() + " " + region  # at:rule

        def visits(self, user):
            return f"{self.owner['name']}: {self.seen.get(user, 0)}"  # at:visits

        def record(self, region, spent):
            try:
                self.conn.execute("INSERT INTO spend VALUES (?, ?)", (region, spent))  # at:record
            except Exception:
                return "not recorded"
            return "recorded"
''')


def test_what_a_call_never_uses_need_not_be_rebuilt_and_what_it_uses_stops_it(tmp_path):
    """An object that holds a connection, a lock, a dict too big to capture and a dict with a redacted
    value: a method that only takes the lock and reads a small dict is replayed (a fresh lock stands for
    production's, and the report says so); one that reads a key the cut dict holds, and the dict's
    unredacted value, is replayed too, while a key the capture cut stops its call; a queue is made again
    whole; one that uses the connection (no object around it names its database) is not replayed, though it catches every Exception, and the report names its place."""
    root = tmp_path / "srv"
    with package_on_disk(root, "shop", {"quotas": HELD}) as (quotas,):
        agent, inv = Agent(), Investigation()
        inv.attach("shop", agent, audit_path=str(tmp_path / "audit.jsonl"))
        lines = {m: 1 + next(i for i, t in enumerate(HELD.splitlines()) if f"at:{m}" in t)
                 for m in ("left", "record", "visits", "sync", "rule", "take")}
        for m, line in lines.items():  # the queue's conditions are one level deeper than the default reaches
            inv.probe("snapshot", "shop", f"shop/quotas.py:{line}", rate=100,
                      limits={"max_depth": 4} if m == "take" else None)
        q = quotas.Quotas(str(tmp_path / "quotas.db"))
        for region, spent in [("eu", 30), ("us", 40), ("us", 5)]:
            try:
                q.left(region, spent)
            except ValueError:
                pass
            q.record(region, spent)
        q.visits("user-3"), q.visits("user-450"), q.sync("eu"), q.rule("eu"), q.take("eu")
        wait_for(lambda: inv.store.count("snapshots") >= 11, timeout=10, what="eleven snapshots")
        try:
            every = captured_calls(inv, "shop/quotas.py:Quotas.left")
            assert every[0].arguments["self"]["fields"]["seen"].get("truncated"), "the dict was expected cut"
            failing = [c.evidence_id for c in every if c.arguments["spent"]["value"] == 40]
            fixed = HELD.replace("if spent > limit:", "if spent > limit and region != 'us':")
            report = replay(captured_calls(inv, "shop/quotas.py:Quotas.left", failing), str(root), "shop.quotas",
                            "Quotas.left", {"shop/quotas.py": fixed})
            assert report.validated and not report.not_rebuilt, report.to_dict()
            assert report.stand_ins == ["self._lock: a fresh _thread.lock",
                                        "self.audit: a file open for writing, its writes kept in memory",
                                        "self.journal: a file open for writing, its writes kept in memory"], \
                report.to_dict()
            assert "stand-ins: self._lock: a fresh _thread.lock" in report.summary()
            with open(str(tmp_path / "quotas.db") + ".journal", encoding="utf-8") as fh:  # production's file
                assert fh.read() == "eu 30\nus 40\nus 5\n"  # as production wrote it: the replays wrote elsewhere

            # the file in memory has no descriptor to sync; a file open for reading is a tripwire
            for method, why in (("sync", "self.journal: a file production wrote to, stood in by one in memory, "
                                         "which has no file descriptor"),
                                ("rule", "self.rules: a _io.TextIOWrapper")):
                report = replay(captured_calls(inv, f"shop/quotas.py:Quotas.{method}"), str(root), "shop.quotas",
                                f"Quotas.{method}", {})
                assert not report.rows and [n["why"][:len(why)] for n in report.not_rebuilt] == [why], \
                    report.to_dict()

            # a queue of the stdlib is made again whole, its conditions sharing its own mutex
            report = replay(captured_calls(inv, "shop/quotas.py:Quotas.take"), str(root), "shop.quotas",
                            "Quotas.take", {})
            assert [r["before"]["value"] for r in report.rows] == ["'eu'"], report.to_dict()
            assert "self.jobs: a fresh queue.Queue holding its 0 captured items" in report.stand_ins

            # a dict cut at the capture's limits answers the keys it holds; a redacted value stands alone
            report = replay(captured_calls(inv, "shop/quotas.py:Quotas.visits"), str(root), "shop.quotas",
                            "Quotas.visits", {})
            assert [r["before"]["value"] for r in report.rows] == ["'ann: 3'"], report.to_dict()
            assert [n["why"] for n in report.not_rebuilt] == [
                "self.seen: a dict cut at the capture's limits (key 'user-450' was not among the entries captured)"]

            # a fix that uses what production's object could not give the replay: not judged, and said so
            reads = HELD.replace("limit = self.limits.get(region, 0)", "limit = self.limits.get(region, 0)\n"
                                 "            self.conn.total_changes")
            report = replay(captured_calls(inv, "shop/quotas.py:Quotas.left", failing), str(root), "shop.quotas",
                            "Quotas.left", {"shop/quotas.py": reads})
            assert not report.rows and not report.validated, report.to_dict()
            assert all(n["why"].startswith("with the fix: self.conn: a sqlite3.Connection") for n in report.not_rebuilt)

            report = replay(captured_calls(inv, "shop/quotas.py:Quotas.record"), str(root), "shop.quotas",
                            "Quotas.record", {})
            assert not report.rows and len(report.not_rebuilt) == 3, report.to_dict()
            assert all(n["why"].startswith("self.conn: a sqlite3.Connection: no object around it names its database")
                       for n in report.not_rebuilt), \
                report.not_rebuilt
        finally:
            inv.close()


CLOCKED = textwrap.dedent('''
    import time


    class Sessions:
        def __init__(self):
            self.expires = {}

        def open(self, user):
            self.expires[user] = time.monotonic() + 1.0

        def valid(self, user):
            left = self.expires.get(user, 0.0) - time.monotonic()  # at:valid
            return left > 0
''')


def test_a_call_is_replayed_at_the_time_production_made_it(tmp_path):
    """A session valid for one second, checked in production while valid and replayed two seconds later:
    the replay's clock reads the time of the call, so the answer is production's (True), not the
    replay's moment (False)."""
    root = tmp_path / "srv"
    with package_on_disk(root, "shop", {"sessions": CLOCKED}) as (sessions,):
        agent, inv = Agent(), Investigation()
        inv.attach("shop", agent, audit_path=str(tmp_path / "audit.jsonl"))
        line = 1 + next(i for i, t in enumerate(CLOCKED.splitlines()) if "at:valid" in t)
        inv.probe("snapshot", "shop", f"shop/sessions.py:{line}", rate=100)
        s = sessions.Sessions()
        s.open("ann")
        assert s.valid("ann")
        wait_for(lambda: inv.store.count("snapshots") >= 1, timeout=10, what="a snapshot")
        try:
            time.sleep(2.0)
            assert not s.valid("ann")  # in production, now, it has expired
            calls = captured_calls(inv, "shop/sessions.py:Sessions.valid")[:1]
            report = replay(calls, str(root), "shop.sessions", "Sessions.valid", {})
            assert report.rows[0]["before"]["value"] == "True", report.to_dict()
            assert "clocks (time.time, time.monotonic) set back" in report.isolation
        finally:
            inv.close()


POOLED = textwrap.dedent('''
    import queue
    import sqlite3
    import threading


    class Pool:
        def __init__(self, path, size=2):
            self.path, self.size = path, size
            self._idle = queue.LifoQueue()
            self._lock = threading.Lock()
            self.in_use = 0
            for _ in range(size):
                self._idle.put(sqlite3.connect(path, check_same_thread=False, isolation_level=None))

        def acquire(self):
            conn = self._idle.get(timeout=1.0)
            with self._lock:
                self.in_use += 1
            return conn

        def release(self, conn):
            with self._lock:
                self.in_use -= 1
            self._idle.put(conn)


    class Coupons:
        def __init__(self, path, audit_path, spool):
            self.pool, self.audit, self.spool = Pool(path), Pool(audit_path, size=1), spool

        def rate(self, code):
            conn = self.pool.acquire()  # at:rate
            try:
                row = conn.execute("SELECT pct FROM coupons WHERE code = ?", (code,)).fetchone()
                conn.execute("UPDATE coupons SET used = used + 1 WHERE code = ?", (code,))
            finally:
                self.pool.release(conn)
            log = self.audit.acquire()
            try:
                log.execute("INSERT INTO seen VALUES (?)", (code,))
                seen = log.execute("SELECT count(*) FROM seen").fetchone()[0]
            finally:
                self.audit.release(log)
            return (float(row[0]) if row else 0.0, seen)
''')


def test_a_call_through_a_connection_pool_reads_a_fresh_copy_of_the_database_its_pool_names(tmp_path):
    """A method that reads and writes through two pools of SQLite connections kept outside the code's
    folder: the replay runs it on connections to a fresh copy of the database each pool's `path` names
    (made once with SQLite's backup, read only, for both sides), in fresh queues holding as many connections
    as production's did; the fix is judged on it, production's databases are never written, a FIFO among
    the captured paths is never opened, and the report says all of it."""
    # a '#' in a folder's name would end a URI's path: production's file is opened read-only all the same
    root, db, audit = tmp_path / "srv", str(tmp_path / "data#1" / "coupons.db"), str(tmp_path / "audit.db")
    os.makedirs(os.path.dirname(db))
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE coupons (code TEXT, pct REAL, used INTEGER DEFAULT 0)")
    con.executemany("INSERT INTO coupons (code, pct) VALUES (?, ?)", [("SPRING", 15.0), ("FALL", 10.0)])
    con.commit()
    con.close()
    con = sqlite3.connect(audit)
    con.execute("CREATE TABLE seen (code TEXT)")
    con.commit()
    con.close()
    spool = str(tmp_path / "spool")
    os.mkfifo(spool)  # a path a request may carry: opening it would wait for a writer forever
    with package_on_disk(root, "shop", {"coupons": POOLED}) as (coupons,):
        agent, inv = Agent(), Investigation()
        inv.attach("shop", agent, audit_path=str(tmp_path / "audit.jsonl"))
        line = 1 + next(i for i, t in enumerate(POOLED.splitlines()) if "at:rate" in t)
        inv.probe("snapshot", "shop", f"shop/coupons.py:{line}", rate=100, limits={"max_depth": 6})
        c = coupons.Coupons(db, audit, spool)
        assert [c.rate(code) for code in ("SPRING", "NONE", "FALL")] == [(15.0, 1), (0.0, 2), (10.0, 3)]
        wait_for(lambda: inv.store.count("snapshots") >= 3, timeout=10, what="three snapshots")
        try:
            calls = captured_calls(inv, "shop/coupons.py:Coupons.rate")
            fixed = POOLED.replace("return (float(row[0]) if row", "return (float(row[0]) / 100 if row")
            assert fixed != POOLED
            report = replay(calls, str(root), "shop.coupons", "Coupons.rate", {"shop/coupons.py": fixed})
            assert not report.not_rebuilt, report.to_dict()
            # each side starts from the same copy (production's 3 rows), each call adding one on its side
            assert [(r["before"]["value"], r["after"]["value"]) for r in report.rows] == \
                [("(15.0, 4)", "(0.15, 4)"), ("(0.0, 5)", "(0.0, 5)"), ("(10.0, 6)", "(0.1, 6)")], report.to_dict()
            assert "self.pool._idle: a fresh queue.LifoQueue holding its 2 captured items" in report.stand_ins
            # each pool's connections go to the database that pool names, not to the other one
            for place, path in (("self.pool._idle.queue[0]", db), ("self.audit._idle.queue[0]", audit)):
                assert f"{place}: a connection to a fresh copy of {path}" in report.stand_ins, report.stand_ins
            assert f"copied fresh from {db}" in report.isolation and f"copied fresh from {audit}" in report.isolation
            con = sqlite3.connect(db)
            assert con.execute("SELECT sum(used) FROM coupons").fetchone()[0] == 2  # production's two, no more
            con.close()
            con = sqlite3.connect(audit)
            assert con.execute("SELECT count(*) FROM seen").fetchone()[0] == 3
            con.close()
            assert not os.path.exists(str(tmp_path / "data"))  # the '#' did not cut the path short
        finally:
            inv.close()


SLOW = textwrap.dedent('''
    import time


    def check(code):
        if code.endswith("?"):  # the slow path: the answer is right, the time is the fault
            time.sleep(0.25)
        return code.isalnum()
''')


def test_a_latency_fix_is_judged_by_the_time_each_call_takes(tmp_path):
    """The same answer many times faster passes a call that showed a latency defect; a fix that answers
    the other calls alike but many times slower is a regression, and both are said in numbers."""
    from probebook.assistant.replay import CapturedCall

    root = tmp_path / "srv"
    os.makedirs(root / "shop")
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "codes.py").write_text(SLOW)
    arg = lambda text: {"code": {"type": "str", "value": text}}  # noqa: E731
    calls = [CapturedCall("e1", arg("ABC123XYZ?"), failed=True), CapturedCall("e2", arg("ABC123XYZ?"), failed=True),
             CapturedCall("e3", arg("shoes"))]
    fast = SLOW.replace("time.sleep(0.25)", "pass")
    report = replay(calls, str(root), "shop.codes", "check", {"shop/codes.py": fast})
    assert report.validated, report.to_dict()
    said = report.summary()
    assert said.startswith("fix validated: 2 of 2 failing calls now pass (2 by time alone, same answer: "), said
    assert all(r["before"]["ms"] >= 250 and r["after"]["ms"] < 50 for r in report.rows[:2]), report.rows

    slower = SLOW.replace("    return code.isalnum()", "    time.sleep(0.25)\n    return code.isalnum()")
    report = replay(calls[2:] + [CapturedCall("e4", arg("ABC?"), failed=True)], str(root), "shop.codes", "check",
                    {"shop/codes.py": slower.replace('if code.endswith("?")', "if False")})
    assert not report.validated and "0 of 1 other calls answer as before; 1 other calls at least 5x slower" in \
        report.summary(), report.summary()


HOOKED = textwrap.dedent('''
    import decimal


    def half(x):
        return x / 2


    class Log:
        def __init__(self):
            self._write = lambda line: None  # made at start-up

        def debug(self, line):
            self._write(line)


    class Pricer:
        def __init__(self, debug):
            self.rounding, self.kind, self.debug = half, decimal.Decimal, (lambda: debug)
            self.log = Log()

        def price(self, x):
            return self.kind(str(self.rounding(x)))  # at:price

        def loud(self, x):
            return self.debug() and x  # at:loud

        def quote(self, x):
            self.log.debug(f"quote {x}")
            return x * 2  # at:quote
''')


def test_a_module_level_function_or_class_a_capture_names_is_imported_and_a_lambda_stops_the_call(tmp_path):
    """What a capture holds only by name is the same object when its name can be imported: a module-level
    function and a class are; a lambda has no name to import it by, so the call that uses it is not
    rebuilt, and the report says why. A lambda a logger holds is different: a log line has no bearing on the
    answer, so its calls do nothing and the report says it ran with that stand-in."""
    root = tmp_path / "srv"
    with package_on_disk(root, "shop", {"pricer": HOOKED}) as (pricer,):
        agent, inv = Agent(), Investigation()
        inv.attach("shop", agent, audit_path=str(tmp_path / "audit.jsonl"))
        for m in ("price", "loud", "quote"):
            line = 1 + next(i for i, t in enumerate(HOOKED.splitlines()) if f"at:{m}" in t)
            inv.probe("snapshot", "shop", f"shop/pricer.py:{line}", rate=100)
        p = pricer.Pricer(True)
        assert (p.price(5), p.loud(3), p.quote(4)) == (pricer.decimal.Decimal("2.5"), 3, 8)
        wait_for(lambda: inv.store.count("snapshots") >= 3, timeout=10, what="three snapshots")
        try:
            report = replay(captured_calls(inv, "shop/pricer.py:Pricer.price"), str(root), "shop.pricer",
                            "Pricer.price", {})
            assert [r["before"]["value"] for r in report.rows] == ["Decimal('2.5')"], report.to_dict()
            report = replay(captured_calls(inv, "shop/pricer.py:Pricer.loud"), str(root), "shop.pricer",
                            "Pricer.loud", {})
            why = "self.debug: a function made inside another function (shop.pricer.Pricer.__init__.<locals>.<lambda>)"
            assert not report.rows and report.not_rebuilt[0]["why"].startswith(why), report.to_dict()
            report = replay(captured_calls(inv, "shop/pricer.py:Pricer.quote"), str(root), "shop.pricer",
                            "Pricer.quote", {})
            assert [r["before"]["value"] for r in report.rows] == ["8"] and not report.not_rebuilt, report.to_dict()
            assert any(s.startswith("self.log._write: part of a logger, not made again (a function made inside")
                       and s.endswith("its calls do nothing") for s in report.stand_ins), report.stand_ins
        finally:
            inv.close()
