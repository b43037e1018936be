"""Fix validation as a stage of the lifecycle (issue 12, part 2): given a candidate fix to the code a
service runs, find the functions it changes, the calls of those functions production made (the snapshots
in the store, or captured now by a snapshot probe at the function's entry), replay them from the running
code and from the fixed code (`replay.replay`: a child process on fresh copies), and keep the result in
the store with an id (`assistant_fix_validations`), on the timeline and in the postmortem.

A call showed the defect when the verdict cites it, or when it raises on the running code. The fix is
validated when at least one such call was replayed, each of them passes with the fix and answers
differently, and every other call answers as before. Anything else says which it was and why, never
"validated" by default: no call captured, no argument rebuilt, a change outside every function.

>>> changed_functions("def f():\\n    return 1\\n\\nclass A:\\n    def g(self):\\n        return 2\\n",
...                   "def f():\\n    return 1\\n\\nclass A:\\n    def g(self):\\n        return 3\\n")
['A.g']
>>> changed_functions("X = 1\\n\\ndef f():\\n    return X\\n", "X = 2\\n\\ndef f():\\n    return X\\n")
['']
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from probebook.errors import AssistantError, ProbebookError, one_line
from probebook.evidence.predicate import holds
from probebook.session import Investigation

from .journal import Journal
from .model import Verdict, parse_locus
from .proof import load_events
from .differential import is_number
from .replay import NOTICED_MS, CapturedCall, ReplayReport, captured_calls, children, epoch, replay
from .tools import probe_events, remove_placed
from .verify import evidence_probes

__all__ = ["Fix", "FixValidation", "changed_functions", "validate_fix"]


@dataclass
class Fix:
    """A candidate fix: `files` (path relative to `root` -> the fixed text) over the code at `root`, the
    folder the service imports its code from. `python`: the interpreter to replay under (default this
    one); `paths`: more folders the service imports from."""

    root: str
    files: Dict[str, str]
    python: Optional[str] = None
    paths: Tuple[str, ...] = ()
    describe: str = ""

    @classmethod
    def from_edits(cls, root: str, edits: Sequence[Tuple[str, str, str]], **kw: Any) -> "Fix":
        """A fix written as edits (file, text found exactly once, its replacement) to the code at `root`."""
        files: Dict[str, str] = {}
        for rel, find, replace in edits:
            if rel not in files:
                try:
                    with open(os.path.join(root, rel), encoding="utf-8") as fh:
                        files[rel] = fh.read()
                except OSError as exc:
                    raise AssistantError(f"fix: cannot read {rel} under {root} ({exc.strerror}); give a path "
                                         f"relative to the folder the service runs from") from None
            n = files[rel].count(find)
            if n != 1:
                raise AssistantError(f"fix: {one_line(find, 60)!r} is in {rel} {n} times; give text found exactly once")
            files[rel] = files[rel].replace(find, replace)
        kw.setdefault("describe", "; ".join(f"{rel}: {one_line(f, 40)!r} -> {one_line(r, 40)!r}" for rel, f, r in edits))
        return cls(root, files, **kw)


@dataclass
class FixValidation:
    """The outcome: `validated`, why in `summary`, and per replayed function its `ReplayReport`."""

    validated: bool
    summary: str
    targets: List[str] = field(default_factory=list)  # path.py:Qual.name of each function the fix changes
    reports: Dict[str, ReplayReport] = field(default_factory=dict)
    captured: List[str] = field(default_factory=list)  # probes placed to capture calls for it
    id: str = ""

    def headline(self) -> str:
        return f"{'fix validated' if self.validated else 'fix NOT validated'}: {self.summary}"

    def to_dict(self) -> Dict[str, Any]:
        return {"validated": self.validated, "summary": self.summary, "targets": self.targets, "captured": self.captured,
                "reports": {k: r.to_dict() for k, r in self.reports.items()}, "id": self.id}


def changed_functions(old: str, new: str) -> List[str]:
    """The qualified names of the functions of `old` whose lines `new` changes, in order, each once; ''
    stands for a change outside every function (a module constant, an import)."""
    spans: List[Tuple[int, int, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in child.decorator_list] + [child.lineno])
                spans.append((start, child.end_lineno or child.lineno, prefix + child.name))
                walk(child, prefix + child.name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            else:
                walk(child, prefix)

    try:
        walk(ast.parse(old), "")
    except SyntaxError as exc:
        raise AssistantError(f"fix: the running file does not parse ({exc.msg}, line {exc.lineno})") from None
    lines: List[int] = []
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False).get_opcodes():
        if tag != "equal":
            lines += list(range(i1 + 1, i2 + 1)) if i2 > i1 else [max(i1, 1)]  # an insertion: the line before it
    out: List[str] = []
    for n in lines:
        inside = [s for s in spans if s[0] <= n <= s[1]]
        name = max(inside, key=lambda s: s[0])[2] if inside else ""
        if name not in out:
            out.append(name)
    return out


def _module_of(rel: str) -> str:
    parts = rel[:-3].split("/") if rel.endswith(".py") else rel.split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(inv: Investigation, verdict: Verdict, fix: Fix) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(file, qualname) of each function the fix changes; notes on what could not be placed in one."""
    out: List[Tuple[str, str]] = []
    notes: List[str] = []
    for rel, text in fix.files.items():
        try:
            with open(os.path.join(fix.root, rel), encoding="utf-8") as fh:
                old = fh.read()
        except OSError as exc:
            raise AssistantError(f"fix: cannot read {rel} under {fix.root} ({exc.strerror})") from None
        for name in changed_functions(old, text):
            if name and "<locals>" not in name:
                out.append((rel, name))
            elif name:
                notes.append(f"{rel}:{name} is a nested function: its calls cannot be replayed on their own")
            else:  # outside every function: the verdict's function, where it is in this file
                path, qual = parse_locus(verdict.locus)
                if qual and path.endswith(rel):
                    out.append((rel, qual))
                else:
                    notes.append(f"{rel} changes outside every function, and the verdict's locus is not in it")
    return list(dict.fromkeys(out)), notes


