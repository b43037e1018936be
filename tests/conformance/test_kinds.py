"""Each probe kind emits what a user expects, on every Python."""

import asyncio
import contextlib
import importlib
import os
import sys
import textwrap
import time

import pytest
import shapes
from conformance_support import events, where

from probebook.agent import ExpressionError, SpecError


def test_snapshot_has_arguments_locals_expressions_and_stack(agent):
    agent.add_probe({"kind": "snapshot", "where": where("inner_fail"), "capture": ["qty * 2", "per_item"]})
    with pytest.raises(ZeroDivisionError):
        shapes.deep_fail({"qty": 0, "password": "hunter2"})
    (snap,) = events(agent, "snapshot")
    assert snap.arguments["qty"]["value"] == 0
    assert snap.locals["per_item"]["value"] == 100
    assert snap.expressions["qty * 2"]["value"] == 0
    functions = [f["function"] for f in snap.stack]
    assert functions[0].endswith("_inner_fail") and functions[1].endswith("deep_fail")
    assert snap.line > 0 and snap.file.endswith("shapes.py")


@pytest.mark.parametrize("condition", ["a > 5", "a + 0 > 5", "abs(a) > 5 and b == 0"])
def test_condition_filters_hits(agent, condition):
    """`a > 5` an inline guard may decide (<= 3.11); the others only the full evaluator can: a false
    condition that let the hit through would show here whichever decides."""
    from probebook.agent.instrument.guards import inline_guard

    guarded = inline_guard(condition, shapes.plain.__code__) is not None
    assert guarded == (condition == "a > 5")  # the two others reach the evaluator on every Python
    probe = agent.add_probe({"kind": "log", "where": where("plain"), "template": "a={a}", "when": condition})
    for a in range(10):
        shapes.plain(a, 0)
    assert [e.message for e in events(agent, "log")] == [f"a={a}" for a in range(6, 10)]
    info = agent.get_probe(probe.id)  # whichever decided, every hit is accounted for
    assert (info.filtered, info.hits, info.emitted) == (6, 4, 4), info
    # the code is rebuilt when another probe joins the function; the count goes on from where it was
    other = agent.add_probe({"kind": "metric", "where": "shapes:plain", "metric": {"name": "n"}})
    for a in range(10):
        shapes.plain(a, 0)
    info = agent.get_probe(probe.id)
    assert (info.filtered, info.hits, agent.get_probe(other.id).hits) == (12, 8, 10), info


def test_metric_count_gauge_and_duration(agent):
    agent.add_probe({"kind": "metric", "where": where("plain"), "metric": {"name": "calls"}})
    agent.add_probe({"kind": "metric", "where": where("method"),
                     "metric": {"name": "cart_size", "type": "gauge", "value": "len(self.items)"}})
    agent.add_probe({"kind": "metric", "where": "shapes:slow", "metric": {"name": "slow_ms", "type": "duration"}})
    shapes.plain(1, 2)
    shapes.plain(1, 2)
    shapes.Cart([1, 2, 3]).total()
    shapes.slow(20)
    points = events(agent, "metric")
    by_name = {}
    for p in points:
        by_name.setdefault(p.name, []).append(p)
    assert [p.value for p in by_name["calls"]] == [1.0, 1.0]
    assert by_name["cart_size"][0].value == 3.0 and by_name["cart_size"][0].metric_type == "gauge"
    (dur,) = by_name["slow_ms"]
    assert dur.metric_type == "duration" and 15 <= dur.value < 1000 and dur.unit == "ms"
    assert dur.cpu_ms < 10, "a call that sleeps uses next to no CPU"


def test_duration_tells_work_from_waiting(agent):
    agent.add_probe({"kind": "metric", "where": "shapes:busy", "metric": {"name": "busy_ms", "type": "duration"}})
    before = time.thread_time()
    shapes.busy(300_000)
    spent_ms = (time.thread_time() - before) * 1000
    (dur,) = events(agent, "metric")
    assert spent_ms > 1
    assert 0.5 * spent_ms <= dur.cpu_ms <= spent_ms + 1, (dur.cpu_ms, spent_ms)
    assert dur.cpu_ms <= dur.value + 1


def test_duration_of_async_function_and_errors(agent):
    agent.add_probe({"kind": "metric", "where": "shapes:fetch", "metric": {"name": "fetch_ms", "type": "duration"}})
    agent.add_probe({"kind": "metric", "where": "shapes:fails", "metric": {"name": "fails_ms", "type": "duration"}})
    assert asyncio.run(shapes.fetch(2)) == 3
    with pytest.raises(ZeroDivisionError):
        shapes.fails(0)
    points = {p.name: p for p in events(agent, "metric")}
    assert points["fetch_ms"].error is False
    assert points["fails_ms"].error is True


