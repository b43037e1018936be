"""Doing a scenario's steps to the running shop, and undoing them.

Deploys, config changes, flag flips, restarts, migrations and data imports are real (a process
restarted on another release, a file the services re-read, SQL run on a database, a job on the
queue) and go into the change log. Traffic changes, the provider's behaviour, a killed process and
a full disk are things that happen *to* the shop: they are not in the change log.

Disk full is the kernel's own ENOSPC: today's receipts file on the archive volume is replaced by a
link to /dev/full, so the worker's writes fail exactly as on a full disk; nothing else is touched.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sqlite3
import time
from typing import Any, Dict, List

from probebook.errors import LabError

from .scenarios import Action, Scenario, find_scenario
from .topology import SERVICES

__all__ = ["inject", "recover", "perform", "merge_json"]

_DB_OWNER = {"inventory": "inventory", "orders": "orders", "queue": "worker"}
LOCK_WAIT_S = 60.0  # how long a scenario's SQL step waits for a database its service keeps locked


def merge_json(lab: Any, rel: str, changes: Dict[str, Any]) -> Dict[str, Any]:
    """Set `changes` in the lab's JSON file `rel` (a key mapped to None is removed: the service's
    default again); answer what those keys were before."""
    current = lab.read_json(rel) or {}
    before = {k: current.get(k) for k in changes}
    for key, value in changes.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    lab.write_json(rel, current)
    return before


def _archive_files(lab: Any) -> List[str]:
    today = datetime.date.today()
    return [lab.path("volumes", "archive", (today + datetime.timedelta(days=d)).strftime("receipts-%Y%m%d.jsonl"))
            for d in (0, 1)]


def free_space(lab: Any) -> List[str]:
    """Give the full archive volume its space back (undo `disk_full`): the files freed, none where it was not full."""
    freed = []
    for path in _archive_files(lab):
        if os.path.islink(path):
            os.remove(path)
            if os.path.exists(path + ".before-full"):
                os.replace(path + ".before-full", path)
            freed.append(path)
    return freed


def run_sql(path: str, db: str, statements: List[str], wait_s: float = LOCK_WAIT_S, busy_s: float = 10.0) -> None:
    """Run `statements` one by one (each commits on its own). A busy service may hold the database's
    write lock for long (its scans, under an incident): a statement that finds it locked is tried again,
    from where it stopped, for up to `wait_s`; any other error is the statement's."""
    deadline, done = time.monotonic() + wait_s, 0
    while True:
        conn = sqlite3.connect(path, timeout=busy_s, isolation_level=None)
        try:
            for statement in statements[done:]:
                conn.execute(statement)
                done += 1
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise LabError(f"sql on {db}: {exc}; fix the statement in the scenario") from None
            if time.monotonic() >= deadline:
                raise LabError(f"sql on {db}: the database stayed locked for {wait_s:g}s (its service holds the "
                               f"write lock); run the step again when the service is less busy") from None
        except sqlite3.Error as exc:
            raise LabError(f"sql on {db}: {exc}; fix the statement in the scenario") from None
        finally:
            conn.close()


