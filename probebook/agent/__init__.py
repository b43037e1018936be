"""The probebook agent: runs inside the target service.

>>> from probebook.agent import Agent
>>> agent = Agent()
>>> agent.probes()
[]

Stdlib only (plus ``bytecode`` on Python <= 3.11). Nothing here imports the notebook side.
"""

from .bootstrap import start
from .engine import Agent, ProbeInfo
from .errors import (
    EvaluationError,
    ExpressionError,
    LocationError,
    ProbebookError,
    ProbeNotFound,
    SpecError,
)
from .limits import AgentLimits
from .spec import MetricSpec, ProbeSpec

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
