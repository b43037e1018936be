"""One lab for the whole session: real services under the agent, real Prometheus and Alertmanager
(where installed), on free loopback ports; stopped at the end, and nothing may be left running."""

from __future__ import annotations

import os
import sys
from typing import Iterator, List

import pytest

from probebook.lab.runner import Lab, LabOptions

WINDOW = "5s"  # short alert windows keep the suite fast; the demo uses 10s


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


def lab_cli(*args: str, env=None):
    import subprocess

    return subprocess.run([sys.executable, "-m", "probebook.lab.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    state = str(tmp_path_factory.mktemp("lab") / "state")
    lab = Lab(LabOptions(state_dir=state, window=WINDOW))
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
    left = lab_processes(state)
    assert not left, f"lab down left processes behind: {left}"
