"""The lab: bring the shop up, say how it is, inject a scenario, recover, take it down.

>>> lab = Lab(LabOptions(state_dir="/tmp/probebook-lab"))       # doctest: +SKIP
>>> lab.up(scenario="wrong-config")                            # doctest: +SKIP
>>> lab.firing()                                               # doctest: +SKIP
[Firing(name='HighErrorRate', labels={'service': 'gateway', 'route': '/api/checkout'}, ...)]
>>> lab.recover(); lab.down()                                  # doctest: +SKIP

Everything it starts runs in its own process group and is recorded in ``<state>/pids.json`` as it
starts; `down` stops every recorded group, so it cleans up after a failed `up` or a crash too.
The state directory holds the manifest (``lab.json``), configs, logs, data, releases and the
change log; docs/lab.md has the layout.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from probebook.errors import LabError, StartError

from .alerts import Firing
from .changes import ChangeLog
from .health import health_check
from .loadgen import DEFAULT_PROFILE
from .monitoring import (alertmanager_argv, alertmanager_firing, missing_binaries, prometheus_argv, ready,
                         write_configs)
from .procs import ProcessTable, free_port, port_free, tail
from .releases import Edit, build_release
from .seed import seed_data
from .topology import SERVICES, ServiceDef, service_def

__all__ = ["Lab", "LabOptions", "default_state_dir", "read_manifest"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT = 20.0


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.environ.get("PROBEBOOK_LAB_DIR") or os.path.join(base, "probebook", "lab")


def read_manifest(state_dir: str) -> Dict[str, Any]:
    """The manifest (``lab.json``) of the lab running in `state_dir`; `LabError` when there is none."""
    try:
        with open(os.path.join(state_dir, "lab.json"), encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        raise LabError(f"no lab in {state_dir}; start one with: probebook lab up") from None
    if not isinstance(manifest, dict):
        raise LabError(f"{state_dir}/lab.json is not a lab manifest; start the lab again: probebook lab up")
    return manifest


@dataclass
class LabOptions:
    state_dir: str = field(default_factory=default_state_dir)
    seed: int = 7
    rps: float = 16.0
    scrape: str = "1s"  # Prometheus scrape and rule evaluation interval
    window: str = "10s"  # rate window of the alert rules
    base_port: int = 0  # 0: free ports; else services get base_port, base_port + 1, ...
    monitoring: bool = True  # use Prometheus and Alertmanager where installed
    scenario_dirs: List[str] = field(default_factory=list)


class Lab:
    def __init__(self, options: Optional[LabOptions] = None) -> None:
        self.options = options or LabOptions()
        self.state = os.path.abspath(self.options.state_dir)
        self.procs = ProcessTable(self.state)
        self.changes = ChangeLog(self.path("changes.jsonl"))
        self._manifest: Optional[Dict[str, Any]] = None

    @classmethod
    def attach(cls, state_dir: Optional[str] = None) -> "Lab":
        """The lab running in `state_dir`, with the options it was started with."""
        state = os.path.abspath(state_dir or default_state_dir())
        manifest = read_manifest(state)
        if manifest.get("down"):  # stopped: status, inject and recover must not revive half a lab
            raise LabError(f"the lab in {state} is down; start it with: probebook lab up")
        lab = cls(LabOptions(**{**manifest["options"], "state_dir": state}))
        lab._manifest = manifest
        return lab

    # ---------------------------------------------------------------- paths and manifest
    def path(self, *parts: str) -> str:
        return os.path.join(self.state, *parts)

    @property
    def manifest(self) -> Dict[str, Any]:
        if self._manifest is None:
            self._manifest = Lab.attach(self.state).manifest
        return self._manifest

    def save_manifest(self) -> None:
        tmp = self.path("lab.json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.manifest, fh, indent=1)
        os.replace(tmp, self.path("lab.json"))

    def service(self, name: str) -> Dict[str, Any]:
        service_def(name)
        return self.manifest["services"][name]

    def url(self, name: str) -> str:
        return str(self.service(name)["url"])

    @property
    def token(self) -> str:
        with open(self.path("agent-tokens"), encoding="utf-8") as fh:
            return fh.read().split(":", 1)[1].strip()

    def agent(self, name: str) -> Any:
        """An `AgentClient` for the agent inside service `name`."""
        from probebook.connectors.agent import AgentClient

        entry = self.service(name)
        if not entry.get("agent_url"):
            raise LabError(f"{name} runs without the agent (an outside service); probes cannot go there")
        return AgentClient(entry["agent_url"], self.token, name=name)

    # ---------------------------------------------------------------- up
    def running(self) -> List[str]:
        return [n for n in self.procs.names() if self.procs.alive(n)]

    def up(self, scenario: Optional[str] = None) -> Dict[str, Any]:
        """Start everything; on any failure stop what was started and raise a one-line `StartError`."""
        if self.running():
            raise LabError(f"a lab is already running in {self.state} ({', '.join(self.running())}); "
                           f"run: probebook lab down")
        chosen = None
        if scenario:
            from .scenarios import find_scenario

            chosen = find_scenario(scenario, self.options.scenario_dirs)  # bad ids fail before anything starts
        if os.path.isdir(self.state) and os.listdir(self.state):
            if not any(os.path.exists(self.path(f)) for f in ("lab.json", "pids.json")):
                raise LabError(f"{self.state} is not empty and holds no lab; choose another --state-dir")
            shutil.rmtree(self.state)
        for sub in ("run", "config", "logs", "data", "external", "releases", "volumes/archive"):
            os.makedirs(self.path(sub), exist_ok=True)
        self.procs = ProcessTable(self.state)
        started = time.time()
        try:
            self._prepare()
            self.save_manifest()
            self._start_all()
        except BaseException:
            self.procs.stop_all()
            raise
        self.manifest["up_seconds"] = round(time.time() - started, 2)
        self.save_manifest()
        if chosen is not None:
            from .actions import inject

            inject(self, chosen)
        return self.manifest

    def _prepare(self) -> None:
        opts = self.options
        catalog = seed_data(self.path("data"), seed=opts.seed)
        with open(self.path("agent-tokens"), "w", encoding="utf-8") as fh:
            fh.write(f"lab:{secrets.token_urlsafe(24)}\n")
        os.chmod(self.path("agent-tokens"), 0o600)
        self.write_json("config/flags.json", {})
        self.write_json("external/bank.json", {})
        self.write_json("load.json", {"rps": opts.rps})
        ports = self._ports()
        services = {}
        for svc in SERVICES:
            self.write_json(f"config/{svc.name}.json", {})
            metrics_port = ports.get(f"{svc.name} metrics", 0)
            services[svc.name] = {"port": ports[svc.name], "url": f"http://127.0.0.1:{ports[svc.name]}",
                                  "metrics_port": metrics_port,
                                  "metrics_url": f"http://127.0.0.1:{metrics_port}" if metrics_port else None,
                                  "version": svc.version, "probed": svc.probed, "role": svc.role,
                                  "release": build_release(self.path("releases"), svc.name, svc.version),
                                  "log": self.path("logs", f"{svc.name}.jsonl"),
                                  "out": self.path("logs", f"{svc.name}.out"), "agent_url": None}
        self._manifest = {"state_dir": self.state, "started": time.time(), "options": asdict(opts),
                          "services": services, "users": len(catalog.users), "products": len(catalog.skus),
                          "token_file": self.path("agent-tokens"), "changes": self.changes.path,
                          "monitoring": {"prometheus": None, "alertmanager": None, "skipped": None},
                          "loadgen_stats": self.path("loadgen.json"), "scenario": None}
        for svc in (s for s in SERVICES if s.probed):  # the provider's deploys are not ours to see
            self.changes.record("deploy", svc.name, f"{svc.name} {svc.version} deployed", by="lab",
                                from_version=None, to_version=svc.version)

    def _ports(self) -> Dict[str, int]:
        base, ports, taken = self.options.base_port, {}, set()
        names = [s.name for s in SERVICES] + [f"{s.name} metrics" for s in SERVICES if s.probed] + [
            "prometheus", "alertmanager"]
        for i, name in enumerate(names):
            if base:
                port = base + i
                if not port_free(port):
                    raise StartError(f"port {port} (for {name}) is already in use; pick another --base-port "
                                     f"or stop what listens there")
            else:
                port = free_port()
                while port in taken:
                    port = free_port()
            taken.add(port)
            ports[name] = port
        self._monitor_ports = {k: ports[k] for k in ("prometheus", "alertmanager")}
        return ports

    def write_json(self, rel: str, data: Any) -> None:
        path = self.path(rel)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, path)

    def read_json(self, rel: str) -> Any:
        with open(self.path(rel), encoding="utf-8") as fh:
            return json.load(fh)

    def _start_all(self) -> None:
        self._start_monitoring()
        for svc in SERVICES:
            self.spawn_service(svc.name)
        with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
            list(pool.map(self.wait_service, [s.name for s in SERVICES]))
        self._wait_monitoring()
        self.procs.spawn("loadgen", [sys.executable, "-m", "probebook.lab.loadgen", "--state", self.state,
                                     "--gateway", self.url("gateway"), "--seed", str(self.options.seed)],
                         self.path("logs", "loadgen.out"), env=self._env(None))

    # ---------------------------------------------------------------- services
    def _env(self, release: Optional[str]) -> Dict[str, str]:
        env = dict(os.environ)
        paths = ([release] if release else []) + [REPO_ROOT]
        env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def spawn_service(self, name: str, slot: Optional[str] = None) -> int:
        """Start `name` as recorded in the manifest; `slot` names the process entry (default `name`)."""
        svc: ServiceDef = service_def(name)
        entry = self.service(name)
        spec_path = self.path("run", f"{name}.json")
        peers = {p: self.url(p) for p in svc.peers}
        self.write_json(f"run/{name}.json", {
            "name": name, "version": entry["version"], "port": entry["port"], "peers": peers,
            "config": self.path("config", f"{name}.json"), "flags": self.path("config", "flags.json"),
            "log": entry["log"], "data_dir": self.path("data"), "metrics_port": entry["metrics_port"]})
        command = [sys.executable, "-m", "shop", svc.name, "--spec", spec_path]
        if svc.probed:
            command = [sys.executable, "-m", "probebook.cli", "agent", "run", "--name", name, "--port", "0",
                       "--port-file", self.path("run", f"{name}.agent.json"), "--token-file", self.path("agent-tokens"),
                       "--audit", self.path("logs", f"{name}.audit.jsonl"), "--", *command]
        if slot is None:  # a fresh start: the port must be free (a handoff shares it on purpose)
            deadline = time.monotonic() + 3.0  # a process just stopped may hold it for a moment
            while not port_free(int(entry["port"])) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not port_free(int(entry["port"])):
                raise StartError(f"port {entry['port']} (for {name}) is already in use; stop what listens there "
                                 f"or start the lab with another --base-port")
        return self.procs.spawn(slot or name, command, entry["out"], env=self._env(entry["release"]),
                                cwd=entry["release"])

    def wait_service(self, name: str, pid: Optional[int] = None, slot: Optional[str] = None,
                     timeout: float = START_TIMEOUT) -> None:
        """Wait until process `pid` of `name` answers /health and its agent has said where it listens."""
        entry = self.service(name)
        slot = slot or name
        pid = pid or self.procs.pid(slot)
        port_file = self.path("run", f"{name}.agent.json")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.procs.alive(slot):
                break
            agent = _read_json_file(port_file) if entry["probed"] else {"pid": pid}
            if agent.get("pid") == pid and _health_pid(entry["url"]) == pid:
                entry["agent_url"] = agent.get("url")
                return
            time.sleep(0.05)
        why = tail(entry["out"]) or "no output"
        state = "exited" if not self.procs.alive(slot) else f"did not answer within {timeout:g}s"
        raise StartError(f"{name} {entry['version']} failed to start ({state}): {why} -- see {entry['out']}")

    def restart_service(self, name: str, version: Optional[str] = None, release: Optional[str] = None) -> None:
        """Start `name` again (on `version` from `release`, if given). A running instance hands over:
        the new process binds the same port, and the old one drains and stops once the new one answers."""
        entry = self.service(name)
        previous = (entry["version"], entry["release"])
        if version:
            entry["version"], entry["release"] = version, release
        handoff = self.procs.alive(name)
        slot = f"{name}~next" if handoff else name
        if not handoff:
            self.procs.stop(name)
        try:
            pid = self.spawn_service(name, slot if handoff else None)
            self.wait_service(name, pid, slot)
        except BaseException:
            self.procs.stop(slot)
            if handoff:  # the old release keeps serving
                entry["version"], entry["release"] = previous
            raise
        finally:
            self.save_manifest()
        if handoff:
            self.procs.stop(name)
            self.procs.rename(slot, name)
            self.save_manifest()

    def deploy(self, name: str, version: str, edits: Sequence[Edit] = (), code: Optional[str] = None) -> str:
        """Restart `name` on `version` (the baseline plus `edits` and the `code` folder); answer the old version."""
        old = str(self.service(name)["version"])
        release = build_release(self.path("releases"), name, version, edits, code)
        self.restart_service(name, version, release)
        return old

    # ---------------------------------------------------------------- monitoring
    def _start_monitoring(self) -> None:
        mon = self.manifest["monitoring"]
        missing = missing_binaries()
        if not self.options.monitoring:
            mon["skipped"] = "Prometheus and Alertmanager not started (--no-monitoring); the lab's own health check evaluates the alert rules"
            return
        if missing:
            mon["skipped"] = (f"{' and '.join(missing)} not installed (apt-get install -y prometheus "
                              f"prometheus-alertmanager); the lab's own health check evaluates the alert rules")
            return
        targets = {s.name: self.service(s.name)["metrics_port"] for s in SERVICES if s.probed}
        am_port, prom_port = self._monitor_ports["alertmanager"], self._monitor_ports["prometheus"]
        paths = write_configs(self.path("monitoring"), targets, am_port, self.options.scrape, self.options.window)
        self.procs.spawn("alertmanager", alertmanager_argv(paths, self.path("monitoring", "am-data"), am_port),
                         self.path("logs", "alertmanager.out"))
        self.procs.spawn("prometheus", prometheus_argv(paths, self.path("monitoring", "prom-data"), prom_port),
                         self.path("logs", "prometheus.out"))
        mon["prometheus"], mon["alertmanager"] = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}"

    def _wait_monitoring(self) -> None:
        mon = self.manifest["monitoring"]
        for name in ("prometheus", "alertmanager"):
            url = mon.get(name)
            if not url:
                continue
            deadline = time.monotonic() + START_TIMEOUT
            while not ready(url):
                if not self.procs.alive(name) or time.monotonic() > deadline:
                    out = self.path("logs", f"{name}.out")
                    raise StartError(f"{name} failed to start: {tail(out) or 'no output'} -- see {out}")
                time.sleep(0.1)

    # ---------------------------------------------------------------- what is going on
    def firing(self, window: float = 3.0) -> List[Firing]:
        """Alerts firing now: from Alertmanager when it runs, else from the lab's own health check."""
        am = self.manifest["monitoring"].get("alertmanager")
        if am:
            return alertmanager_firing(am)
        targets = {n: e["metrics_url"] for n, e in self.manifest["services"].items() if e["metrics_url"]}
        return health_check(targets, window)

    def status(self) -> Dict[str, Any]:
        services = {}
        for name, entry in self.manifest["services"].items():
            services[name] = {"version": entry["version"], "running": self.procs.alive(name),
                              "url": entry["url"], "agent_url": entry["agent_url"], "probed": entry["probed"]}
        try:
            users = self.read_json("loadgen.json")
        except (OSError, ValueError):
            users = None
        return {"state_dir": self.state, "scenario": self.manifest.get("scenario"), "services": services,
                "loadgen": {"running": self.procs.alive("loadgen"), "last": users},
                "monitoring": self.manifest["monitoring"]}

    # ---------------------------------------------------------------- down
    def down(self) -> List[str]:
        """Stop everything recorded in the state directory; answer what was running."""
        if not os.path.isdir(self.state):
            return []
        stopped = self.procs.stop_all()
        if os.path.exists(self.path("lab.json")):
            try:
                self._manifest = self._manifest or read_manifest(self.state)
            except LabError:
                return stopped  # not a manifest of ours: nothing to mark
            self.manifest.update(scenario=None, down=True)
            self.save_manifest()
        return stopped


def _health_pid(url: str) -> Optional[int]:
    try:
        with urllib.request.urlopen(url + "/health", timeout=0.5) as resp:
            return int(json.loads(resp.read()).get("pid", 0)) or None
    except (OSError, ValueError):
        return None


def _read_json_file(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
