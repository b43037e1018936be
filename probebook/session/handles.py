"""What an investigation needs of a connected service, whatever carries it.

`ServiceHandle` is the one contract: the HTTP `ServiceClient`, the Redis `RedisFleet` and the
in-process `InProcessHandle` all satisfy it, so `Investigation`, its collector, the widgets and
the assistant are written once against it. Every answer is per instance (an instance id to its
answer, or to the error it gave), because a service is many processes and one of them failing
must not hide the others.

>>> from probebook.connectors import RedisFleet, ServiceClient
>>> from probebook.session.inprocess import InProcessHandle
>>> all(issubclass(cls, ServiceHandle) for cls in (ServiceClient, RedisFleet, InProcessHandle))
True
>>> issubclass(RedisFleet, SourceReader)   # Redis carries no source: browsing needs HTTP or in-process
False
"""

from __future__ import annotations

from typing import Dict, List, Optional, Protocol, TypedDict, Union, runtime_checkable

from probebook.connectors.agent_records import AgentEvent, FleetProbe, InstanceResult
from probebook.errors import ConnectorError
from probebook.protocol.records import AgentHealth, ModuleSource, ProbeInfo, SourceFile
from probebook.protocol.spec import ProbeSpec

__all__ = ["ServiceHandle", "ServiceRow", "SourceReader", "service_row"]


@runtime_checkable
class ServiceHandle(Protocol):
    """Every instance of one service. Methods raise `ConnectorError` only when no instance could be
    asked at all; an instance that fails is an entry of the answer."""

    def health(self) -> Dict[str, Union[AgentHealth, ConnectorError]]:
        """instance id -> its health, or why it could not say."""
        ...

    def probes(self) -> Dict[str, Union[List[ProbeInfo], ConnectorError]]:
        """instance id -> the probes it holds (live and recently ended)."""
        ...

    def add_probe(self, spec: ProbeSpec) -> FleetProbe:
        """Place `spec` on every instance under one fleet id; each instance's answer in `results`."""
        ...

    def remove_probe(self, fleet_id: str) -> Dict[str, InstanceResult]:
        ...

    def remove_all(self) -> Dict[str, InstanceResult]:
        ...

    def events(self, timeout: float = 0.0, limit: int = 1000) -> List[AgentEvent]:
        """New events of every instance (each once, labelled with its instance), waiting up to
        `timeout` s when there are none; at most `limit` per instance."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class SourceReader(Protocol):
    """A handle that can show the code its service runs (HTTP and in-process; not Redis)."""

    def source_file(self, path: str, start: Optional[int] = None, end: Optional[int] = None) -> SourceFile:
        """Lines `start`..`end` of the loaded file whose path ends with `path`, from one instance."""
        ...

    def source_modules(self) -> List[ModuleSource]:
        """The modules one instance has loaded, with their files."""
        ...


class ServiceRow(TypedDict):
    """A connected service at a glance (a row of `Investigation.services()`)."""

    service: str
    target: str
    instances: int  # the processes that serve it; supervisors (a gunicorn master) are counted apart
    healthy: int
    supervisors: int
    python: str
    probes: int
    dropped_events: int
    health: str  # "ok", "degraded" (some instances fail) or "down"
    problem: str  # the first instance's failure, else the collector's last one


def service_row(name: str, target: str, handle: ServiceHandle, collector_error: str = "") -> ServiceRow:
    """Ask `handle` how the instances of service `name` are."""
    health: Dict[str, Union[AgentHealth, ConnectorError]]
    try:
        health = handle.health()
    except ConnectorError as exc:
        health = {"?": exc}
    apart = getattr(handle, "is_supervisor", None)
    bosses = {iid for iid in health if apart is not None and apart(iid)}
    if len(bosses) == len(health):
        bosses = set()  # a supervisor alone is what serves
    counted = {iid: h for iid, h in health.items() if iid not in bosses}
    ok = [h for h in counted.values() if not isinstance(h, Exception)]
    bad = [str(h) for h in counted.values() if isinstance(h, Exception)]
    everyone = [h for h in health.values() if not isinstance(h, Exception)]
    return ServiceRow(
        service=name, target=target, instances=len(counted), healthy=sum(1 for h in ok if h.ok),
        supervisors=len(bosses), python=", ".join(sorted({h.python for h in everyone})),
        probes=sum(h.active_probes for h in ok), dropped_events=sum(h.dropped_events for h in everyone),
        health="ok" if ok and not bad and all(h.ok for h in ok) else ("down" if not ok else "degraded"),
        problem=(bad[0] if bad else collector_error)[:200])
