"""probebook: prove root causes with live, read-only probes in running Python services.

`pip install probebook` gives the agent (``probebook.agent``), stdlib only plus
``bytecode`` on Python <= 3.11. The notebook side comes with ``probebook[lab]``.

Every error probebook raises on purpose is a `ProbebookError` (the tree: ``probebook.errors``):

>>> from probebook import ProbebookError, SpecError
>>> issubclass(SpecError, (ProbebookError, ValueError))
True
"""

from .errors import (  # stdlib only: importing the package stays light
    AgentAuthError,
    AgentRequestError,
    AgentUnreachable,
    AlertPayloadError,
    AssistantError,
    ConnectorError,
    EvaluationError,
    OverBudget,
    EvidenceError,
    EvidenceQueryError,
    ExpressionError,
    FleetEmpty,
    LabError,
    LlmError,
    LocationError,
    ProbebookError,
    ProbeNotFound,
    QueryRejected,
    RedisConnectionError,
    RedisReplyError,
    ScenarioError,
    ServerError,
    SessionError,
    SourceNotFound,
    SourceTimeout,
    SourceUnreachable,
    SpecError,
    StartError,
    TelemetryInputError,
    TokenFileError,
    UnsafeAccess,
)

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "AgentAuthError",
    "AgentRequestError",
    "AgentUnreachable",
    "AlertPayloadError",
    "AssistantError",
    "ConnectorError",
    "EvaluationError",
    "OverBudget",
    "EvidenceError",
    "EvidenceQueryError",
    "ExpressionError",
    "FleetEmpty",
    "LabError",
    "LlmError",
    "LocationError",
    "ProbebookError",
    "ProbeNotFound",
    "QueryRejected",
    "RedisConnectionError",
    "RedisReplyError",
    "ScenarioError",
    "ServerError",
    "SessionError",
    "SourceNotFound",
    "SourceTimeout",
    "SourceUnreachable",
    "SpecError",
    "StartError",
    "TelemetryInputError",
    "TokenFileError",
    "UnsafeAccess",
]


def load_ipython_extension(ipython):  # pragma: no cover - exercised through IPython in tests
    """`%load_ext probebook`: the magics and `%config Probebook.*` (needs `probebook[lab]`)."""
    from probebook.kernel_ext import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    from probebook.kernel_ext import unload_ipython_extension as _unload

    _unload(ipython)
