"""What a running lab offers an investigation's telemetry: its Prometheus, Alertmanager, each
service's log file and the change log, read from the lab's manifest (``<state>/lab.json``).

The session knows nothing of the lab; the lab hands it plain values:

>>> ends = lab_endpoints("/tmp/probebook-lab")            # doctest: +SKIP
>>> ends.prometheus, sorted(ends.logs)                    # doctest: +SKIP
('http://127.0.0.1:41234', ['bank', 'gateway', 'orders', ...])
>>> use_lab(inv.telemetry)            # what `%telemetry --lab` does    # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from probebook.errors import LabError, ProbebookError, one_line
from probebook.session.telemetry import Telemetry, TelemetrySources

from .runner import Lab, default_state_dir, read_manifest

if TYPE_CHECKING:  # pragma: no cover
    from probebook.session import Investigation

__all__ = ["LabEndpoints", "lab_endpoints", "use_lab", "connect_lab", "running_lab"]


@dataclass(frozen=True)
class LabEndpoints:
    """Where a running lab's telemetry is; None for what it did not start (e.g. ``--no-monitoring``)."""

    state_dir: str
    prometheus: Optional[str] = None
    alertmanager: Optional[str] = None
    logs: Dict[str, str] = field(default_factory=dict)  # service -> its JSON-lines log file
    change_log: Optional[str] = None  # the JSON-lines log of deploys, flags and config changes
    catalog: Dict[str, str] = field(default_factory=dict)  # every system of the lab -> its base URL


def lab_endpoints(state_dir: Optional[str] = None) -> LabEndpoints:
    """The endpoints of the lab in `state_dir` (default: where ``probebook lab up`` puts it).

    >>> import json, tempfile
    >>> state = tempfile.mkdtemp()
    >>> _ = open(os.path.join(state, "lab.json"), "w").write(json.dumps({
    ...     "services": {"orders": {"log": "/l/orders.jsonl"}, "bank": {"log": None}},
    ...     "changes": "/l/changes.jsonl", "monitoring": {"prometheus": "http://127.0.0.1:9090"}}))
    >>> ends = lab_endpoints(state)
    >>> ends.prometheus, ends.alertmanager, ends.logs, ends.change_log
    ('http://127.0.0.1:9090', None, {'orders': '/l/orders.jsonl'}, '/l/changes.jsonl')
    """
    state = os.path.abspath(state_dir or default_state_dir())
    manifest = read_manifest(state)
    monitoring = manifest.get("monitoring") or {}
    services = manifest.get("services") or {}
    return LabEndpoints(
        state_dir=state, prometheus=monitoring.get("prometheus") or None,
        alertmanager=monitoring.get("alertmanager") or None,
        logs={name: str(entry["log"]) for name, entry in services.items()
              if isinstance(entry, dict) and entry.get("log")},
        change_log=manifest.get("changes") or None,
        catalog={name: str(entry["url"]) for name, entry in services.items() if isinstance(entry, dict) and entry.get("url")})


def use_lab(telemetry: Telemetry, state_dir: Optional[str] = None) -> TelemetrySources:
    """Add the lab's sources to `telemetry` (its URLs replace those set, its logs are added)."""
    ends = lab_endpoints(state_dir)
    return telemetry.join(prometheus=ends.prometheus, alertmanager=ends.alertmanager,
                          log_paths={name: [path] for name, path in ends.logs.items()},
                          change_logs=[ends.change_log] if ends.change_log else [], catalog=ends.catalog)


def connect_lab(inv: "Investigation", lab: Any, skipped: Optional[Callable[[str, str], None]] = None) -> List[str]:
    """Connect `inv` to every service of the running `lab` that has an agent, and its telemetry; the
    names connected. A service that does not answer raises, or with `skipped(name, why)` is left out
    and said so (it may be the incident: an evaluation goes on as an on-call engineer would)."""
    names = []
    for name, entry in lab.manifest["services"].items():
        if not entry.get("agent_url"):
            continue
        try:
            inv.connect(name, entry["agent_url"], token=lab.token)
            names.append(name)
        except ProbebookError as exc:
            if skipped is None:
                raise
            skipped(name, one_line(exc, 160))
    use_lab(inv.telemetry, lab.state)
    return names


def running_lab(state_dir: Optional[str] = None) -> Optional[Lab]:
    """The lab running in `state_dir` (default: where ``probebook lab up`` and `make demo` put it), or
    None when there is none there or it is down: a notebook that investigates the lab's incident says
    how to start one instead of failing.

    >>> import tempfile
    >>> running_lab(tempfile.mkdtemp()) is None
    True
    """
    try:
        return Lab.attach(state_dir)
    except LabError:
        return None
