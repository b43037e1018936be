"""Port files, as both sides read them: a process that ended without removing its own file left a
stale one (killed, or SIGKILLed by a supervisor while it exited), and whoever sees it may remove it.

>>> import os
>>> process_gone(os.getpid()), process_gone(2 ** 22 + 1)
(False, True)
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

__all__ = ["process_gone", "remove_own", "remove_ended_children"]


def process_gone(pid: Any) -> bool:
    """True when process `pid` of this machine has ended, or is a zombie its parent has not reaped yet;
    False while it runs, or when it belongs to someone else (not ours to judge)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def remove_own(path: Optional[str], pid: int) -> None:
    """Remove the port file at `path` if process `pid` wrote it (a forked child never removes its parent's)."""
    if not path or os.getpid() != pid:
        return
    try:
        with open(path, encoding="utf-8") as fh:
            if json.load(fh).get("pid") != pid:
                return
        os.remove(path)
    except (OSError, ValueError, AttributeError):
        pass


def remove_ended_children(directory: str, ppid: int) -> None:
    """Remove the files in `directory` of the children of `ppid` that ended without removing their own (a
    worker its supervisor SIGKILLed at shutdown, as Django's autoreloader does to its child)."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".json")]
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as fh:
                info = json.load(fh)
            if isinstance(info, dict) and info.get("ppid") == ppid and process_gone(info.get("pid")):
                os.remove(path)
        except (OSError, ValueError):
            continue