def perform(lab: Any, action: Action) -> str:
    """Do one step; answer a line saying what was done."""
    f, kind = action.fields, action.kind
    by = str(f.get("by", "lab"))
    if kind == "deploy":
        old = lab.deploy(f["service"], str(f["version"]), action.edits, action.code_dir)
        summary = f.get("summary") or f"{f['service']} {f['version']} deployed"
        lab.changes.record("deploy", f["service"], summary, by=by, from_version=old, to_version=str(f["version"]))
        return f"deployed {f['service']} {old} -> {f['version']}"
    if kind == "config":
        before = merge_json(lab, f"config/{f['service']}.json", dict(f["set"]))
        summary = f.get("summary") or f"{f['service']} config: " + ", ".join(f"{k}={v}" for k, v in f["set"].items())
        lab.changes.record("config", f["service"], summary, by=by, set=dict(f["set"]), before=before)
        return f"config of {f['service']}: {json.dumps(f['set'])}"
    if kind == "flag":
        before = merge_json(lab, "config/flags.json", {f["name"]: f["value"]})
        summary = f.get("summary") or f"flag {f['name']} set to {json.dumps(f['value'])}"
        lab.changes.record("flag", "gateway", summary, by=by, flag=f["name"], value=f["value"], before=before[f["name"]])
        return f"flag {f['name']} = {json.dumps(f['value'])}"
    if kind == "restart":
        lab.restart_service(f["service"])
        lab.changes.record("restart", f["service"], f.get("summary") or f"{f['service']} restarted", by=by)
        return f"restarted {f['service']}"
    if kind == "sql":
        path = lab.path("data", f"{f['db']}.db")
        if not os.path.exists(path):
            raise LabError(f"sql: no database {f['db']!r}; the lab has {', '.join(_DB_OWNER)}")
        run_sql(path, f["db"], list(f["statements"]))
        if f.get("change"):
            lab.changes.record("migration", f.get("service") or _DB_OWNER[f["db"]], str(f["change"]), by=by)
        return f"ran {len(f['statements'])} statement(s) on {f['db']}"
    if kind == "job":
        now = time.time()
        conn = sqlite3.connect(lab.path("data", "queue.db"), timeout=10.0, isolation_level=None)
        try:
            conn.execute("INSERT INTO jobs (kind, payload, status, available_at, created) VALUES (?, ?, 'queued', ?, ?)",
                         (f["kind"], json.dumps(f["payload"]), now, now))
        finally:
            conn.close()
        if f.get("change"):
            lab.changes.record("data", f.get("service") or "worker", str(f["change"]), by=by)
        return f"queued a {f['kind']} job"
    if kind == "load":
        merge_json(lab, "load.json", dict(f["set"]))
        return f"traffic: {json.dumps(f['set'])}"
    if kind == "external":
        merge_json(lab, "external/bank.json", dict(f["set"]))
        return f"card provider: {json.dumps(f['set'])}"
    if kind == "kill":
        lab.procs.kill(f["service"], signal.SIGKILL)
        return f"killed {f['service']}"
    if kind == "disk_full":
        for path in _archive_files(lab):
            if os.path.lexists(path):
                os.replace(path, path + ".before-full")
            os.symlink("/dev/full", path)
        return "archive volume full (writes get ENOSPC)"
    if kind == "disk_free":
        free_space(lab)
        return "archive volume has space again"
    raise LabError(f"unknown action {kind!r}")  # the scenario loader refuses these first


def inject(lab: Any, scenario: Scenario) -> List[str]:
    """Do the scenario's inject steps; it stays active until `recover`."""
    active = lab.manifest.get("scenario")
    if active:
        raise LabError(f"scenario {active!r} is active; run probebook lab recover first")
    lab.manifest["scenario"] = scenario.id
    lab.manifest["scenario_path"] = scenario.path
    lab.save_manifest()
    try:
        return [perform(lab, action) for action in scenario.inject]
    except LabError as exc:
        raise type(exc)(f"{exc}; the scenario stays active: probebook lab recover undoes what was done") from None


def recover(lab: Any) -> List[str]:
    """Back to the baseline: roll back deploys, revert config and flags, reset traffic and the provider,
    run the active scenario's own recover steps, start whatever is down."""
    done: List[str] = []
    path = lab.manifest.get("scenario_path")
    scenario = find_scenario(path) if path else None
    for svc in SERVICES:
        running = lab.service(svc.name)["version"]
        if running != svc.version:
            lab.deploy(svc.name, svc.version)
            lab.changes.record("rollback", svc.name, f"{svc.name} rolled back to {svc.version}", by="lab",
                               from_version=running, to_version=svc.version)
            done.append(f"rolled back {svc.name} {running} -> {svc.version}")
    for rel in [f"config/{s.name}.json" for s in SERVICES] + ["config/flags.json"]:
        if lab.read_json(rel):
            lab.write_json(rel, {})
            target = os.path.basename(rel)[:-5]
            lab.changes.record("flag" if target == "flags" else "config", "gateway" if target == "flags" else target,
                               f"{target} reverted to defaults", by="lab")
            done.append(f"reverted {rel}")
    lab.write_json("load.json", {"rps": lab.options.rps})
    lab.write_json("external/bank.json", {})
    if scenario is not None:
        done += [perform(lab, action) for action in scenario.recover]
    for svc in SERVICES:
        if not lab.procs.alive(svc.name):
            lab.restart_service(svc.name)
            done.append(f"started {svc.name}")
    lab.manifest["scenario"] = None
    lab.manifest["scenario_path"] = None
    lab.save_manifest()
    return done
