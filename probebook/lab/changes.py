"""The change log: every deploy, rollback, config change, flag flip, restart, migration and data
import the lab performs, one JSON object per line (``<state>/changes.jsonl``), for connectors to read.

    {"ts": 1714550000.1, "kind": "deploy", "service": "orders", "summary": "...", "by": "ci",
     "details": {"from_version": "2.7.1", "to_version": "2.8.0"}}

>>> import tempfile, os
>>> log = ChangeLog(os.path.join(tempfile.mkdtemp(), "changes.jsonl"))
>>> _ = log.record("flag", "gateway", "new_checkout_flow on for 30%", by="growth-team")
>>> [(c.kind, c.service) for c in read_changes(log.path)]
[('flag', 'gateway')]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

__all__ = ["Change", "ChangeLog", "read_changes", "CHANGE_KINDS"]

CHANGE_KINDS = ("deploy", "rollback", "config", "flag", "restart", "migration", "data")


@dataclass(frozen=True)
class Change:
    ts: float
    kind: str
    service: str
    summary: str
    by: str = "lab"
    details: Dict[str, Any] = field(default_factory=dict)


class ChangeLog:
    """Appends changes; each line is written whole, so readers never see half a change."""

    def __init__(self, path: str) -> None:
        self.path = path

    def record(self, kind: str, service: str, summary: str, by: str = "lab", **details: Any) -> Change:
        change = Change(round(time.time(), 3), kind, service, summary, by, details)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(change), sort_keys=True) + "\n")
        return change


def read_changes(path: str) -> List[Change]:
    """Every change in the file, oldest first; lines that are not a change are skipped."""
    out: List[Change] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    raw = json.loads(line)
                    out.append(Change(float(raw["ts"]), str(raw["kind"]), str(raw["service"]), str(raw["summary"]),
                                      str(raw.get("by", "")), dict(raw.get("details") or {})))
                except (ValueError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        pass
    return out
