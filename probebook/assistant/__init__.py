"""The AI SRE: investigates an incident with live probes and proves the root cause, or says plainly
that it cannot (docs/assistant.md).

Only the proof gate (`proof.ProofGate`) turns a verdict into `proven`, `outside` or `no-fault`.
"""

from .assistant import Assistant
from .llm import LlmConfig, LlmPlanner
from .model import Alert, Finding, Hypothesis, Incident, Verdict
from .proof import GateResult, ProofGate

__all__ = ["Alert", "Assistant", "Finding", "GateResult", "Hypothesis", "Incident", "LlmConfig", "LlmPlanner",
           "ProofGate", "Verdict"]
