"""Helpers of the lab tests: the lab's processes as /proc sees them, and the lab command."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Dict, List, Optional

__all__ = ["lab_processes", "lab_cli"]


def lab_processes(state_dir: str) -> List[str]:
    """Command lines of live processes that belong to the lab in `state_dir` (its path is in each)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                zombie = fh.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if state_dir in cmd and not zombie:
            found.append(f"{pid}: {cmd[:160]}")
    return found


def lab_cli(*args: str, env: Optional[Dict[str, str]] = None) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "probebook.cli", "lab", *args], capture_output=True, text=True,
                          timeout=120, env=env)
