"""Scenarios are data: a folder with ``scenario.toml`` (what to do to the shop, what users then see,
how to undo it), ``ground_truth.toml`` (the answer and the probe that proves it) and, if it needs
one, a ``code/`` folder of service files for its deploys.

Built-in scenarios live in probebook/lab/scenarios; more folders come from ``--scenarios DIR`` or
``PROBEBOOK_LAB_SCENARIOS`` (paths separated by ``:``); a scenario may also be named by its path.
docs/lab.md describes every field.

>>> ids = [s.id for s in all_scenarios()]
>>> "control-none" in ids and len(ids) >= 14
True
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from probebook.errors import ScenarioError
from probebook.evidence.predicate import Predicate

from .alerts import RULES
from .releases import Edit
from .topology import SERVICES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

__all__ = ["Action", "Scenario", "GroundTruth", "Evidence", "Proof", "BUILTIN_DIR", "load_scenario",
           "find_scenario", "all_scenarios", "scenario_dirs", "ACTIONS", "VERDICTS"]

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
VERDICTS = ("proven", "no-fault", "outside")
# action -> (required keys, optional keys)
ACTIONS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "deploy": (("service", "version"), ("edits", "code", "summary", "by")),
    "config": (("service", "set"), ("summary", "by")),
    "flag": (("name", "value"), ("summary", "by")),
    "restart": (("service",), ("summary", "by")),
    "sql": (("db", "statements"), ("change", "service", "by")),
    "job": (("kind", "payload"), ("change", "service", "by")),
    "load": (("set",), ()),
    "external": (("set",), ()),
    "kill": (("service",), ()),
    "disk_full": ((), ()),
    "disk_free": ((), ()),
}
_SERVICE_NAMES = tuple(s.name for s in SERVICES)


@dataclass(frozen=True)
class Action:
    """One step of an injection or a recovery: `kind` and its fields (see `ACTIONS`)."""

    kind: str
    fields: Dict[str, Any]
    base_dir: str  # the scenario folder, for `code`

    @property
    def edits(self) -> List[Edit]:
        return [Edit(e["file"], e["find"], e["replace"]) for e in self.fields.get("edits", [])]

    @property
    def code_dir(self) -> Optional[str]:
        code = self.fields.get("code")
        return os.path.join(self.base_dir, code) if code else None


# the ground truth's proof is the one predicate model the assistant's verdicts use too
Proof = Predicate


@dataclass(frozen=True)
class Evidence:
    service: str
    probe: Dict[str, Any]  # a probe spec, with `file` + `at` (a line's text) in place of `where`
    proof: Proof
    why: str


@dataclass(frozen=True)
class GroundTruth:
    verdict: str
    service: str
    locus: str
    fault_type: str
    trigger: str
    mitigation: str
    check: str
    evidence: Evidence
    # the fix in code, where the mitigation names one (optional `[fix]`): edits to the release the service
    # runs when the fault is live, which `lab eval --lifecycle` gives the assistant to validate
    fix: Tuple[Edit, ...] = ()
    fix_service: str = ""


@dataclass(frozen=True)
class Scenario:
    id: str
    path: str
    title: str
    summary: str
    alert: str  # the symptom; "" for the no-fault control
    alert_labels: Dict[str, str]
    within_s: float
    inject: Tuple[Action, ...]
    recover: Tuple[Action, ...]
    tags: Tuple[str, ...] = ()
    noise: Tuple[str, ...] = ()
    truth: Optional[GroundTruth] = field(default=None, repr=False)


def _load_toml(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError(f"{path}: missing; a scenario folder holds scenario.toml and ground_truth.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc}); fix the file") from None


def _need(raw: Mapping[str, Any], key: str, where: str, kind: type = str) -> Any:
    if key not in raw:
        raise ScenarioError(f"{where}: missing '{key}'")
    value = raw[key]
    if not isinstance(value, kind):
        raise ScenarioError(f"{where}: '{key}' must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _action(raw: Any, where: str, base_dir: str) -> Action:
    if not isinstance(raw, Mapping) or "action" not in raw:
        raise ScenarioError(f"{where}: each step needs action = one of {', '.join(ACTIONS)}")
    kind = raw["action"]
    if kind not in ACTIONS:
        raise ScenarioError(f"{where}: unknown action {kind!r}; use one of {', '.join(ACTIONS)}")
    required, optional = ACTIONS[kind]
    fields = {k: v for k, v in raw.items() if k != "action"}
    for key in required:
        _need(fields, key, f"{where} ({kind})", object)
    unknown = sorted(set(fields) - set(required) - set(optional))
    if unknown:
        raise ScenarioError(f"{where} ({kind}): unknown key {unknown[0]!r}; allowed: {', '.join(required + optional)}")
    service = fields.get("service")
    if service is not None and service not in _SERVICE_NAMES:
        raise ScenarioError(f"{where} ({kind}): unknown service {service!r}; the lab runs {', '.join(_SERVICE_NAMES)}")
    for edit in fields.get("edits", []):
        if not isinstance(edit, Mapping) or not all(isinstance(edit.get(k), str) for k in ("file", "find", "replace")):
            raise ScenarioError(f"{where} ({kind}): each edit needs file, find and replace strings")
    for key in ("set", "payload"):
        if key in fields and not isinstance(fields[key], Mapping):
            raise ScenarioError(f"{where} ({kind}): '{key}' must be a table")
    if kind == "sql" and not (isinstance(fields["statements"], list) and all(isinstance(s, str) for s in fields["statements"])):
        raise ScenarioError(f"{where} (sql): 'statements' must be a list of SQL strings")
    return Action(kind, fields, base_dir)


def _proof(raw: Any, where: str) -> Proof:
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: [evidence.proof] must be a table")
    try:
        return Predicate.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{where}: proof: {exc}") from None


def _truth(path: str) -> GroundTruth:
    raw = _load_toml(path)
    verdict = _need(raw, "verdict", path)
    if verdict not in VERDICTS:
        raise ScenarioError(f"{path}: verdict {verdict!r} unknown; use one of {', '.join(VERDICTS)}")
    ev = _need(raw, "evidence", path, dict)
    probe = dict(_need(ev, "probe", f"{path} [evidence]", dict))
    if "where" not in probe and not ("file" in probe and "at" in probe):
        raise ScenarioError(f"{path} [evidence.probe]: give where, or file and at (the text of the line)")
    service = _need(ev, "service", f"{path} [evidence]")
    if service not in _SERVICE_NAMES:
        raise ScenarioError(f"{path} [evidence]: unknown service {service!r}")
    evidence = Evidence(service, probe, _proof(_need(ev, "proof", f"{path} [evidence]", dict), path),
                        str(ev.get("why", "")))
    keys = ("service", "locus", "fault_type", "trigger", "mitigation", "check")
    fix = _fix(raw.get("fix"), path)
    return GroundTruth(verdict, *(str(_need(raw, k, path)) for k in keys), evidence=evidence,  # type: ignore[arg-type]
                       fix=fix, fix_service=str((raw.get("fix") or {}).get("service", "")))


def _fix(raw: Any, path: str) -> Tuple[Edit, ...]:
    """The optional `[fix]`: `edits` (file, find, replace) and `service` (default: the verdict's)."""
    if raw is None:
        return ()
    where = f"{path} [fix]"
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: must be a table with edits = [{{ file, find, replace }}]")
    unknown = sorted(set(raw) - {"edits", "service"})
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r}; allowed: edits, service")
    edits = _need(raw, "edits", where, list)
    if not edits or not all(isinstance(e, Mapping) and all(isinstance(e.get(k), str) for k in ("file", "find", "replace"))
                            for e in edits):
        raise ScenarioError(f"{where}: each edit needs file, find and replace strings")
    if "service" in raw and raw["service"] not in _SERVICE_NAMES:
        raise ScenarioError(f"{where}: unknown service {raw['service']!r}; the lab runs {', '.join(_SERVICE_NAMES)}")
    return tuple(Edit(e["file"], e["find"], e["replace"]) for e in edits)


