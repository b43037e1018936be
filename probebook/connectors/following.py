"""What a client that follows a service's processes keeps, whatever carries it (HTTP port files or a
Redis registry): the probes placed through it that are still live, so that an instance that joins gets
them, and which instances are supervisors.

>>> live = LiveProbes()
>>> live.add("f-1", {"kind": "log", "where": "a.py:3", "template": "x"}, ends=1000.0)
>>> placed = []
>>> live.join("w-2", held={"f-9"}, place=lambda body: placed.append(body["ttl"]), now=400.0)
'instance w-2 joined; live probes: 0 inherited from its parent, 1 placed'
>>> placed
[600.0]
>>> supervisors([{"id": "m", "pid": 10, "ppid": 1}, {"id": "w", "pid": 11, "ppid": 10}], key="id")
{'m'}
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Set, Tuple

__all__ = ["LiveProbes", "supervisors"]


def supervisors(infos: Sequence[Mapping[str, Any]], key: str = "url") -> Set[str]:
    """The `key` of each instance whose process is the parent of another instance's (gunicorn's
    master, uvicorn's supervisor, Django's autoreloader): asked like the others, counted apart."""
    parents = {i.get("ppid") for i in infos if isinstance(i.get("ppid"), int)}
    return {str(i[key]) for i in infos if isinstance(i.get("pid"), int) and i["pid"] in parents}


class LiveProbes:
    """fleet id -> (the spec sent, when it ends, wall clock). Thread-safe."""

    def __init__(self) -> None:
        self._live: Dict[str, Tuple[Dict[str, Any], float]] = {}
        self._lock = threading.Lock()

    def add(self, fleet_id: str, body: Dict[str, Any], ends: float) -> None:
        with self._lock:
            self._live[fleet_id] = (dict(body), ends)

    def placed(self, probe: Any, body: Dict[str, Any]) -> None:
        """A `FleetProbe` just placed with spec `body`: kept until the longest TTL an instance gave it
        (the agents' own when the spec named none); not kept when no instance took it."""
        ends = [r.probe.expires_in for r in probe.results.values() if r.ok and r.probe is not None]
        if ends:
            self.add(probe.id, body, time.time() + max(ends))

    def drop(self, fleet_id: Optional[str] = None) -> None:
        """Forget one probe (removed), or every one (None)."""
        with self._lock:
            if fleet_id is None:
                self._live.clear()
            else:
                self._live.pop(fleet_id, None)

    def ids(self) -> Set[str]:
        with self._lock:
            return set(self._live)

    def join(self, label: str, held: Set[str], place: Callable[[Dict[str, Any]], Any],
             now: Optional[float] = None, where: str = "") -> str:
        """A new instance: each live probe it does not hold yet (a forked worker inherits its parent's)
        is placed with what is left of its TTL by `place(spec)`, which raises on refusal. In words."""
        now = time.time() if now is None else now
        with self._lock:
            for fid in [f for f, (_, ends) in self._live.items() if ends <= now]:
                del self._live[fid]
            live = list(self._live.items())
        placed, failed = 0, []
        for fid, (body, ends) in live:
            if fid in held:
                continue
            try:
                place({**body, "id": fid, "ttl": max(1.0, round(ends - now, 3))})
                placed += 1
            except Exception as exc:  # noqa: BLE001 - one refusal is said; the other probes still go on
                failed.append(f"{fid}: {exc}")
        inherited = len(held & {fid for fid, _ in live})
        line = (f"instance {label} joined{f' ({where})' if where else ''}; live probes: {inherited} inherited "
                f"from its parent, {placed} placed")
        return line + (f"; refused: {'; '.join(failed)[:300]}" if failed else "")
