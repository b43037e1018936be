"""Bad input gets one line that names what to fix, and `lab down` still cleans everything up.

The tests that start labs of their own come first, before the session's shared lab exists."""

from __future__ import annotations

import os
import socket

import pytest

from labtools import lab_cli, lab_processes
from probebook.errors import LabError
from probebook.lab.runner import Lab, LabOptions
from probebook.lab.scenarios import find_scenario
from probebook.lab.verify import wait_for_alert


def _one_line(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    return lines[0]


def _scenario_folder(root, name: str, scenario: str, truth: str = None) -> str:
    folder = root / name
    folder.mkdir()
    (folder / "scenario.toml").write_text(scenario)
    truth = truth or ('verdict = "proven"\nservice = "orders"\nlocus = "x"\nfault_type = "x"\ntrigger = "x"\n'
                      'mitigation = "x"\ncheck = "x"\n[evidence]\nservice = "orders"\n'
                      'probe = { kind = "exception", where = "shop.pricing:order_total" }\nproof = { absent = true }\n')
    (folder / "ground_truth.toml").write_text(truth)
    return str(folder)


def test_malformed_scenario_files_are_named(tmp_path):
    _scenario_folder(tmp_path, "broken", 'title = "unterminated\n')
    out = lab_cli("scenarios", "--scenarios", str(tmp_path))
    assert out.returncode == 1
    line = _one_line(out.stderr)
    assert "broken/scenario.toml: not valid TOML" in line
    os.rename(tmp_path / "broken", tmp_path / "gone")
    (tmp_path / "gone" / "scenario.toml").write_text('title = "t"\n[[inject]]\naction = "explode"\n')
    out = lab_cli("scenarios", "--scenarios", str(tmp_path))
    assert "unknown action 'explode'; use one of deploy" in _one_line(out.stderr)


def test_a_fix_in_the_ground_truth_is_checked_and_a_folder_without_one_loads_as_before(tmp_path):
    base = ('verdict = "proven"\nservice = "orders"\nlocus = "x"\nfault_type = "x"\ntrigger = "x"\n'
            'mitigation = "x"\ncheck = "x"\n[evidence]\nservice = "orders"\n'
            'probe = { kind = "exception", where = "shop.pricing:order_total" }\nproof = { absent = true }\n')
    old = find_scenario(_scenario_folder(tmp_path, "old", 'title = "t"\n', base))
    assert old.truth.fix == () and old.truth.fix_service == ""
    good = find_scenario(_scenario_folder(tmp_path, "good", 'title = "t"\n', base + '[fix]\nservice = "gateway"\n'
                                          'edits = [{ file = "shop/a.py", find = "x", replace = "y" }]\n'))
    assert [(e.file, e.find, e.replace) for e in good.truth.fix] == [("shop/a.py", "x", "y")]
    assert good.truth.fix_service == "gateway"
    for name, fix, said in (("nokey", '[fix]\nedit = []\n', "[fix]: unknown key 'edit'; allowed: edits, service"),
                            ("empty", '[fix]\nedits = []\n', "[fix]: each edit needs file, find and replace strings"),
                            ("who", '[fix]\nservice = "db"\nedits = [{ file = "a", find = "b", replace = "c" }]\n',
                             "[fix]: unknown service 'db'; the lab runs")):
        (tmp_path / "each" / name).mkdir(parents=True)  # a folder of scenarios each: one error at a time
        _scenario_folder(tmp_path / "each" / name, name, 'title = "t"\n', base + fix)
        out = lab_cli("scenarios", "--scenarios", str(tmp_path / "each" / name))
        assert out.returncode == 1 and said in _one_line(out.stderr), out.stderr


def test_unknown_scenario_fails_before_anything_starts(tmp_path):
    state = str(tmp_path / "state")
    out = lab_cli("up", "--scenario", "no-such-thing", "--state-dir", state)
    assert out.returncode == 1
    line = _one_line(out.stderr)
    assert "unknown scenario 'no-such-thing'; known:" in line and "wrong-config" in line
    assert lab_processes(state) == []


def test_port_taken_is_named_and_down_cleans_up(tmp_path):
    state = str(tmp_path / "state")
    holder = socket.socket()
    base = 0
    for candidate in range(23100, 24000, 10):  # below the ephemeral range; 8 consecutive ports
        try:
            holder.bind(("127.0.0.1", candidate + 3))
            base = candidate
            break
        except OSError:
            continue
    holder.listen()
    try:
        out = lab_cli("up", "--base-port", str(base), "--state-dir", state, "--rps", "4")
    finally:
        holder.close()
    assert out.returncode == 1
    assert f"port {base + 3} (for orders) is already in use" in _one_line(out.stderr)
    down = lab_cli("down", "--state-dir", state)
    assert down.returncode == 0
    assert lab_processes(state) == []


def test_without_prometheus_the_lab_says_so_and_its_health_check_sees_the_symptom(tmp_path):
    state = str(tmp_path / "state")
    env = {**os.environ, "PATH": str(tmp_path)}  # no prometheus, no alertmanager on this PATH
    out = lab_cli("up", "--state-dir", state, "--rps", "12", env=env)
    try:
        assert out.returncode == 0, out.stderr
        assert "skipped: prometheus and prometheus-alertmanager not installed" in out.stdout
        status = lab_cli("status", "--state-dir", state, env=env)
        assert "monitoring skipped" in status.stdout and "alerts firing (lab health check)" in status.stdout
        lab = Lab.attach(state)
        scenario = find_scenario("control-external")
        lab_cli("inject", "control-external", "--state-dir", state, env=env)
        assert wait_for_alert(lab, scenario, present=True, timeout=40) is not None, \
            "the lab health check did not see HighErrorRate"
        assert lab_cli("recover", "--state-dir", state, env=env).returncode == 0
        assert wait_for_alert(lab, scenario, present=False, timeout=30) is not None, \
            "HighErrorRate still fires after recover"
    finally:
        lab_cli("down", "--state-dir", state, env=env)
    assert lab_processes(state) == []
    # a lab that is down stays down: one line for each command, nothing revived
    for args in (["status"], ["inject", "control-external"], ["recover"]):
        out = lab_cli(*args, "--state-dir", state, env=env)
        assert out.returncode == 1 and _one_line(out.stderr) == \
            f"probebook lab {args[0]}: error: the lab in {state} is down; start it with: probebook lab up", out.stderr
    assert lab_processes(state) == []


def test_a_lab_already_running_is_not_started_twice(lab):
    with pytest.raises(LabError, match="already running"):
        Lab(LabOptions(state_dir=lab.state)).up()


def test_unknown_scenario_on_a_running_lab(lab):
    out = lab_cli("inject", "nope", "--state-dir", lab.state)
    assert out.returncode == 1 and "unknown scenario 'nope'" in _one_line(out.stderr)
    assert lab.manifest["scenario"] is None


def test_a_release_that_fails_to_start_is_named_and_the_old_one_keeps_serving(lab, tmp_path):
    folder = _scenario_folder(tmp_path, "broken-release", (
        'title = "a release with a syntax error"\n[[inject]]\naction = "deploy"\nservice = "orders"\n'
        'version = "9.9.9"\nedits = [{ file = "shop/orders.py", find = "class PriceCache:", '
        'replace = "class PriceCache(:" }]\n'))
    out = lab_cli("inject", folder, "--state-dir", lab.state)
    assert out.returncode == 1
    line = _one_line(out.stderr)
    assert "orders 9.9.9 failed to start (exited)" in line and "SyntaxError" in line and "orders.out" in line
    assert "probebook lab recover" in line
    fresh = Lab.attach(lab.state)
    assert fresh.service("orders")["version"] == "2.7.1" and fresh.procs.alive("orders")
    assert lab_cli("recover", "--state-dir", lab.state).returncode == 0
    lab._manifest = None  # re-read what the CLI wrote
    assert lab.manifest["scenario"] is None


def test_a_sql_step_waits_for_a_database_its_service_keeps_locked(tmp_path):
    """Under an incident a service may hold its database's write lock for long; the step waits and runs
    once, from where it stopped; a lock that outlasts the wait, or a wrong statement, is said in a line."""
    import sqlite3
    import threading

    from probebook.lab.actions import run_sql

    path = str(tmp_path / "shop.db")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (n INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # a busy service holding the write lock
    release = threading.Timer(1.0, lambda: holder.execute("COMMIT"))
    release.start()
    run_sql(path, "shop", ["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"], wait_s=10.0, busy_s=0.2)
    release.join()
    assert [r[0] for r in holder.execute("SELECT n FROM t ORDER BY n")] == [1, 2]  # each once
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(LabError, match="stayed locked for 0.5s"):
        run_sql(path, "shop", ["INSERT INTO t VALUES (3)"], wait_s=0.5, busy_s=0.2)
    holder.execute("COMMIT")
    with pytest.raises(LabError, match="fix the statement in the scenario"):
        run_sql(path, "shop", ["INSERT INTO nowhere VALUES (1)"], wait_s=0.5, busy_s=0.2)
    holder.close()
