"""Every code shape accepts line probes, emits at the right place and is restored exactly."""

import asyncio
import os
import sys
import textwrap
import threading
import time
import traceback

import pytest
import shapes
from conformance_support import events, marker_line, where
from support import wait_for

from probebook.agent import LocationError

MONITORING = sys.version_info >= (3, 12)


def _log(agent, name, template, **extra):
    spec = {"kind": "log", "where": where(name), "template": template, "rate": 1000}
    spec.update(extra)
    return agent.add_probe(spec)


def _messages(agent):
    return [e.message for e in events(agent, "log")]


CASES = [
    ("plain", "total={total} a={a}", lambda: shapes.plain(2, 3), ["total=<unbound> a=2"]),
    ("method", "items={self.items}", lambda: shapes.Cart([1, 2]).total(), ["items=[1, 2]"]),
    ("classmethod", "cls={cls.tax}", lambda: shapes.Cart.empty().items, ["cls=0.5"]),
    ("staticmethod", "cents={cents}", lambda: shapes.Cart.price(250), ["cents=250"]),
    ("property", "n={len(self.items)}", lambda: shapes.Cart([1, 2, 3]).count, ["n=3"]),
    ("decorated", "x={x}", lambda: shapes.decorated(4), ["x=4"]),
    ("decorated_bare", "x={x}", lambda: shapes.decorated_bare(5), ["x=5"]),
    ("lambda", "v={v}", lambda: shapes.square(7), ["v=7"]),
    ("recursion", "n={n}", lambda: shapes.fact(4), ["n=1"]),
]


@pytest.mark.parametrize("name,template,call,expected", CASES, ids=[c[0] for c in CASES])
def test_line_probe_on_shape(agent, name, template, call, expected):
    before = call()
    probe = _log(agent, name, template)
    assert probe.status == "installed", probe.reason
    assert call() == before  # the host's result is unchanged
    got = _messages(agent)
    if name == "plain":  # `total` is not bound yet at the probed line
        assert got and got[0].startswith("total={total: ") and got[0].endswith("a=2")
    else:
        assert got == expected
    agent.remove_probe(probe.id)
    call()
    assert _messages(agent) == []


def test_closure_created_before_and_after_probe(agent):
    early = shapes.make_adder(10)
    original = early.__code__
    probe = _log(agent, "closure", "x={x} k={k}")
    late = shapes.make_adder(20)
    assert early(1) == 11 and late(1) == 21
    assert _messages(agent) == ["x=1 k=10", "x=1 k=20"]
    agent.remove_probe(probe.id)
    assert early.__code__ is original
    assert shapes.make_adder(1).__code__ is original
    assert late.__code__ is original


def test_async_def_generator_and_async_generator(agent):
    p1 = _log(agent, "async", "n={n}")
    p2 = _log(agent, "generator", "n={n}")
    p3 = _log(agent, "asyncgen", "i={i}")

    async def consume():
        return [i async for i in shapes.acount(2)]

    assert asyncio.run(shapes.fetch(1)) == 2
    assert list(shapes.countdown(2)) == [2, 1]
    assert asyncio.run(consume()) == [0, 1]
    assert _messages(agent) == ["n=1", "n=2", "n=1", "i=0", "i=1"]
    for p in (p1, p2, p3):
        agent.remove_probe(p.id)


