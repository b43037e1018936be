"""The MCP server's core, without the protocol: one `Investigation` shared by every client, one incident
and one `ToolBox` per client session, the proof gate on every conclusion, and an audit line per call.

An MCP client (a coding agent, a chat client) works like the LLM planner: it calls the assistant's tools
with the same schemas and the same limits (probe budget, TTL, rate, bounded answers), records hypotheses
and concludes; `conclude` passes the proof gate, so a client cannot get a `proven` verdict recorded that
the gate would refuse. `investigate` runs the deterministic investigator and answers its gated verdict.
A session's calls are served one at a time (a slow `wait_events` holds that client's next call, never
another client's).

>>> [t["name"] for t in tool_specs()][-4:]
['record_hypothesis', 'conclude', 'investigate', 'session']
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import jsonschema

from probebook.agent.control.audit import AuditLog
from probebook.assistant import Assistant
from probebook.assistant.llm_tools import PLANNER_SCHEMAS, hypothesis_from_args, public_verdict, verdict_from_args
from probebook.assistant.model import Hypothesis, Incident, Verdict
from probebook.assistant.proof import ProofGate
from probebook.assistant.tool_specs import SPECS
from probebook.assistant.tools import ProbeBudget, ToolBox, ToolResult
from probebook.errors import AssistantError, ProbebookError, one_line
from probebook.session import Investigation

__all__ = ["Bridge", "Caller", "tool_specs", "RESOURCE_PREFIX"]

RESOURCE_PREFIX = "probebook://"
_MAX_TABLE_ROWS = 40
_MAX_RESOURCE_BYTES = 64 << 10
_INVESTIGATE = {"name": "investigate",
                "description": "Run the deterministic investigator on an incident (your words and the alerts firing "
                               "now): it places its own read-only probes and answers its verdict after the proof "
                               "gate. Takes up to budget_s seconds.",
                "parameters": {"type": "object", "additionalProperties": False, "required": [],
                               "properties": {"text": {"type": "string", "description": "what is wrong, in words"},
                                              "alert": {"type": "string", "description": "start from this "
                                                                                          "firing alert only"},
                                              "budget_s": {"type": "number", "minimum": 5, "maximum": 300}}}}
_SESSION = {"name": "session",
            "description": "This client's incident: its id and when it opened (only evidence captured after it "
                           "counts as proof), the probes you placed that are live, your hypotheses. With text, "
                           "opens a new incident with that title (your live probes are removed first).",
            "parameters": {"type": "object", "additionalProperties": False, "required": [],
                           "properties": {"text": {"type": "string"}}}}


def tool_specs() -> List[Dict[str, Any]]:
    """Every tool an MCP client sees: name, description and JSON schema of its arguments."""
    planner = [s["function"] for s in PLANNER_SCHEMAS if s["function"]["name"] != "run_strategy"]
    return [dict(s) for s in SPECS] + [dict(s) for s in planner] + [_INVESTIGATE, _SESSION]


_SCHEMAS = {t["name"]: t["parameters"] for t in tool_specs()}


@dataclass(frozen=True)
class Caller:
    """Who calls, as the MCP session reports it: the client's name and version from its `initialize` (or
    its request metadata), the bearer token's name over HTTP, and the session key its probes belong to."""

    session: str
    client: str = "unknown-client"
    token: str = ""

    @property
    def who(self) -> str:
        return f"mcp:{self.client}" + (f" token:{self.token}" if self.token else "")


@dataclass
class _Session:
    caller: Caller
    incident: Incident
    tools: ToolBox
    hypotheses: Dict[str, Hypothesis] = field(default_factory=dict)
    lock: Any = field(default_factory=threading.Lock)  # one call of a session at a time