def test_span_nests_and_carries_trace_context(agent):
    agent.add_probe({"kind": "span", "where": "shapes:fact"})
    assert shapes.fact(3) == 6
    spans = events(agent, "span")
    assert len(spans) == 3
    assert len({s.trace_id for s in spans}) == 1
    inner, middle, outer = spans  # innermost call finishes first
    assert inner.parent_span_id == middle.span_id and middle.parent_span_id == outer.span_id
    assert outer.duration_ns >= inner.duration_ns > 0


def test_exception_probe_captures_every_frame(agent):
    agent.add_probe({"kind": "exception", "where": "shapes:deep_fail"})
    with pytest.raises(ZeroDivisionError):
        shapes.deep_fail({"qty": 0})
    assert shapes.deep_fail({"qty": 4}) == 25.0  # no event when nothing is raised
    (exc,) = events(agent, "exception")
    assert exc.exc_type == "ZeroDivisionError"
    names = [f["function"].split(".")[-1] for f in exc.frames]
    assert names == ["deep_fail", "_inner_fail"]
    assert exc.frames[1]["locals"]["qty"]["value"] == 0
    assert exc.frames[1]["locals"]["per_item"]["value"] == 100


def test_redaction_on_by_default_and_changeable(agent):
    agent.add_probe({"kind": "snapshot", "where": where("inner_fail"), "rate": 100})
    with pytest.raises(ZeroDivisionError):
        shapes.deep_fail({"qty": 0})
    (snap,) = events(agent, "snapshot")
    assert snap.locals["per_item"]["value"] == 100
    agent.set_redaction(add_identifiers=["per_item"])
    with pytest.raises(ZeroDivisionError):
        shapes.deep_fail({"qty": 0})
    (snap,) = events(agent, "snapshot")
    assert snap.locals["per_item"].get("not_captured") == "redacted"
    with pytest.raises(ExpressionError, match="redacted"):
        agent.add_probe({"kind": "log", "where": where("plain"), "template": "{password}"})


@contextlib.contextmanager
def _module_on_path(tmp_path, name, body):
    """`name`.py with `body` importable from `tmp_path`, forgotten afterwards."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    sys.path.insert(0, str(tmp_path))
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_probe_waits_for_module_import(agent, tmp_path):
    with _module_on_path(tmp_path, "late_module_pb", """
        def handler(x):
            y = x + 1
            return y
    """):
        probe = agent.add_probe({"kind": "log", "where": "late_module_pb.py:3", "template": "x={x}"})
        assert probe.status == "pending"
        late = importlib.import_module("late_module_pb")
        deadline = time.time() + 5
        while agent.get_probe(probe.id).status != "installed" and time.time() < deadline:
            time.sleep(0.05)
        assert agent.get_probe(probe.id).status == "installed"
        late.handler(41)
        assert [e.message for e in events(agent, "log")] == ["x=41"]


def test_a_probe_waits_for_a_slow_import_to_finish(agent, tmp_path):
    """A module is in sys.modules while its code still runs (a web app importing its dependencies):
    the pending probe is resolved once the module's code has run, not half-way (before, it ended in
    `error: ... holds no code`), and before the import returns (before, the housekeeping thread's
    next tick: a pre-fork worker served its first requests unprobed)."""
    with _module_on_path(tmp_path, "slow_module_pb", """
        import time
        time.sleep(0.5)


        def handler(x):
            y = x + 1
            return y
    """):
        probe = agent.add_probe({"kind": "log", "where": "slow_module_pb.py:7", "template": "x={x}"})
        assert probe.status == "pending"
        assert any("ImportWatch" in repr(f) for f in sys.meta_path)
        slow = importlib.import_module("slow_module_pb")
        # installed by the time the import returns: a worker serving at once is probed from its first call
        assert agent.get_probe(probe.id).status == "installed", agent.get_probe(probe.id)
        slow.handler(41)
        assert [e.message for e in events(agent, "log")] == ["x=41"]
        assert not any("ImportWatch" in repr(f) for f in sys.meta_path)  # nothing pending: gone
        assert type(slow.__loader__).__name__ == "SourceFileLoader"  # the module's own loader, untouched


class _ChainingFinder:
    """Another tool's import hook on sys.meta_path (ddtrace's module watchdog does this): it hands back the
    file loader wrapped in a loader of its own; with `on_instance`, that loader sets its `exec_module` on
    the instance, as ddtrace 4's `_ImportHookChainedLoader` does."""

    on_instance = False

    class Loader:
        def __init__(self, inner, on_instance=False):
            self.inner = inner
            if on_instance:
                self.exec_module = self._exec_module

        def _exec_module(self, module):
            self.inner.exec_module(module)

        def create_module(self, spec):
            return self.inner.create_module(spec)

        exec_module = _exec_module

    def find_spec(self, name, path=None, target=None):
        if not name.endswith("_chained_pb"):
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = self.Loader(spec.loader, self.on_instance)
        return spec