# deep enough to rebuild a request's body (the default depth of 2 cuts a list of dicts in a dict)
_DEEP = {"max_depth": 6, "max_items": 200, "max_string": 4096, "max_fields": 50}
_CUTS = ("depth", "limit", "time")


def _cut(tree: Any) -> bool:
    """Was any part of this capture tree cut at the capture's limits (so it cannot be rebuilt whole)?"""
    if not isinstance(tree, dict):
        return False
    if tree.get("not_captured") in _CUTS or tree.get("truncated"):
        return True
    return any(_cut(k) for k in children(tree))


def _recapture(inv: Investigation, verdict: Verdict, service: str, rel: str, module: str, qual: str, calls: int,
               seconds: float, say: Callable[[str], None]) -> Tuple[str, List[CapturedCall]]:
    """Calls of `qual` as production makes them now, captured deep enough to rebuild: with the verdict's
    own probe where it is in this function (its predicate then says which calls show the defect), else
    with a snapshot at the function's entry. Answers the probe's alias ('' when none could be placed)."""
    mine = [eid for eid, ev in load_events(inv.store, verdict.evidence).items()
            if ev.get("function") == qual and str(ev.get("file", "")).endswith(rel) and ev.get("service") == service]
    specs = [spec for _, spec in evidence_probes(inv, mine) if spec.get("kind") == "snapshot"][:1]
    spec = specs[0] if specs else {"kind": "snapshot", "where": f"{module}:{qual}"}
    try:
        rec = inv.probe("snapshot", service, spec["where"], when=spec.get("when"), capture=spec.get("capture", ()),
                        limits={**(spec.get("limits") or {}), **_DEEP}, rate=50, ttl=seconds + 30, partial=True)
    except ProbebookError as exc:
        say(f"fix validation: cannot capture calls of {module}:{qual}: {one_line(exc, 160)}")
        return "", []
    say(f"fix validation: probe {rec.alias} at {spec['where']} captures calls of {qual} for up to {seconds:g}s")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and len(probe_events(inv, rec, limit=calls)) < calls:
            time.sleep(0.25)
    finally:
        remove_placed(inv, [rec])
    out = []
    for ev in probe_events(inv, rec, limit=calls):
        args = ev.get("arguments")
        args = json.loads(args) if isinstance(args, str) else dict(args or {})
        failed = bool(specs) and verdict.predicate is not None and holds(verdict.predicate, ev)
        out.append(CapturedCall(str(ev["evidence_id"]), args, failed, epoch(ev.get("ts"))))
    return rec.alias, out


