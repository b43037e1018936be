"""The probebook agent: runs inside the target service.

>>> from probebook.agent import Agent
>>> agent = Agent()
>>> agent.probes()
[]

Stdlib only (plus ``bytecode`` on Python <= 3.11). Nothing here imports the notebook side; what the
agent shares with it (specs, records, events, fleet keys) is `probebook.protocol`, which it implements.
"""

from probebook.errors import (
    EvaluationError,
    ExpressionError,
    LocationError,
    ProbebookError,
    ProbeNotFound,
    SpecError,
)
from probebook.protocol.records import ProbeInfo
from probebook.protocol.spec import MetricSpec, ProbeSpec

from .bootstrap import start
from .engine import Agent
from .limits import AgentLimits

__all__ = [
    "Agent",
    "AgentLimits",
    "EvaluationError",
    "ExpressionError",
    "LocationError",
    "MetricSpec",
    "ProbeInfo",
    "ProbeNotFound",
    "ProbeSpec",
    "ProbebookError",
    "SpecError",
    "start",
]
