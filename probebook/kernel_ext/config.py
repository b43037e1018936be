"""`%config Probebook.<trait>`: the notebook side's settings.

Defaults < ``[tool.probebook]`` in the nearest ``pyproject.toml`` (working directory and up) <
environment (``PROBEBOOK_EVIDENCE``, ``PROBEBOOK_DEFAULT_TTL``, ``PROBEBOOK_DEFAULT_WAIT``) < IPython
configuration files and ``%config``:

    %config Probebook.evidence_path = "incident-42.duckdb"
    %config Probebook.default_ttl = "5m"

Values are checked where they are used, so a wrong one is a one-line `UsageError` in the cell that
uses it (a value refused here would instead break every later `%load_ext`).
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import Any, Dict, Optional

from traitlets import Float, Unicode, default
from traitlets.config import Configurable

__all__ = ["Probebook", "project_settings"]


@lru_cache(maxsize=8)
def _settings_of(start: str) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the lab extra brings tomli there
        import tomli as tomllib
    here = start
    while True:
        path = os.path.join(here, "pyproject.toml")
        if os.path.isfile(path):
            try:
                with open(path, "rb") as fh:
                    table = tomllib.load(fh).get("tool", {}).get("probebook", {})
            except (OSError, ValueError):
                return {}
            return {str(k).replace("-", "_"): v for k, v in table.items()} if isinstance(table, dict) else {}
        parent = os.path.dirname(here)
        if parent == here:
            return {}
        here = parent


def project_settings(start: Optional[str] = None) -> Dict[str, Any]:
    """``[tool.probebook]`` of the nearest pyproject.toml from `start` (the working directory) up."""
    return _settings_of(os.path.abspath(start or os.getcwd()))


def _layered(name: str, env: Optional[str], fallback: str) -> str:
    if env and os.environ.get(env):
        return os.environ[env]
    value = project_settings().get(name)
    return str(value) if value is not None else fallback


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
    update_hz = Float(10.0, help="Most updates a second of a live panel (0.1 to 10).").tag(config=True)
    status_interval = Float(1.0, help="Seconds between asking the agents for probe status (>= 0.2).").tag(config=True)

    @default("evidence_path")
    def _default_evidence(self) -> str:
        return _layered("evidence_path", "PROBEBOOK_EVIDENCE", "")

    @default("token_file")
    def _default_token_file(self) -> str:
        return _layered("token_file", None, "")

    @default("default_ttl")
    def _default_ttl(self) -> str:
        return _layered("default_ttl", "PROBEBOOK_DEFAULT_TTL", "15m")

    @default("default_wait")
    def _default_wait(self) -> str:
        return _layered("default_wait", "PROBEBOOK_DEFAULT_WAIT", "30s")