def time_bound(inv: Investigation, verdict: Verdict) -> Optional[float]:
    """The time in ms the proof says a call with the defect takes at least (``cpu_ms >= 70.35``, a duration
    metric's ``value >= 82.7``), at least `NOTICED_MS`: a replayed call that takes that long on the running
    code shows the defect there too, the fix is judged on it by its time. None for any other proof."""
    pred = verdict.predicate
    if pred is None or pred.op not in (">", ">=") or not is_number(pred.value) or pred.value <= 0:
        return None
    name = pred.capture or pred.field
    timed = name.endswith("_ms") or (name == "value" and any(
        e.get("unit") == "ms" for e in load_events(inv.store, verdict.evidence[:5]).values()))
    return max(float(pred.value), NOTICED_MS) if timed else None


def validate_fix(inv: Investigation, verdict: Verdict, fix: Fix, service: Optional[str] = None, calls: int = 20,
                 capture_s: float = 20.0, timeout: float = 60.0,
                 progress: Optional[Callable[[str], None]] = None) -> FixValidation:
    """Replay the production calls of each function `fix` changes, from the running code and from the
    fixed code, and judge. Calls come from the store; where none of those that showed the defect can be
    rebuilt (none stored, or cut at the capture's limits) and `capture_s` is above 0, up to `calls` of them
    are captured again on `service` (the verdict's) first, deeper (`_recapture`). The result is kept
    (`assistant_fix_validations`) and put on the timeline."""
    say = progress or (lambda line: None)
    if not fix.files:
        raise AssistantError("fix: no file changed; give the fixed text of at least one file")
    service = service or verdict.service
    targets, notes = _targets(inv, verdict, fix)
    bound = time_bound(inv, verdict)
    out = FixValidation(False, "", targets=[f"{rel}:{q}" for rel, q in targets])
    inv.mark(f"fix validation started: {fix.describe or ', '.join(fix.files)}")
    for rel, qual in targets:
        locus = f"{rel}:{qual}"
        found = captured_calls(inv, locus, failing=verdict.evidence, limit=calls)
        whole = [c for c in found if not any(_cut(t) for t in c.arguments.values())]
        if capture_s > 0 and service and not any(c.failed for c in whole):
            # none of the calls that showed the defect can be rebuilt (none stored, or cut at the capture's
            # limits): capture production's calls again, deep enough
            alias, again = _recapture(inv, verdict, service, rel, _module_of(rel), qual, calls, capture_s, say)
            if alias:
                out.captured.append(alias)
            found = again or found
        if not found:
            notes.append(f"no call of {locus} was captured in this investigation")
            continue
        try:
            report = replay(found, fix.root, _module_of(rel), qual, fix.files, python=fix.python, paths=fix.paths,
                            timeout=timeout)
        except AssistantError as exc:
            notes.append(f"{locus}: {one_line(exc, 200)}")
            continue
        for row in report.rows:  # a call that raises on the running code showed the defect too
            if not row["before"].get("ok") and not row["failed_in_production"]:
                row["failed_in_production"] = True
            elif bound is not None and (row["before"].get("ms") or 0.0) >= bound:  # so does one as slow as proven
                row["failed_in_production"] = True
        out.reports[locus] = report
        say(f"fix validation: {locus}: {report.summary()}")
    out.validated = bool(out.reports) and all(r.validated for r in out.reports.values())
    parts = [f"{locus}: {r.summary()}" for locus, r in out.reports.items()] + notes
    out.summary = "; ".join(parts) or "nothing to replay"
    out.id = Journal(inv.store).fix_validation(verdict.id, out.validated, out.summary, out.to_dict())
    inv.store.add_timeline(f"fix validation: {out.headline()}", source="assistant", ref=out.id)
    return out

