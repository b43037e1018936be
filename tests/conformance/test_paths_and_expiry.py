"""A file path that exists nowhere is refused unless the spec says `pending: true`; an expired probe
stops firing at once and leaves the list after a grace, its `expired` event kept (issue 14, parts 4-5)."""

import contextlib
import importlib
import sys
import textwrap
import time

import pytest
from conformance_support import events

from probebook.agent import AgentLimits, LocationError, ProbeNotFound, SpecError
from probebook.agent.bootstrap import _live_specs
from probebook.protocol.spec import ProbeSpec


@contextlib.contextmanager
def _on_path(tmp_path, relpath, body):
    """`relpath` (e.g. ``pkg_pb/deep_pb/mod_pb.py``) with `body` under `tmp_path`, which is on sys.path
    while the block runs; every module it made importable is forgotten afterwards."""
    target = tmp_path / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    for parent in target.relative_to(tmp_path).parents:
        if str(parent) != ".":
            (tmp_path / parent / "__init__.py").touch()
    target.write_text(textwrap.dedent(body))
    sys.path.insert(0, str(tmp_path))
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        top = relpath.split("/")[0].rsplit(".py", 1)[0]
        for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            del sys.modules[name]


def _wait_for(check, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def test_a_path_that_exists_nowhere_is_refused_with_the_closest_loaded_files(agent, tmp_path):
    with _on_path(tmp_path, "typo_target_pb.py", "def handler(x):\n    return x + 1\n"):
        importlib.import_module("typo_target_pb")
        with pytest.raises(LocationError) as err:
            agent.add_probe({"kind": "log", "where": "typo_targt_pb.py:2", "template": "x={x}"})
    message = str(err.value)
    assert "\n" not in message
    assert "typo_targt_pb.py is in no loaded module and no file on sys.path ends with it" in message
    assert "closest loaded: typo_target_pb.py" in message  # the file meant, named
    assert "pending: true" in message  # and what to do if the path is right
    assert err.value.field == "where"
    assert agent.probes() == []  # nothing half-added
    assert [e for e in agent.drain_events() if e.kind == "status"] == []


def test_pending_true_holds_a_path_found_nowhere_and_installs_it_when_it_appears(agent, tmp_path):
    probe = agent.add_probe({"kind": "log", "where": "not_yet_written_pb.py:2", "template": "x={x}",
                             "pending": True})
    assert probe.status == "pending"
    assert "no file ending with it was found on sys.path (pending: true)" in probe.reason
    assert probe.spec["pending"] is True
    with _on_path(tmp_path, "not_yet_written_pb.py", "def handler(x):\n    return x + 1\n"):
        late = importlib.import_module("not_yet_written_pb")
        assert _wait_for(lambda: agent.get_probe(probe.id).status == "installed"), agent.get_probe(probe.id)
        late.handler(41)
        assert [e.message for e in events(agent, "log")] == ["x=41"]


def test_a_file_on_disk_not_imported_yet_waits_without_pending(agent, tmp_path):
    """Code not imported yet is the reason pending exists: a file deep in a package on sys.path is
    found on disk, and the probe waits for it (by a suffix of its path, as for loaded files)."""
    with _on_path(tmp_path, "outer_pb/inner_pb/lazy_pb.py", "def handler(x):\n    y = x * 2\n    return y\n"):
        probe = agent.add_probe({"kind": "log", "where": "inner_pb/lazy_pb.py:3", "template": "y={y}"})
        assert probe.status == "pending"
        assert probe.reason == "waiting for inner_pb/lazy_pb.py to be imported"
        lazy = importlib.import_module("outer_pb.inner_pb.lazy_pb")
        assert agent.get_probe(probe.id).status == "installed"
        lazy.handler(4)
        assert [e.message for e in events(agent, "log")] == ["y=8"]


def test_a_module_name_not_imported_still_waits(agent):
    """Only file paths are looked for on disk; `module:function` waits as before (finding a dotted
    module without importing its packages would run their code)."""
    probe = agent.add_probe({"kind": "span", "where": "no_such_pkg_pb.mod:handler"})
    assert probe.status == "pending"
    assert probe.reason == "waiting for no_such_pkg_pb.mod to be imported"


def test_pending_must_be_true_or_false():
    with pytest.raises(SpecError, match=r"pending: expected true or false, got 'yes'"):
        ProbeSpec.from_dict({"kind": "log", "where": "a.py:1", "template": "x", "pending": "yes"})
    assert "pending" not in ProbeSpec.from_dict({"kind": "log", "where": "a.py:1", "template": "x"}).to_dict()


def test_a_forked_worker_holds_its_parents_probes_pending(agent):
    """A gunicorn master holds its workers' probes pending without importing the app; the worker must
    not refuse one whose file it has not imported yet."""
    agent.add_probe({"kind": "log", "where": "some/app_pb.py:3", "template": "x", "pending": True})
    agent.add_probe({"kind": "span", "where": "app_pb:handler"})
    assert [s["pending"] for s in _live_specs(agent)] == [True, True]


def test_an_expired_probe_stops_at_once_and_leaves_the_list_after_the_grace(tmp_path):
    from probebook.agent import Agent

    agent = Agent(AgentLimits(cpu_budget=1.0, expired_grace=1.0))
    try:
        with _on_path(tmp_path, "expiring_pb.py", "def handler(x):\n    y = x + 1\n    return y\n"):
            mod = importlib.import_module("expiring_pb")
            original = mod.handler.__code__
            probe = agent.add_probe({"kind": "log", "where": "expiring_pb.py:3", "template": "y={y}", "ttl": 0.5})
            mod.handler(1)
            assert _wait_for(lambda: agent.get_probe(probe.id).status == "expired", 3.0)
            expired_at = time.monotonic()
            info = agent.get_probe(probe.id)
            assert info.reason == "ttl of 0.5s reached" and info.hits == 1  # still listed, with its counts
            mod.handler(5)  # removed already: no hit
            assert mod.handler.__code__ is original  # the code is restored (3.12+: it was never swapped)
            assert _wait_for(lambda: probe.id not in [p.id for p in agent.probes()], 3.0)
            assert time.monotonic() - expired_at >= 0.7  # listed for the grace, not dropped at once
            with pytest.raises(ProbeNotFound):
                agent.get_probe(probe.id)
            with pytest.raises(ProbeNotFound):
                agent.remove_probe(probe.id)
            seen = agent.drain_events()
            assert [e.message for e in seen if e.kind == "log"] == ["y=2"]
            assert [(e.status, e.reason) for e in seen if e.kind == "status"][-1] == ("expired", "ttl of 0.5s reached")
    finally:
        agent.close()


def test_the_grace_is_ten_seconds_by_default_and_an_operator_may_change_it(agent):
    assert AgentLimits().expired_grace == 10.0
    assert agent.set_limits(expired_grace=60).expired_grace == 60.0
    with pytest.raises(SpecError, match="expired_grace: at most 3600"):
        agent.set_limits(expired_grace=7200)
