"""An agent living in this very process, as a `ServiceHandle`: for notebooks that probe their own
code, and for session, widget and assistant tests where a subprocess would prove nothing.

>>> from probebook.agent import Agent
>>> handle = InProcessHandle(Agent(), "shop", instance_id="shop-1")
>>> handle.probes()
{'shop-1': []}
>>> handle.health()["shop-1"].service
'shop'

It is one more transport over the agent's `ControlAPI`, the dispatcher HTTP and Redis use: the
same checks, the same answers, the same audit entries. Events reach the investigation as the
HTTP transport would deliver them (JSON types only).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Dict, List, Mapping, Optional, Union

from probebook.agent.control.audit import AuditLog
from probebook.agent.control.control import ControlAPI
from probebook.agent.engine import Agent
from probebook.connectors.agent_records import AgentEvent, FleetProbe, InstanceResult
from probebook.connectors.redis_fleet import fleet_probe_spec
from probebook.errors import AgentAuthError, AgentRequestError, ConnectorError, one_line
from probebook.protocol.records import AgentHealth, ModuleSource, ProbeInfo, SourceFile, from_mapping
from probebook.protocol.spec import ProbeSpec

__all__ = ["InProcessHandle"]

_Args = Dict[str, object]
_Body = Dict[str, object]


class InProcessHandle:
    """`agent` (an `probebook.agent.Agent` of this process) as service `service`, one instance.

    Control actions are written to the hash-chained audit log at `audit_path` (default
    ``$PROBEBOOK_AUDIT``, else a fresh file in a private temporary folder) as done by `who`.
    `close()` leaves the agent running: it belongs to whoever made it.
    """

    def __init__(self, agent: Agent, service: str, instance_id: Optional[str] = None,
                 audit_path: Optional[str] = None, who: str = "in-process") -> None:
        self.agent = agent
        self.service = service
        self.instance_id = instance_id or f"{service}-{os.getpid()}-{os.urandom(2).hex()}"
        path = audit_path or os.environ.get("PROBEBOOK_AUDIT") or os.path.join(
            tempfile.mkdtemp(prefix="probebook-"), f"audit-{self.instance_id}.jsonl")
        self.audit = AuditLog(path)
        self.control = ControlAPI(agent, self.audit, service, self.instance_id)
        self.who = who
        self.cursor = 0  # `next` of the last events read: none is delivered twice

    # ------------------------------------------------------------------ ServiceHandle
    def health(self) -> Dict[str, Union[AgentHealth, ConnectorError]]:
        try:
            return {self.instance_id: from_mapping(AgentHealth, self._call("health", {}))}
        except ConnectorError as exc:
            return {self.instance_id: exc}

    def probes(self) -> Dict[str, Union[List[ProbeInfo], ConnectorError]]:
        try:
            listed = self._call("list_probes", {})["probes"]
        except ConnectorError as exc:
            return {self.instance_id: exc}
        return {self.instance_id: [from_mapping(ProbeInfo, p) for p in listed]}  # type: ignore[attr-defined]

    def add_probe(self, spec: Union[ProbeSpec, Mapping[str, object]]) -> FleetProbe:
        body = fleet_probe_spec(spec)
        return FleetProbe(str(body["id"]), self._results("add_probe", body))

    def remove_probe(self, fleet_id: str) -> Dict[str, InstanceResult]:
        return self._results("remove_probe", {"id": fleet_id})

    def remove_all(self) -> Dict[str, InstanceResult]:
        return self._results("remove_all", {})

    def events(self, timeout: float = 0.0, limit: int = 1000) -> List[AgentEvent]:
        body = self._call("read_events", {"after": self.cursor, "limit": limit, "timeout": timeout})
        self.cursor = max(self.cursor, int(body["next"]))  # type: ignore[call-overload]
        wire = json.loads(json.dumps(body["events"], default=_unserializable))
        return [AgentEvent.from_dict(e, self.instance_id, self.service) for e in wire]

    def close(self) -> None:
        """Nothing to release: the agent and its probes stay (remove them first if they should go)."""

    # ------------------------------------------------------------------ SourceReader
    def source_file(self, path: str, start: Optional[int] = None, end: Optional[int] = None) -> SourceFile:
        args: _Args = {"path": path}
        args.update({k: v for k, v in (("start", start), ("end", end)) if v is not None})
        body = dict(self._call("read_source", args))
        body["lines"] = [(int(n), str(text)) for n, text in body.get("lines", [])]  # type: ignore[attr-defined]
        return from_mapping(SourceFile, body)

    def source_modules(self) -> List[ModuleSource]:
        return [from_mapping(ModuleSource, m) for m in self._call("list_modules", {})["modules"]]  # type: ignore[union-attr]

    # ------------------------------------------------------------------ the transport
    def _results(self, op: str, args: _Args) -> Dict[str, InstanceResult]:
        status, body = self.control.handle(op, args, self.who)
        return {self.instance_id: InstanceResult(self.instance_id, status, body)}

    def _call(self, op: str, args: _Args) -> _Body:
        status, body = self.control.handle(op, args, self.who)
        if status >= 400:
            cls = AgentAuthError if status in (401, 403, 429) else AgentRequestError
            why = one_line(body.get("error") or f"status {status}")
            raise cls(f"agent {self.instance_id}: {op}: {status} {why}", status, str(body.get("field", "")))
        return body


def _unserializable(obj: object) -> str:
    # as the HTTP transport answers: never str()/repr() an object we did not make (it runs user code)
    return f"<unserializable {type(obj).__name__}>"