@pytest.mark.parametrize("on_instance", [False, True], ids=["exec_module on the class", "on the instance"])
def test_a_probe_is_installed_when_another_tool_chains_the_loader(agent, tmp_path, on_instance):
    """With another tool's finder wrapping the file loader, the pending probe is still installed by
    the time the import returns (before, only at the housekeeping thread's next tick; with the loader's
    `exec_module` set on its instance, ddtrace 4's way, it was taken for our own wrapper and left alone)."""
    finder = _ChainingFinder()
    finder.on_instance = on_instance
    sys.meta_path.insert(0, finder)
    try:
        with _module_on_path(tmp_path, "mod_chained_pb", """
            def handler(x):
                y = x + 1
                return y
        """):
            probe = agent.add_probe({"kind": "log", "where": "mod_chained_pb.py:3", "template": "x={x}"})
            mod = importlib.import_module("mod_chained_pb")
            assert type(mod.__loader__) is _ChainingFinder.Loader  # the other tool's loader stays in place
            assert agent.get_probe(probe.id).status == "installed", agent.get_probe(probe.id)
            mod.handler(41)
            assert [e.message for e in events(agent, "log")] == ["x=41"]
    finally:
        sys.meta_path.remove(finder)


def test_the_first_install_made_by_an_import_does_not_deadlock(tmp_path):
    """In a fresh process the first install creates the backend, which imports its own modules
    (`bytecode` on <= 3.11) while the import watch is on sys.meta_path: the watch must not re-enter
    from those imports (a uvicorn worker deadlocked there, holding the backend's lock)."""
    import subprocess

    (tmp_path / "first_pb.py").write_text("def f(x):\n    return x + 1\n")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from probebook.agent import Agent
        agent = Agent()
        agent.add_probe({{"kind": "log", "where": "first_pb.py:2", "template": "x={{x}}"}})
        import first_pb
        first_pb.f(1)
        print([e.message for e in agent.drain_events() if e.kind == "log"])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "['x=1']", out.stderr[-2000:]


@pytest.mark.parametrize("spec,field", [
    ({"kind": "banana", "where": "a.py:1"}, "kind"),
    ({"kind": "log", "where": "a.py:1", "template": "x", "ttl": "banana"}, "ttl"),
    ({"kind": "log", "where": "nowhere", "template": "x"}, "where"),
    ({"kind": "log", "where": "a.py:1", "template": "x", "colour": "red"}, "colour"),
    ({"kind": "log", "where": "a.py:1"}, "template"),
    ({"kind": "metric", "where": "a.py:1", "metric": {"type": "gauge"}}, "metric.value"),
    ({"kind": "log", "where": "a.py:1", "template": "{x.__class__}"}, "template"),
    ({"kind": "log", "where": "a.py:1", "template": "x", "when": "os.system('id')"}, "when"),
    ({"kind": "log", "where": "a.py:1", "template": "x", "ttl": "100h"}, "ttl"),
    ({"kind": "log", "where": "a.py:1", "template": "x", "max_hits": 0}, "max_hits"),
])
def test_bad_input_is_a_one_line_error_naming_the_field(agent, spec, field):
    before = [f.__code__ for f in (shapes.plain,)]
    with pytest.raises(SpecError) as err:
        agent.add_probe(spec)
    message = str(err.value)
    assert "\n" not in message and message.startswith(field.split(".")[0])
    assert agent.probes() == []
    assert [f.__code__ for f in (shapes.plain,)] == before


def test_ambiguous_file_lists_candidates(agent, tmp_path):
    for sub in ("one", "two"):
        d = tmp_path / sub
        d.mkdir()
        (d / "ambig_pb.py").write_text("def f():\n    return 1\n")
    sys.path[:0] = [str(tmp_path / "one")]
    try:
        import ambig_pb as a  # noqa: F401
        sys.modules["ambig_pb_two"] = importlib.util.module_from_spec(
            importlib.util.spec_from_file_location("ambig_pb_two", str(tmp_path / "two" / "ambig_pb.py")))
        sys.modules["ambig_pb_two"].__spec__.loader.exec_module(sys.modules["ambig_pb_two"])
        with pytest.raises(SpecError) as err:
            agent.add_probe({"kind": "log", "where": "ambig_pb.py:2", "template": "x"})
        assert "matches 2 loaded files" in str(err.value)
        assert os.path.join("one", "ambig_pb.py") in str(err.value)
    finally:
        sys.path.remove(str(tmp_path / "one"))
        sys.modules.pop("ambig_pb", None)
        sys.modules.pop("ambig_pb_two", None)
