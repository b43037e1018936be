"""The lab's `Remediation`: the containment actions the assistant proposes, done to the running lab the
way its own scenarios change it (a restart on another release, the config and flag files the services
re-read, the archive volume given its space back), each written to the change log as done ``by`` whoever
approved it.

>>> LabRemediation.name
'lab'
"""

from __future__ import annotations

import json
import os
from typing import Any

from probebook.assistant.containment import Action, RemediationError

from .actions import free_space, merge_json
from .topology import SERVICES

__all__ = ["LabRemediation"]


class LabRemediation:
    """Rollbacks, config and flag restores, restarts and space freed on `lab` (a `probebook.lab.runner.Lab`)."""

    name = "lab"

    def __init__(self, lab: Any) -> None:
        self.lab = lab

    def apply(self, action: Action, by: str) -> str:
        lab, svc = self.lab, action.service
        if action.kind != "flag" and svc not in lab.manifest["services"]:
            raise RemediationError(f"the lab has no service {svc!r}; it has {', '.join(lab.manifest['services'])}")
        if action.kind == "rollback":
            running = str(lab.service(svc)["version"])
            lab.restart_service(svc, action.to_version, self._release(svc, action.to_version))
            lab.changes.record("rollback", svc, f"{svc} rolled back to {action.to_version}", by=by,
                               from_version=running, to_version=action.to_version)
            return f"rolled back {svc} {running} -> {action.to_version}"
        if action.kind == "config":
            before = merge_json(lab, f"config/{svc}.json", action.values)
            lab.changes.record("config", svc, f"{svc} config restored: " + ", ".join(
                f"{k}={_shown(v)}" for k, v in sorted(action.values.items())), by=by,
                set=dict(action.values), before=before)
            return f"config of {svc} restored: " + ", ".join(f"{k}={_shown(v)}" for k, v in sorted(action.values.items()))
        if action.kind == "flag":
            before = merge_json(lab, "config/flags.json", {action.name: action.value})
            lab.changes.record("flag", svc or "gateway", f"flag {action.name} set back to {_shown(action.value)}",
                               by=by, flag=action.name, value=action.value, before=before[action.name])
            return f"flag {action.name} = {_shown(action.value)}"
        if action.kind == "free_space":  # the lab's one volume: the worker's archive
            freed = free_space(lab)
            if not freed:
                raise RemediationError("no volume of the lab is full; nothing to free (probebook lab status)")
            lab.changes.record("data", svc, "archive volume: space freed", by=by, freed=[os.path.basename(p)
                                                                                        for p in freed])
            return f"freed space on the archive volume ({len(freed)} file(s))"
        lab.restart_service(svc)
        lab.changes.record("restart", svc, f"{svc} restarted", by=by)
        return f"restarted {svc}"

    def refresh(self, inv: Any, action: Action) -> None:
        """After a restart or rollback the service's agent listens on a new port: connect `inv` to it."""
        if action.kind in ("rollback", "restart"):
            entry = self.lab.manifest["services"][action.service]
            if entry.get("agent_url"):
                inv.connect(action.service, entry["agent_url"], token=self.lab.token)

    def _release(self, service: str, version: str) -> Any:
        """The release folder `version` of `service` ran from; None for the baseline (the shop's source)."""
        folder = self.lab.path("releases", service, version)
        if os.path.isdir(folder):
            return folder
        if any(s.name == service and s.version == version for s in SERVICES):
            return None
        raise RemediationError(f"{service} {version} is not a release the lab built; roll back to a version "
                               f"it ran (probebook lab status), or recover the lab")


def _shown(value: Any) -> str:
    """A restored value as the change log and the answer say it: None is the key removed, the default."""
    return "(default)" if value is None else json.dumps(value)
