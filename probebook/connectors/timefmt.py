"""Times as the telemetry sources write them, read into epoch seconds, and `since` windows.

>>> parse_time("2024-05-01T10:00:00.123456789Z")
1714557600.123456
>>> parse_time("0001-01-01T00:00:00Z") is None      # Go's zero time: "not set"
True
>>> parse_time(1714557600123)                       # milliseconds, by magnitude
1714557600.123
>>> window_start("10m", now=1000.0)
400.0
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from typing import Any, Optional, Union

from probebook.errors import SpecError, TelemetryInputError
from probebook.protocol.spec import parse_duration


__all__ = ["parse_time", "window_start", "rfc3339", "Since"]

Since = Union[str, float, int, _dt.datetime, None]

_ISO = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?\s*(Z|z|[+-]\d\d:?\d\d)?$")


def parse_time(value: Any) -> Optional[float]:
    """Epoch seconds from a number (s, ms, us or ns, told apart by size), an RFC 3339 / ISO 8601
    string (no zone: UTC) or a datetime; None for blanks, Go's zero time and what cannot be read."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        if v != v or v <= 0:
            return None
        for bound, scale in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):  # 1e11 s is the year 5138
            if v >= bound:
                return v / scale
        return v
    if isinstance(value, _dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)).timestamp()
    if not isinstance(value, str):
        return None
    m = _ISO.match(value.strip())
    if not m:
        try:
            return parse_time(float(value))
        except ValueError:
            return None
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    if year <= 1:
        return None
    second = int(m.group(6) or 0)
    frac = (m.group(7) or "0")[:6].ljust(6, "0")
    zone = m.group(8)
    tz = _dt.timezone.utc
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        stamp = _dt.datetime(year, month, day, hour, minute, min(second, 59), int(frac), tzinfo=tz)
    except ValueError:
        return None
    return stamp.timestamp()


def window_start(since: Since, now: Optional[float] = None, what: str = "since") -> Optional[float]:
    """Epoch seconds where a window starting at `since` begins: a duration (``"10m"``, ``"2h"``, or
    a number of seconds ago), an ISO time, or a datetime. None stays None (no lower bound)."""
    if since is None:
        return None
    now = time.time() if now is None else now
    if isinstance(since, _dt.datetime):
        return parse_time(since)
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        if since <= 0:
            raise TelemetryInputError(f"{what}: expected a positive number of seconds, got {since!r}")
        return now - float(since)
    if isinstance(since, str):
        text = since.strip()
        if _ISO.match(text):
            return parse_time(text)
        try:
            return now - parse_duration(text, what)
        except SpecError:
            pass
    raise TelemetryInputError(f"{what}: expected a duration such as 10m or 2h, or an ISO time such as "
                              f"2024-05-01T10:00:00Z, got {since!r}")


def rfc3339(ts: float) -> str:
    """``2024-05-01T10:00:00.123Z`` (what Prometheus, Alertmanager and Loki accept)."""
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