class Bridge:
    """The tools of one investigation for many MCP client sessions. `audit_path`: the hash-chained audit
    log (`probebook audit verify FILE`) that gets one line per call, with the caller's identity."""

    def __init__(self, inv: Investigation, audit_path: str, budget: Optional[ProbeBudget] = None) -> None:
        self.inv = inv
        self.assistant = Assistant(inv, budget)
        self.audit = AuditLog(audit_path)
        self._sessions: Dict[str, _Session] = {}
        self._lock = threading.Lock()  # the table of sessions; each session's calls hold its own lock
        if self.audit.append("mcp", "mcp.start", inv.store.path, "serving") is None:
            raise AssistantError(f"{self.audit.error}; the MCP server does not serve calls it cannot audit")

    # ------------------------------------------------------------------ sessions
    def _session(self, caller: Caller, title: str = "") -> _Session:
        with self._lock:
            old = self._sessions.get(caller.session)
            if old is not None and not title:
                return old
            incident = self.assistant.journal.open_incident(Incident(title or f"via MCP ({caller.who})"))
            s = _Session(caller, incident, ToolBox(self.inv, incident, self.assistant.journal,
                                                   self.assistant.budget))
            self._sessions[caller.session] = s
        if old is not None:  # a new incident: the old one's live probes go
            with old.lock:
                old.tools.remove_all()
        return s

    def end_session(self, key: str) -> int:
        """The client went away: remove the probes it placed that are still live; how many."""
        with self._lock:
            s = self._sessions.pop(key, None)
        if s is None:
            return 0
        with s.lock:
            n = len(s.tools.live)
            s.tools.remove_all()
        self.audit.append(s.caller.who, "mcp.session_end", key, f"removed {n} live probes")
        return n

    def close(self) -> None:
        for key in list(self._sessions):
            self.end_session(key)

    # ------------------------------------------------------------------ calls
    def call(self, caller: Caller, name: str, args: Optional[Dict[str, Any]],
             stop: Optional[threading.Event] = None) -> Tuple[str, bool]:
        """One tool call: (the answer as JSON text, whether it is an error). Never raises: a bad call, or a
        tool that fails, answers one line. A call is refused while the audit log cannot be written. `stop`:
        set when the client cancels (an `investigate` run ends early, its probes removed)."""
        args = dict(args or {})
        if self.audit.error and self.audit.append(caller.who, "mcp.audit_check", name, "retry") is None:
            return ToolResult(name, "", error=f"{self.audit.error}; calls are refused until it can be written"
                              ).to_json(), True
        try:
            schema = _SCHEMAS.get(name)
            if schema is not None:  # what the schema allows, before anything runs
                try:
                    jsonschema.validate(args, schema)
                except jsonschema.ValidationError as exc:
                    raise ValueError(f"bad arguments for {name}: {exc.message}") from None
            result = self._call(caller, name, args, stop)
        except (ProbebookError, ValueError, LookupError, TypeError) as exc:
            result = ToolResult(name, "", error=one_line(exc, 300))
        except Exception as exc:  # noqa: BLE001 - a tool's failure is an answer, never the server's end
            result = ToolResult(name, "", error=f"{type(exc).__name__}: {one_line(exc, 280)}")
        self.audit.append(caller.who, f"mcp.{name}", one_line(json.dumps(args, default=str), 200),
                          f"error: {result.error}" if result.error else f"ok: {result.summary}")
        return result.to_json(), bool(result.error)

    def _call(self, caller: Caller, name: str, args: Dict[str, Any], stop: Optional[threading.Event]) -> ToolResult:
        if name == "investigate":  # its own incident and probes: no session is held while it runs
            return self._t_investigate(caller, stop, **args)
        s = self._session(caller, str(args.get("text") or "") if name == "session" else "")
        with s.lock:
            return self._in_session(s, name, args)

    def _in_session(self, s: _Session, name: str, args: Dict[str, Any]) -> ToolResult:
        if name == "session":
            return self._t_session(s)
        if name == "record_hypothesis":
            h = hypothesis_from_args(args)
            known = next((k for k, v in s.hypotheses.items() if v.statement == h.statement), None)
            h.id = s.hypotheses[known].id if known else ""
            h = self.assistant.journal.hypothesis(s.incident, h)
            s.hypotheses[h.id] = h
            return ToolResult(name, f"hypothesis {h.id} ({h.status})", {"id": h.id})
        if name == "conclude":
            return self._t_conclude(s, args)
        if name not in {spec["name"] for spec in SPECS}:
            return ToolResult(name, "", error=f"unknown tool {name!r}; tools: "
                                              f"{', '.join(t['name'] for t in tool_specs())}")
        return s.tools.call(name, args)

    def _t_session(self, s: _Session) -> ToolResult:
        return ToolResult("session", f"incident {s.incident.id}: {s.incident.title}", {
            "incident": s.incident.id, "title": s.incident.title, "opened_at": s.incident.opened_at,
            "live_probes": list(s.tools.live), "hypotheses": [h.to_dict() for h in s.hypotheses.values()]})

    def _t_conclude(self, s: _Session, args: Dict[str, Any]) -> ToolResult:
        if args.get("proposal"):
            raise ValueError("conclude: proposals come from run_strategy, which MCP clients call as investigate")
        verdict = verdict_from_args(args)
        gate = ProofGate(self.inv.store, s.incident.opened_at)
        checked = gate.final(verdict, list(s.hypotheses.values()))
        checked = self.assistant.journal.verdict(s.incident, checked)
        said = "accepted" if checked.kind == verdict.kind else f"refused: {verdict.kind} is now {checked.kind}"
        return ToolResult("conclude", f"{said} ({checked.id})", {"id": checked.id, **public_verdict(checked)},
                          list(checked.evidence))

    def _t_investigate(self, caller: Caller, stop: Optional[threading.Event], text: str = "", alert: str = "",
                       budget_s: float = 60.0) -> ToolResult:
        alerts = self.assistant.firing_alerts()
        if alert:
            alerts = [a for a in alerts if a.name == alert]
            if not alerts:
                raise ValueError(f"investigate: no alert {alert!r} is firing; leave alert out to use every "
                                 f"firing alert")
        v: Verdict = self.assistant.investigate(text, alerts=alerts, budget_s=max(5.0, min(float(budget_s), 300.0)),
                                                stop=stop)
        return ToolResult("investigate", f"{v.headline()} ({v.id})", {"id": v.id, **public_verdict(v)},
                          list(v.evidence))

    # ------------------------------------------------------------------ resources
    def resources(self) -> List[Dict[str, str]]:
        """The evidence tables and every verdict recorded, as MCP resources (uri, name, description)."""
        out = [{"uri": f"{RESOURCE_PREFIX}tables/{t}", "name": f"table {t}",
                "description": f"the newest {_MAX_TABLE_ROWS} rows of the evidence table {t}"}
               for t in self.inv.store.tables()]
        out += [{"uri": f"{RESOURCE_PREFIX}verdicts/{v.id}", "name": f"verdict {v.id}",
                 "description": v.headline()} for v in self.assistant.journal.verdicts()]
        return out

    def read(self, uri: str) -> str:
        """A resource as JSON text (at most `_MAX_RESOURCE_BYTES`); LookupError names what exists."""
        kind, _, name = uri[len(RESOURCE_PREFIX):].partition("/") if uri.startswith(RESOURCE_PREFIX) else ("", "", "")
        if kind == "tables" and name in self.inv.store.tables():  # a known table's name, never the caller's text
            newest = " ORDER BY ts DESC" if "ts" in self.inv.store.sql(f'SELECT * FROM "{name}" LIMIT 0').columns else ""
            frame = self.inv.store.sql(f'SELECT * FROM "{name}"{newest} LIMIT {_MAX_TABLE_ROWS}')
            rows = [{k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in r.items()}
                    for r in frame.to_dicts()]
            while rows and len(json.dumps(rows, default=str)) > _MAX_RESOURCE_BYTES:
                rows = rows[: len(rows) // 2]
            return json.dumps({"table": name, "rows": rows}, default=str)
        if kind == "verdicts":
            for v in self.assistant.journal.verdicts():
                if v.id == name:
                    return json.dumps(v.to_dict(), default=str)[:_MAX_RESOURCE_BYTES]
        raise LookupError(f"no resource {uri!r}; list_resources shows the tables and verdicts there are")
