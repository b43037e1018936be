"""The probe-spec format: what users write in files, notebooks and HTTP requests, and `where`
parsed (`parse_where`); finding the code a `where` names is the agent's.

>>> spec = ProbeSpec.from_dict({"kind": "log", "where": "shop/cart.py:42",
...                             "template": "total={cart.total}", "ttl": "5m"})
>>> spec.kind, spec.ttl
('log', 300.0)
>>> ProbeSpec.from_dict({"kind": "log", "where": "a.py:1", "template": "x", "ttl": "banana"})
Traceback (most recent call last):
...
probebook.errors.SpecError: ttl: expected a duration such as 30s, 15m, 1h or a number of seconds, got 'banana'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from probebook.errors import LocationError, SpecError

from .kinds import FUNCTION_KINDS, KINDS, METRIC_TYPES

__all__ = ["KINDS", "METRIC_TYPES", "FUNCTION_KINDS", "MetricSpec", "ProbeSpec", "Where", "parse_duration",
           "parse_rate", "parse_where", "plain_text"]

_KEYS = ("id", "kind", "where", "when", "template", "capture", "metric", "ttl", "rate", "max_hits", "limits", "name",
         "pending")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$")
_RATE_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
               "h": 3600.0, "hour": 3600.0}


@dataclass(frozen=True)
class Where:
    """A parsed location: a file line, or a module function."""

    file: Optional[str] = None
    line: Optional[int] = None
    module: Optional[str] = None
    qualname: Optional[str] = None

    @property
    def is_line(self) -> bool:
        return self.file is not None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.is_line else f"{self.module}:{self.qualname}"


def plain_text(text: str, most: int = 1024) -> bool:
    """Is `text` a path or a name as a person writes one: at most `most` characters, no control
    characters (``/etc/passwd\\x00.py`` is not)?

    >>> plain_text("shop/cart.py:12"), plain_text("x\\x00.py:3")
    (True, False)
    """
    return len(text) <= most and not any(ord(c) < 32 or ord(c) == 127 for c in text)


def parse_where(text: object) -> Where:
    """Parse ``file.py:LINE`` or ``package.module:Qual.name``; raise `LocationError` otherwise.

    >>> parse_where("app/orders.py:42")
    Where(file='app/orders.py', line=42, module=None, qualname=None)
    >>> str(parse_where("shop.cart:Cart.total"))
    'shop.cart:Cart.total'
    """
    usage = "where: expected 'path/to/file.py:LINE' or 'package.module:Qualified.name'"
    if not isinstance(text, str) or ":" not in text:
        raise LocationError(f"{usage}, got {text!r}")
    if not plain_text(text):
        raise LocationError(f"where: a path or name has no control characters and is under 1024 characters, "
                            f"got {text[:80]!r}")
    left, _, right = text.strip().rpartition(":")
    if not left or not right:
        raise LocationError(f"{usage}, got {text!r}")
    if left.endswith(".py"):
        if not right.isdigit() or int(right) < 1:
            raise LocationError(f"where: line must be a positive whole number, got {right!r} in {text!r}")
        return Where(file=left.replace("\\", "/"), line=int(right))
    parts = left.split(".") + right.split(".")
    if not all(p.isidentifier() or p == "<locals>" for p in parts):
        raise LocationError(f"{usage}, got {text!r}")
    return Where(module=left, qualname=right)


def parse_duration(value: Any, field_name: str = "ttl") -> float:
    """Seconds from ``30``, ``"30s"``, ``"500ms"``, ``"15m"``, ``"1h"``, ``"1d"``.

    >>> parse_duration("500ms"), parse_duration("15m")
    (0.5, 900.0)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = _DURATION.match(value) if isinstance(value, str) else None
    if not m or float(m.group(1)) <= 0:
        raise SpecError(
            f"{field_name}: expected a duration such as 30s, 15m, 1h or a number of seconds, got {value!r}",
            field_name,
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_rate(value: Any, field_name: str = "rate") -> float:
    """Events per second from ``5``, ``"5/s"``, ``"10/m"``, ``"60/h"``.

    >>> parse_rate("60/m")
    1.0
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = _RATE.match(value) if isinstance(value, str) else None
    if not m or float(m.group(1)) <= 0:
        raise SpecError(f"{field_name}: expected events per second such as 5, '5/s' or '10/m', got {value!r}",
                        field_name)
    return float(m.group(1)) / _RATE_UNITS[m.group(2)]


@dataclass(frozen=True)
class MetricSpec:
    """``{"name": "cart_total", "type": "histogram", "value": "cart.total"}``."""

    name: str
    type: str = "count"
    value: Optional[str] = None
    unit: str = ""

    @classmethod
    def from_value(cls, raw: Any, probe_where: str) -> "MetricSpec":
        if raw is None:
            return cls(name=_default_metric_name(probe_where))
        if isinstance(raw, str):
            return cls(name=raw)
        if not isinstance(raw, Mapping):
            raise SpecError(f"metric: expected an object like {{'name': 'n', 'type': 'count'}}, got {raw!r}", "metric")
        unknown = set(raw) - {"name", "type", "value", "unit"}
        if unknown:
            raise SpecError(f"metric: unknown key {sorted(unknown)[0]!r}; allowed: name, type, value, unit", "metric")
        mtype = raw.get("type", "count")
        if mtype not in METRIC_TYPES:
            raise SpecError(f"metric.type: expected one of {', '.join(METRIC_TYPES)}, got {mtype!r}", "metric.type")
        value = raw.get("value")
        if mtype in ("gauge", "histogram") and not (isinstance(value, str) and value.strip()):
            raise SpecError(f"metric.value: a {mtype} needs an expression to measure, e.g. 'len(queue)'",
                            "metric.value")
        if value is not None and not isinstance(value, str):
            raise SpecError(f"metric.value: expected an expression string, got {value!r}", "metric.value")
        name = raw.get("name") or _default_metric_name(probe_where)
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_.:]*$", name):
            raise SpecError(f"metric.name: expected letters, digits, '_', '.', ':', got {name!r}", "metric.name")
        unit = raw.get("unit", "ms" if mtype == "duration" else "")
        return cls(name=name, type=mtype, value=value, unit=str(unit))


def _default_metric_name(where: str) -> str:
    return "probe_" + re.sub(r"[^A-Za-z0-9_]+", "_", where).strip("_")


@dataclass(frozen=True)
class ProbeSpec:
    """A validated probe request. Build one with `from_dict`; `to_dict` gives the plain form back."""

    kind: str
    where: str
    when: Optional[str] = None
    template: Optional[str] = None
    capture: Tuple[str, ...] = ()
    metric: Optional[MetricSpec] = None
    ttl: Optional[float] = None  # None: the agent's default
    rate: Optional[float] = None  # None: the agent's default for the kind
    max_hits: Optional[int] = None
    limits: Dict[str, int] = field(default_factory=dict)
    id: Optional[str] = None
    name: Optional[str] = None  # span name; defaults to the function's qualified name
    pending: bool = False  # a file no module has loaded and none on sys.path has: wait for it anyway

    @property
    def function_level(self) -> bool:
        """Placed on a whole function (enter/exit) rather than at one line."""
        return self.kind in FUNCTION_KINDS or (self.metric is not None and self.metric.type == "duration")

    @classmethod
    def from_dict(cls, raw: Any) -> "ProbeSpec":
        if isinstance(raw, ProbeSpec):
            return raw
        if not isinstance(raw, Mapping):
            raise SpecError(f"probe spec: expected an object with keys {', '.join(_KEYS)}, got {type(raw).__name__}")
        unknown = [k for k in raw if k not in _KEYS]
        if unknown:
            raise SpecError(f"{unknown[0]}: unknown key; allowed: {', '.join(_KEYS)}", str(unknown[0]))
        kind = raw.get("kind")
        if kind not in KINDS:
            raise SpecError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}", "kind")
        where = raw.get("where")
        if not isinstance(where, str) or not where.strip():
            raise SpecError("where: expected 'path/to/file.py:LINE' or 'package.module:Qualified.name'", "where")
        when = _opt_str(raw, "when")
        template = _opt_str(raw, "template")
        if kind == "log" and not template:
            raise SpecError("template: a log probe needs a template such as 'total={cart.total}'", "template")
        capture = raw.get("capture", ())
        if isinstance(capture, str):
            capture = [c.strip() for c in capture.split(",") if c.strip()]
        if not isinstance(capture, (list, tuple)) or not all(isinstance(c, str) and c.strip() for c in capture):
            raise SpecError("capture: expected a list of expressions such as ['cart.total', 'user.id']", "capture")
        metric = MetricSpec.from_value(raw.get("metric"), where) if kind == "metric" else None
        if kind != "metric" and raw.get("metric") is not None:
            raise SpecError(f"metric: only metric probes take 'metric', this one is {kind!r}", "metric")
        ttl = parse_duration(raw["ttl"], "ttl") if raw.get("ttl") is not None else None
        rate = parse_rate(raw["rate"], "rate") if raw.get("rate") is not None else None
        max_hits = raw.get("max_hits")
        if max_hits is not None and (isinstance(max_hits, bool) or not isinstance(max_hits, int) or max_hits < 1):
            raise SpecError(f"max_hits: expected a whole number >= 1, got {max_hits!r}", "max_hits")
        limits = raw.get("limits") or {}
        if not isinstance(limits, Mapping):
            raise SpecError(f"limits: expected an object such as {{'max_depth': 3}}, got {limits!r}", "limits")
        pid = raw.get("id")
        if pid is not None and (not isinstance(pid, str) or not re.match(r"^[A-Za-z0-9_.:-]{1,64}$", pid)):
            raise SpecError(f"id: expected 1-64 letters, digits, '_', '-', '.', ':', got {pid!r}", "id")
        pending = raw.get("pending", False)
        if not isinstance(pending, bool):
            raise SpecError(f"pending: expected true or false, got {pending!r}", "pending")
        return cls(
            kind=kind, where=where.strip(), when=when, template=template,
            capture=tuple(c.strip() for c in capture), metric=metric, ttl=ttl, rate=rate,
            max_hits=max_hits, limits=dict(limits), id=pid, name=_opt_str(raw, "name"), pending=pending,
        )

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"kind": self.kind, "where": self.where}
        for key in ("id", "when", "template", "ttl", "rate", "max_hits", "name"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.capture:
            out["capture"] = list(self.capture)
        if self.metric is not None:
            out["metric"] = {k: v for k, v in vars(self.metric).items() if v not in (None, "")}
        if self.limits:
            out["limits"] = dict(self.limits)
        if self.pending:
            out["pending"] = True
        return out


def _opt_str(raw: Mapping[str, Any], key: str) -> Optional[str]:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecError(f"{key}: expected a string, got {value!r}", key)
    return value.strip() or None
