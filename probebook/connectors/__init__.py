"""Clients to the outside: agents (HTTP, Redis fleet); later Prometheus, Alertmanager, logs, deploys.

>>> from probebook.connectors import AgentClient, ServiceClient, RedisFleet   # doctest: +SKIP
"""

from .agent import AgentClient, RedisFleet, ServiceClient, read_port_dir
from .agent_records import (
    AgentEvent,
    AgentHealth,
    EventPage,
    FleetInstance,
    FleetProbe,
    InstanceResult,
)
from .errors import AgentAuthError, AgentRequestError, AgentUnreachable, ConnectorError, FleetEmpty

__all__ = [
    "AgentAuthError",
    "AgentClient",
    "AgentEvent",
    "AgentHealth",
    "AgentRequestError",
    "AgentUnreachable",
    "ConnectorError",
    "EventPage",
    "FleetEmpty",
    "FleetInstance",
    "FleetProbe",
    "InstanceResult",
    "RedisFleet",
    "ServiceClient",
    "read_port_dir",
]
