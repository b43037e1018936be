"""The one dispatcher of control operations, shared by every transport (HTTP, Redis).

`ControlAPI.handle(op, args, who)` runs an operation and answers ``(status, body)`` the way
docs/protocol.md says, so each transport only moves bytes. It never raises: a bad request is
``(4xx, {"error": "<one line>", "field": ...})``, a bug in the agent is ``(500, {"error": ...})``.
Every mutating operation is written to the audit log with who asked and what came of it.

>>> import os, tempfile
>>> from probebook.agent import Agent
>>> from probebook.agent.control.audit import AuditLog
>>> api = ControlAPI(Agent(), AuditLog(os.path.join(tempfile.mkdtemp(), "a.jsonl")), "shop", "i-1")
>>> api.handle("list_probes", {}, "alice")
(200, {'probes': []})
>>> api.handle("remove_probe", {"id": "nope"}, "alice")[0]
404
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import asdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from probebook.errors import AgentUnavailable, ProbebookError, SpecError

from ... import __version__
from .audit import AuditLog
from ..engine import Agent
from ..source import loaded_modules, read_source

__all__ = ["ControlAPI", "OPS", "MUTATING_OPS", "Answer"]

Answer = Tuple[int, Dict[str, Any]]
HealthCheck = Callable[[], Dict[str, Any]]

MUTATING_OPS = frozenset({"add_probe", "remove_probe", "remove_all", "set_redaction", "set_limits"})
# ops that make the agent capture more: refused while the audit log cannot record them
_NEEDS_AUDIT = frozenset({"add_probe", "set_redaction", "set_limits"})
_REDACTION_KEYS = ("add_identifiers", "remove_identifiers", "patterns", "types", "enabled")
MAX_EVENTS = 10_000
MAX_POLL = 30.0
_READS_EVERY = 60.0  # s between two audit lines of one reader's event reads


class _BadArg(SpecError):
    """An argument of an operation is wrong (the field names it)."""


def _only(args: Mapping[str, Any], allowed: Tuple[str, ...], op: str) -> None:
    for key in args:
        if key not in allowed:
            hint = f"allowed: {', '.join(allowed)}" if allowed else "it takes none"
            raise _BadArg(f"{key}: unknown field for {op}; {hint}", str(key))


def _number(args: Mapping[str, Any], key: str, default: float, low: float, high: float, whole: bool) -> float:
    """A number from JSON or a query string, within [low, high]."""
    raw = args.get(key, default)
    value: Optional[float] = None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    kind = "a whole number" if whole else "a number"
    if value is None or math.isnan(value) or (whole and not value.is_integer()) or not low <= value <= high:
        raise _BadArg(f"{key}: expected {kind} from {low:g} to {high:g}, got {raw!r}", key)
    return value


def _text(args: Mapping[str, Any], key: str) -> str:
    raw = args.get(key)
    if not isinstance(raw, str) or not raw.strip():
        raise _BadArg(f"{key}: expected a non-empty string, got {raw!r}", key)
    return raw.strip()


def _error(status: int, message: str, field: str = "") -> Answer:
    body: Dict[str, Any] = {"error": " ".join(str(message).split()) or "error"}
    if field:
        body["field"] = field
    return status, body


def _answer_for(exc: BaseException) -> Answer:
    if isinstance(exc, SpecError):
        return _error(400, str(exc), exc.field)
    if isinstance(exc, AgentUnavailable):
        return _error(503, str(exc))
    if isinstance(exc, LookupError) and isinstance(exc, ProbebookError):
        return _error(404, str(exc))
    if isinstance(exc, ProbebookError):
        return _error(409, str(exc))
    if isinstance(exc, RecursionError):  # a request nested past what Python reads
        return _error(400, "the request nests too deep to read; send values a few levels deep")
    return _error(500, f"internal error in the probebook agent ({type(exc).__name__}: {exc}); "
                       f"the service is unaffected, report this with the agent version {__version__}")


class ControlAPI:
    """Runs control operations against one `Agent` and records them in an `AuditLog`."""

    def __init__(self, agent: Agent, audit: AuditLog, service: str, instance_id: str) -> None:
        self.agent = agent
        self.audit = audit
        self.service = service
        self.instance_id = instance_id
        self._checks: Dict[str, HealthCheck] = {}
        self._checks_lock = threading.Lock()
        self._reads: Dict[str, Tuple[bool, int, int, float]] = {}  # reader -> (first, reads, events, since)
        self._reads_lock = threading.Lock()
        self.delivered = 0  # the highest cursor an events answer handed a reader (0: never read)
        self._ops: Dict[str, Callable[[Dict[str, Any]], Tuple[int, Dict[str, Any], str]]] = {
            "add_probe": self._add_probe,
            "remove_probe": self._remove_probe,
            "remove_all": self._remove_all,
            "get_probe": self._get_probe,
            "list_probes": self._list_probes,
            "health": self._health,
            "read_events": self._read_events,
            "set_redaction": self._set_redaction,
            "set_limits": self._set_limits,
            "list_modules": self._list_modules,
            "read_source": self._read_source,
        }

    # ---------------------------------------------------------------- entry points
    def handle(self, op: str, args: Dict[str, Any], who: str) -> Answer:
        """Run `op` with `args` on behalf of token name `who`; never raises."""
        try:
            return self._handle(op, args, who)
        except Exception as exc:  # a bug of ours must not reach the transport, nor the host
            return _answer_for(exc)

    def _handle(self, op: str, args: Dict[str, Any], who: str) -> Answer:
        run = self._ops.get(op) if isinstance(op, str) else None
        if run is None:
            return _error(400, f"op: unknown operation {op!r}; one of {', '.join(OPS)}", "op")
        if op in _NEEDS_AUDIT and self.audit.error:
            return _error(503, f"{op} refused: {self.audit.error}")
        target = _target_of(op, args)
        if not isinstance(args, dict):
            status, body = _error(400, f"{op}: expected a JSON object of arguments, got {type(args).__name__}")
        else:
            try:
                status, body, target = run(args)
            except Exception as exc:
                status, body = _answer_for(exc)
        if op in MUTATING_OPS or op == "read_source":
            result = "ok" if status < 300 else f"{status} {body.get('error', '')}"
            self.audit.append(who, op, target, result)
        elif op == "read_events":  # captured values leave here: who read them, a line a minute per reader
            self._note_read(who, status, len(body.get("events") or ()) if status < 300 else 0)
        return status, body

    def _note_read(self, who: str, status: int, events: int) -> None:
        """Event reads are audited as one line per reader a minute (its first read at once, a failed one
        at once): how many reads and events, so a poll every second does not flood the log."""
        now = time.monotonic()
        with self._reads_lock:
            first, reads, count, since = self._reads.get(who, (True, 0, 0, now))
            reads, count = reads + 1, count + events
            due = first or status >= 300 or now - since >= _READS_EVERY
            self._reads[who] = (False, 0, 0, now) if due else (False, reads, count, since)
        if due:
            self.audit.append(who, "read_events", f"{count} events in {reads} reads over {now - since:.0f} s",
                              "ok" if status < 300 else str(status))

    def audit_event(self, who: str, action: str, target: str, result: str) -> None:
        """Record an action a transport decided on its own (a failed authentication, a bad signature)."""
        self.audit.append(who, action, target, result)

    def add_health_check(self, name: str, check: HealthCheck) -> None:
        """`check()` answers a dict with ``"ok": bool`` (and ``"error"`` when not ok); health shows it
        under ``components[name]`` and turns "unhealthy" while it is not ok."""
        with self._checks_lock:
            self._checks[name] = check

    # ---------------------------------------------------------------- operations
    def _add_probe(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        info = self.agent.add_probe(args)
        return 201, {"probe": asdict(info)}, f"{info.id} at {info.where}{_expressions(args)}"

    def _remove_probe(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        _only(args, ("id",), "remove_probe")
        info = self.agent.remove_probe(_text(args, "id"))
        return 200, {"probe": asdict(info)}, f"{info.id} at {info.where}"

    def _remove_all(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        _only(args, (), "remove_all")
        return 200, {"removed": self.agent.remove_all()}, "all probes"

    def _get_probe(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        _only(args, ("id",), "get_probe")
        return 200, {"probe": asdict(self.agent.get_probe(_text(args, "id")))}, ""

    def _list_probes(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        _only(args, (), "list_probes")
        return 200, {"probes": [asdict(p) for p in self.agent.probes()]}, ""

    def _health(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        _only(args, (), "health")
        return 200, self.health(), ""

    def health(self) -> Dict[str, Any]:
        """The health/info answer: "ok", or "unhealthy" with `problems` saying why."""
        stats = self.agent.stats()
        problems: List[str] = []
        components: Dict[str, Any] = {}
        with self._checks_lock:
            checks = list(self._checks.items())
        for name, check in checks:
            try:
                info = dict(check())
            except Exception as exc:
                info = {"ok": False, "error": f"health check failed: {type(exc).__name__}: {exc}"}
            components[name] = info
            if not info.get("ok", False):
                problems.append(f"{name}: {info.get('error') or 'not ok'}")
        seq, head = self.audit.head
        components["audit"] = {"ok": not self.audit.error, "path": self.audit.path, "seq": seq, "hash": head,
                               "error": self.audit.error}
        if self.audit.error:
            problems.append(f"audit: {self.audit.error}")
        return {
            "status": "unhealthy" if problems else "ok",
            "problems": problems,
            "service": self.service,
            "instance_id": self.instance_id,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "version": __version__,
            **{k: v for k, v in stats.items() if k not in ("pid", "python")},
            "components": components,
        }

    def _read_events(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        _only(args, ("after", "limit", "timeout"), "read_events")
        after = int(_number(args, "after", 0, 0, 2 ** 62, whole=True))
        limit = int(_number(args, "limit", 1000, 1, MAX_EVENTS, whole=True))
        timeout = _number(args, "timeout", 0, 0, MAX_POLL, whole=False)
        batch = self.agent.read_events(after, limit, timeout)
        self.delivered = max(self.delivered, batch.next_seq)
        return 200, {
            "events": [e.to_dict() for e in batch.events],
            "next": batch.next_seq,
            "missed": batch.missed,
            "dropped_total": batch.dropped_total,
            "service": self.service,
            "instance_id": self.instance_id,
        }, ""

    def wait_read(self, timeout: float) -> bool:
        """At exit: give a reader up to `timeout` s to read the last events (a recycled worker's last
        requests, or all of them: a worker that lived less than a client's look at its port files).
        Only while it holds probes (once every one was removed, whoever placed them is done with them)
        and someone reads this process or its probes emitted something; True when nothing is left unread."""
        probes = self.agent.probes()
        if not probes or (self.delivered == 0 and not any(p.emitted for p in probes)):
            return True  # nobody waits, or nothing was captured: exit at once
        end = time.monotonic() + timeout
        while self._unread_captures() and time.monotonic() < end:
            time.sleep(0.02)
        return not self._unread_captures()

    def _unread_captures(self) -> bool:
        """Captured events past what readers were handed (status lines such as `removed` do not count:
        nobody need wait for those)."""
        if self.delivered >= self.agent.buffer.last_seq:
            return False
        return any(e.kind != "status" for e in self.agent.read_events(self.delivered, 1000, 0.0).events)

    def _set_redaction(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        _only(args, _REDACTION_KEYS, "set_redaction")
        config = self.agent.set_redaction(**args)
        body = {"identifiers": sorted(config.identifiers), "patterns": list(config.patterns),
                "types": list(config.types), "enabled": config.enabled}
        return 200, {"redaction": body}, _changed_keys(args)

    def _set_limits(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        limits = self.agent.set_limits(**args)
        return 200, {"limits": asdict(limits)}, _changed_keys(args)

    def _list_modules(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        _only(args, (), "list_modules")
        return 200, {"modules": [asdict(m) for m in loaded_modules()]}, ""

    def _read_source(self, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any], str]:
        _only(args, ("path", "start", "end"), "read_source")
        start = int(_number(args, "start", 1, 1, 10 ** 9, whole=True))
        end = int(_number(args, "end", 10 ** 9, 1, 10 ** 9, whole=True)) if "end" in args else None
        src = read_source(_text(args, "path"), start, end)
        return 200, {"file": src.file, "sha256": src.sha256, "lines": [list(x) for x in src.lines],
                     "total_lines": src.total_lines, "truncated": src.truncated}, \
            f"{src.file} lines {src.lines[0][0] if src.lines else 0}-{src.lines[-1][0] if src.lines else 0}"


OPS = ("add_probe", "remove_probe", "remove_all", "get_probe", "list_probes", "health", "read_events",
       "set_redaction", "set_limits", "list_modules", "read_source")


def _changed_keys(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={args[k]!r}" for k in sorted(args)) or "(no change)"


def _expressions(args: Mapping[str, Any]) -> str:
    """What a probe evaluates, for its audit line: its kind, condition, captures and template (cut to 1000
    characters), so that whatever it reads leaves a trace."""
    said = [f"{k}={args[k]!r}" for k in ("kind", "when", "capture", "template", "metric", "limits") if args.get(k)]
    text = "; ".join(said)
    return f": {text[:1000]}" if text else ""


def _target_of(op: str, args: Any) -> str:
    """What the audit names when the operation failed before it could say."""
    if not isinstance(args, dict):
        return "(invalid arguments)"
    if op == "add_probe":
        return f"{args.get('id') or 'new probe'} at {args.get('where')!s}{_expressions(args)}"
    if op == "read_source":
        return f"{args.get('path')!s} lines {args.get('start', 1)}-{args.get('end', 'end')}"
    if op == "remove_probe":
        return str(args.get("id"))
    if op == "remove_all":
        return "all probes"
    return _changed_keys(args)