def test_many_threads_at_once(agent):
    probe = _log(agent, "plain", "a={a}", rate=10_000)
    barrier = threading.Barrier(8)
    results = []

    def worker(k):
        barrier.wait()
        results.append(sum(shapes.plain(k, 1) for _ in range(200)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(200 * (k + 1) * 2 for k in range(8))
    assert len(_messages(agent)) == 1600
    assert agent.get_probe(probe.id).emitted == 1600


def test_running_loop(agent):
    looper = shapes.Looper()
    t = threading.Thread(target=looper.run)
    t.start()
    try:
        wait_for(lambda: looper.ticks > 0, timeout=10, what="the loop to run")  # the frame is running now
        _log(agent, "loop", "ticks={self.ticks}")
        placed_at = looper.ticks
        if MONITORING:
            wait_for(lambda: _messages(agent), timeout=10, what="3.12+: a probe must reach a frame already running")
        else:  # the negative check after the loop went round at least 50 times past the probe's line
            wait_for(lambda: looper.ticks > placed_at + 50, timeout=10, what="the loop to go on")
            assert _messages(agent) == [], "<= 3.11: documented to affect new calls only"
    finally:
        looper.stop.set()
        t.join()
    # a new call is probed on every version
    looper2 = shapes.Looper()
    t2 = threading.Thread(target=looper2.run)
    t2.start()
    try:
        wait_for(lambda: [m for m in _messages(agent) if m == "ticks=0"], timeout=10, what="the new call's hits")
    finally:
        looper2.stop.set()
        t2.join()


def test_exceptions_tracebacks_and_lines_unchanged(agent):
    def tb_of(fn, *args):
        try:
            fn(*args)
        except Exception as exc:
            return type(exc), [(f.lineno, f.name, f.line) for f in traceback.extract_tb(exc.__traceback__)]

    plain_tb = tb_of(shapes.fails, 0)
    deep_tb = tb_of(shapes.deep_fail, {"qty": 0})
    agent.add_probe({"kind": "log", "where": where("fails"), "template": "x={x}"})
    agent.add_probe({"kind": "exception", "where": "shapes:_inner_fail"})
    agent.add_probe({"kind": "metric", "where": "shapes:deep_fail", "metric": {"name": "d", "type": "duration"}})
    assert tb_of(shapes.fails, 0) == plain_tb
    assert tb_of(shapes.deep_fail, {"qty": 0}) == deep_tb
    assert shapes.fails(5) == 2.0


def test_line_without_code_is_refused_with_nearest_lines(agent):
    line = marker_line("comment")
    with pytest.raises(LocationError) as err:
        agent.add_probe({"kind": "log", "where": f"conformance/shapes.py:{line}", "template": "x"})
    assert "holds no code" in str(err.value) and "nearest lines" in str(err.value)
    decorator_line = marker_line("decorated") - 2  # the `@with_wraps` line
    with pytest.raises(LocationError):
        agent.add_probe({"kind": "log", "where": f"conformance/shapes.py:{decorator_line}", "template": "x"})
    assert agent.probes() == []


def test_removal_restores_original_code_and_globals(agent):
    funcs = [shapes.plain, shapes.Cart.total, shapes.fact, shapes.fetch, shapes.countdown, shapes.square,
             shapes.deep_fail, shapes._inner_fail]
    originals = [f.__code__ for f in funcs]
    global_names = set(vars(shapes))
    ids = [
        _log(agent, "plain", "a={a}").id,
        _log(agent, "method", "x={discount}").id,
        _log(agent, "recursion", "n={n}").id,
        agent.add_probe({"kind": "span", "where": "shapes:fact"}).id,
        agent.add_probe({"kind": "exception", "where": "shapes:deep_fail"}).id,
        agent.add_probe({"kind": "snapshot", "where": where("inner_fail")}).id,
        _log(agent, "async", "n={n}").id,
        _log(agent, "generator", "n={n}").id,
        _log(agent, "lambda", "v={v}").id,
    ]
    shapes.fact(3)
    for pid in ids:
        agent.remove_probe(pid)
    assert all(f.__code__ is c for f, c in zip(funcs, originals))
    assert set(vars(shapes)) == global_names
    assert agent.probes() == []


def test_probes_on_the_agent_itself_are_refused(agent):
    """The agent, its auth, audit and redaction are never probed (a probe there could read a token before
    it is redacted); the lab's services, application code that ships inside probebook, still can be."""
    from probebook.agent.control import audit
    from probebook.lab import sample  # noqa: F401 - loaded, so it can be probed

    line = audit.verify.__code__.co_firstlineno + 1
    for spec in ({"kind": "snapshot", "where": f"probebook/agent/control/audit.py:{line}"},
                 {"kind": "exception", "where": "probebook.agent.control.audit:verify"},
                 {"kind": "snapshot", "where": "probebook.agent.capture.redaction:Redactor.__init__"}):
        with pytest.raises(LocationError) as err:
            agent.add_probe(spec)
        assert "probebook's own code" in str(err.value)
    assert agent.probes() == []
    assert agent.add_probe({"kind": "metric", "where": "probebook.lab.sample:price",
                            "metric": {"name": "m", "type": "duration"}})


@pytest.mark.skipif(not MONITORING, reason="sys.monitoring is 3.12+; below it the code objects are swapped back")
def test_removal_restores_the_code_leaves_no_monitoring_events_and_close_frees_the_tool_id():
    """On 3.12+ new calls run a swapped copy and frames already running get the probe through local events
    on the original code: removal must swap the original back and take those events away (while placed:
    there, so the check can fail), and once the agent closes, the tool id, its events and callbacks must
    go (another tool may take it)."""
    from probebook.agent import Agent
    from probebook.agent.instrument.monitor import TOOL_IDS_TRIED

    mon = sys.monitoring
    plain, total = shapes.plain.__code__, shapes.Cart.total.__code__  # the originals
    agent = Agent()
    try:
        line = _log(agent, "plain", "a={a}")
        call = agent.add_probe({"kind": "metric", "where": "shapes:Cart.total", "metric": {"name": "t"}})
        tid = next(t for t in TOOL_IDS_TRIED if mon.get_tool(t) == "probebook")
        assert shapes.plain.__code__ is not plain and shapes.Cart.total.__code__ is not total  # new calls: the copy
        assert mon.get_local_events(tid, plain) & mon.events.LINE  # the positive control
        assert mon.get_local_events(tid, total) & mon.events.PY_START
        assert mon.get_local_events(tid, shapes.plain.__code__) == 0  # never both paths on one execution
        shapes.plain(2, 3), shapes.Cart([1]).total()
        got = _messages(agent)
        assert len(got) == 1 and got[0].endswith("a=2"), got
        agent.remove_probe(line.id)
        assert shapes.plain.__code__ is plain and mon.get_local_events(tid, plain) == 0
        assert mon.get_local_events(tid, total) & mon.events.PY_START  # the other probe is untouched
        agent.remove_probe(call.id)
        assert shapes.Cart.total.__code__ is total and mon.get_local_events(tid, total) == 0
    finally:
        agent.close()
    assert mon.get_tool(tid) is None, "the agent closed and kept its sys.monitoring tool id"
    assert mon.get_events(tid) == 0


@pytest.mark.skipif(not MONITORING, reason="3.12+: a probe reaches frames already running")
def test_a_running_frame_and_new_calls_each_hit_exactly_once(agent):
    """A loop running when the probe is placed gets it through the original code's events, a loop started
    after through the swapped copy; every pass of each is seen once: no pass missed, none seen twice."""
    old, new = shapes.Looper("old"), shapes.Looper("new")
    threads = [threading.Thread(target=old.run)]
    threads[0].start()
    try:
        wait_for(lambda: old.ticks > 0, timeout=10, what="the loop to run")
        original = shapes.Looper.run.__code__
        probe = _log(agent, "loop", "{self.name}:{self.ticks}", rate=5000)
        assert shapes.Looper.run.__code__ is not original
        threads.append(threading.Thread(target=new.run))
        threads[1].start()

        seen = {"old": [], "new": []}

        def enough():
            for m in _messages(agent):  # each call drains what arrived since the last
                name, tick = m.split(":")
                seen[name.strip("'")].append(int(tick))  # a str renders with its quotes
            return min(map(len, seen.values())) >= 30

        wait_for(enough, timeout=20, what="30 passes of each loop")
    finally:
        old.stop.set(), new.stop.set()
        for t in threads:
            t.join()
    for name, ticks in seen.items():
        assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), (name, ticks)  # each pass once, in order
    assert seen["new"][0] == 0  # the new call from its first pass
    assert agent.get_probe(probe.id).rate_limited == 0


@pytest.mark.skipif(not MONITORING, reason="3.12+: sys.monitoring alone is the fallback there")
def test_monitoring_alone_when_asked_for_or_without_the_bytecode_package(tmp_path):
    """PROBEBOOK_BACKEND=monitoring (or no `bytecode` package) keeps the code object and probes through
    `sys.monitoring` alone: the same probe fires the same way, only slower per hit."""
    import subprocess

    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        import shapes
        from probebook.agent import Agent
        original = shapes.plain.__code__
        agent = Agent()
        agent.add_probe({"kind": "log", "where": sys.argv[2], "template": "a={a}"})
        shapes.plain(2, 3)
        print(agent.stats()["backend"], shapes.plain.__code__ is original,
              [e.message for e in agent.drain_events() if e.kind == "log"])
        agent.close()
    """)
    env = {**os.environ, "PROBEBOOK_BACKEND": "monitoring"}
    done = subprocess.run([sys.executable, "-c", script, os.path.dirname(shapes.__file__), where("plain")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(None, 2)[:2] == ["sys.monitoring", "True"], done.stdout
    assert done.stdout.rstrip().endswith("'a=2']"), done.stdout
