"""A service's configuration and the shared feature flags, re-read when their files change.

The lab (or an operator) edits ``config/<service>.json`` and ``config/flags.json``; services pick the
change up within half a second, without a restart, as with a config map or a flag service.

A flag is ``{"enabled": true, "percent": 30, "countries": ["DE"], "users": [17]}``: on for the listed
users, else for users in the listed countries (all when none are listed) whose stable bucket
(crc32 of flag and user id, 0-99) is under `percent`.

>>> Flag.parse({"enabled": True, "percent": 100}).on_for(7, "DE")
True
>>> Flag.parse({"enabled": True, "percent": 0, "users": [7]}).on_for(7, "DE")
True
"""

from __future__ import annotations

import json
import os
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from .observe import METRICS

__all__ = ["Flag", "Settings", "WatchedJson", "bucket_of"]

_CHECK_EVERY = 0.5


def bucket_of(flag: str, user_id: int) -> int:
    """A user's stable rollout bucket for a flag, 0-99."""
    return zlib.crc32(f"{flag}:{user_id}".encode()) % 100


@dataclass(frozen=True)
class Flag:
    name: str = ""
    enabled: bool = False
    percent: int = 100
    countries: Tuple[str, ...] = ()
    users: Tuple[int, ...] = ()

    @classmethod
    def parse(cls, raw: Any, name: str = "") -> "Flag":
        if isinstance(raw, bool):
            return cls(name, raw)
        if not isinstance(raw, Mapping):
            return cls(name)
        return cls(name, bool(raw.get("enabled", False)), int(raw.get("percent", 100)),
                   tuple(raw.get("countries", ())), tuple(int(u) for u in raw.get("users", ())))

    def on_for(self, user_id: Optional[int] = None, country: str = "") -> bool:
        if not self.enabled:
            return False
        if user_id is not None and user_id in self.users:
            return True
        if self.countries and country not in self.countries:
            return False
        if user_id is None:
            return self.percent >= 100
        return bucket_of(self.name, user_id) < self.percent


class WatchedJson:
    """A JSON object from a file, re-read when its mtime changes (checked at most every 0.5 s)."""

    def __init__(self, path: str, label: str) -> None:
        self.path, self.label = path, label
        self._lock = threading.Lock()
        self._mtime: Optional[float] = None
        self._checked = 0.0
        self._data: Dict[str, Any] = {}
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> Dict[str, Any]:
        now = time.monotonic()
        if not force and now - self._checked < _CHECK_EVERY:
            return self._data
        with self._lock:
            self._checked = now
            try:
                mtime = os.stat(self.path).st_mtime_ns
            except OSError:
                return self._data
            if mtime != self._mtime:
                try:
                    with open(self.path, encoding="utf-8") as fh:
                        data = json.load(fh)
                except (OSError, ValueError):  # mid-write or broken: keep the last good version
                    return self._data
                if isinstance(data, dict):
                    self._data, self._mtime = data, mtime
                    METRICS.config_reloads.labels(self.label).inc()
        return self._data


class Settings:
    """``settings.get("provider_timeout_s")`` and ``settings.flag("new_checkout_flow").on_for(user)``."""

    def __init__(self, config_path: str, flags_path: str, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self._config = WatchedJson(config_path, "config")
        self._flags = WatchedJson(flags_path, "flags")

    def get(self, key: str, default: Any = None) -> Any:
        data = self._config.refresh()
        return data[key] if key in data else self.defaults.get(key, default)

    def flag(self, name: str) -> Flag:
        return Flag.parse(self._flags.refresh().get(name), name)