def load_scenario(folder: str) -> Scenario:
    """Read and check a scenario folder; `ScenarioError` names the file and the field at fault."""
    folder = os.path.abspath(folder)
    path = os.path.join(folder, "scenario.toml")
    raw = _load_toml(path)
    sid = os.path.basename(folder)
    symptom = raw.get("symptom", {})
    if not isinstance(symptom, Mapping):
        raise ScenarioError(f"{path}: [symptom] must be a table")
    alert = str(symptom.get("alert", ""))
    if alert and alert not in RULES:
        raise ScenarioError(f"{path}: symptom alert {alert!r} unknown; use one of {', '.join(RULES)}")
    steps = {}
    for key in ("inject", "recover"):
        items = raw.get(key, [])
        if not isinstance(items, list):
            raise ScenarioError(f"{path}: [[{key}]] must be an array of tables")
        steps[key] = tuple(_action(a, f"{path} [[{key}]] #{i + 1}", folder) for i, a in enumerate(items))
    return Scenario(sid, folder, str(_need(raw, "title", path)), str(raw.get("summary", "")), alert,
                    {str(k): str(v) for k, v in dict(symptom.get("labels", {})).items()},
                    float(symptom.get("within_s", 45)), steps["inject"], steps["recover"],
                    tuple(raw.get("tags", ())), tuple(raw.get("noise", ())),
                    _truth(os.path.join(folder, "ground_truth.toml")))


def scenario_dirs(extra: Sequence[str] = ()) -> List[str]:
    env = [p for p in os.environ.get("PROBEBOOK_LAB_SCENARIOS", "").split(os.pathsep) if p]
    return [BUILTIN_DIR, *extra, *env]


def _candidates(extra: Sequence[str]) -> Dict[str, str]:
    found: Dict[str, str] = {}
    for root in scenario_dirs(extra):
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            if os.path.isfile(os.path.join(root, name, "scenario.toml")):
                found.setdefault(name, os.path.join(root, name))
    return found


def find_scenario(ident: str, extra: Sequence[str] = ()) -> Scenario:
    """A scenario by id (built-in or in an extra folder) or by the path of its folder."""
    if os.sep in ident or ident.startswith("."):
        if not os.path.isfile(os.path.join(ident, "scenario.toml")):
            raise ScenarioError(f"{ident}: no scenario.toml in that folder")
        return load_scenario(ident)
    found = _candidates(extra)
    if ident not in found:
        raise ScenarioError(f"unknown scenario {ident!r}; known: {', '.join(sorted(found))} "
                            f"(or give the path of a scenario folder)")
    return load_scenario(found[ident])


def all_scenarios(extra: Sequence[str] = ()) -> List[Scenario]:
    return [load_scenario(p) for p in _candidates(extra).values()]
