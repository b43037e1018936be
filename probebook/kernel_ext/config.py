"""`%config Probebook.<trait>`: the notebook side's settings.

Defaults < environment (``PROBEBOOK_EVIDENCE``, ``PROBEBOOK_DEFAULT_TTL``, ``PROBEBOOK_DEFAULT_WAIT``)
< IPython configuration files and ``%config``:

    %config Probebook.evidence_path = "incident-42.duckdb"
    %config Probebook.default_ttl = "5m"
"""

from __future__ import annotations

import os

from traitlets import Float, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from probebook.agent.errors import SpecError
from probebook.agent.spec import parse_duration

__all__ = ["Probebook"]


class Probebook(Configurable):
    """Settings of `%load_ext probebook`."""

    evidence_path = Unicode(
        help="DuckDB file of the investigation. Empty: beside the notebook (NOTEBOOK.evidence.duckdb), else "
             "probebook-evidence.duckdb in the working directory; ':memory:' keeps nothing. Read when the "
             "investigation opens (the first magic that needs it, or after %reload_ext probebook).",
    ).tag(config=True)
    token_file = Unicode(
        help="Token file for %connect without --token-file (else $PROBEBOOK_TOKEN_FILE, $PROBEBOOK_TOKEN).",
    ).tag(config=True)
    default_ttl = Unicode(help="TTL of probes placed without --ttl, e.g. 15m.").tag(config=True)
    default_wait = Unicode(help="How long %%snapshot waits without --wait, e.g. 30s.").tag(config=True)
    extend_ttl = Unicode("15m", help="The fresh TTL the extend button gives a probe.").tag(config=True)
    update_hz = Float(10.0, help="Most updates a second of a live panel (at most 10).").tag(config=True)
    status_interval = Float(1.0, help="Seconds between asking the agents for probe status.").tag(config=True)

    @default("evidence_path")
    def _default_evidence(self) -> str:
        return os.environ.get("PROBEBOOK_EVIDENCE", "")

    @default("default_ttl")
    def _default_ttl(self) -> str:
        return os.environ.get("PROBEBOOK_DEFAULT_TTL", "15m")

    @default("default_wait")
    def _default_wait(self) -> str:
        return os.environ.get("PROBEBOOK_DEFAULT_WAIT", "30s")

    @validate("default_ttl", "default_wait", "extend_ttl")
    def _check_duration(self, proposal: dict) -> str:
        name = proposal["trait"].name
        try:
            parse_duration(proposal["value"], name)
        except SpecError as exc:
            raise TraitError(str(exc)) from None
        return proposal["value"]

    @validate("update_hz")
    def _check_hz(self, proposal: dict) -> float:
        value = float(proposal["value"])
        if not 0.1 <= value <= 10.0:
            raise TraitError(f"update_hz: expected 0.1 to 10 updates a second, got {value:g}")
        return value

    @validate("status_interval")
    def _check_interval(self, proposal: dict) -> float:
        value = float(proposal["value"])
        if value < 0.2:
            raise TraitError(f"status_interval: at least 0.2 seconds, got {value:g}")
        return value
