"""Processes of the lab: each in its own process group, recorded in ``pids.json`` as it starts, so
that `stop_all` can end everything (children included) even after a crash of the lab command.

A recorded process is only signalled while its start time still matches (``/proc/PID/stat``), so
a reused pid is never hit.

>>> import tempfile
>>> table = ProcessTable(tempfile.mkdtemp())
>>> p = table.spawn("sleeper", ["sleep", "30"], log_path="/dev/null")
>>> table.alive("sleeper")
True
>>> table.stop("sleeper"), table.alive("sleeper")
(True, False)
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from typing import Dict, List, Mapping, Optional, Tuple

__all__ = ["ProcessTable", "port_free", "free_port", "tail"]


def _start_time(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> Tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            low, high = (int(x) for x in fh.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port(low: int = 20000, high: int = 32000) -> int:
    """A free loopback port below the kernel's ephemeral range, so that no outgoing connection can
    take it while its service restarts."""
    eph_low, eph_high = _ephemeral_range()
    candidates = [p for p in range(low, high) if not eph_low <= p <= eph_high]
    for port in random.sample(candidates, min(len(candidates), 200)):
        if port_free(port):
            return port
    with socket.socket() as s:  # everything tried was taken: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: str, lines: int = 1) -> str:
    """The last non-empty lines of a log file, joined with ' | ' (for one-line errors)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


class ProcessTable:
    """Spawn, find and stop the lab's processes; the table lives in ``<state>/pids.json``."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "pids.json")
        self._children: Dict[int, subprocess.Popen] = {}  # ours, to reap

    def _load(self) -> Dict[str, Dict[str, object]]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self, table: Mapping[str, object]) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(table, fh, indent=1)
        os.replace(tmp, self.path)

    def spawn(self, name: str, argv: List[str], log_path: str, env: Optional[Mapping[str, str]] = None,
              cwd: Optional[str] = None) -> int:
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
        self._children[proc.pid] = proc
        table = self._load()
        table[name] = {"pid": proc.pid, "started": _start_time(proc.pid), "argv": argv[:12], "log": log_path}
        self._save(table)
        return proc.pid

    def rename(self, old: str, new: str) -> None:
        table = self._load()
        if old in table:
            table[new] = table.pop(old)
            self._save(table)

    def pid(self, name: str) -> Optional[int]:
        entry = self._load().get(name)
        return int(entry["pid"]) if isinstance(entry, dict) else None  # type: ignore[arg-type]

    def names(self) -> List[str]:
        return list(self._load())

    def alive(self, name: str) -> bool:
        entry = self._load().get(name)
        if not isinstance(entry, dict):
            return False
        pid = int(entry["pid"])  # type: ignore[arg-type]
        self._reap(pid)
        return _start_time(pid) == entry.get("started") and not _is_zombie_or_gone(pid)

    def exit_code(self, name: str) -> Optional[int]:
        """The exit status of a process this object started, once it has ended."""
        pid = self.pid(name)
        proc = self._children.get(pid or -1)
        return proc.poll() if proc is not None else None

    def _reap(self, pid: int) -> None:
        proc = self._children.get(pid)
        if proc is not None:
            proc.poll()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> bool:
        """Signal the process group of `name` (still recorded as running) without forgetting it."""
        entry = self._load().get(name)
        if not isinstance(entry, dict) or not self.alive(name):
            return False
        try:
            os.killpg(int(entry["pid"]), sig)  # type: ignore[arg-type]
        except ProcessLookupError:
            return False
        return True

    def stop(self, name: str, grace: float = 3.0) -> bool:
        """SIGTERM the group, SIGKILL what is left after `grace` seconds; forget the entry."""
        entry = self._load().get(name)
        if not isinstance(entry, dict):
            return False
        pid = int(entry["pid"])  # type: ignore[arg-type]
        was_alive = self.alive(name)
        if was_alive:
            self._signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._group_alive(pid):
                self._reap(pid)
                time.sleep(0.05)
            self._signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and self._group_alive(pid):
                self._reap(pid)
                time.sleep(0.02)
        self._reap(pid)
        self._children.pop(pid, None)
        table = self._load()
        table.pop(name, None)
        self._save(table)
        return was_alive

    def stop_all(self) -> List[str]:
        """Stop every recorded process, newest first; answer the names that were running."""
        stopped = []
        for name in reversed(self.names()):
            if self.stop(name):
                stopped.append(name)
        return stopped

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
        return False
