"""Fix validation by replaying captured production inputs (issue 12, part 2): the snapshots that proved a
cause hold the arguments the function received in production; run that function again, from the running
source and from the fixed source, on those arguments, in a separate process on a fresh copy of the code,
and compare, call by call.

`captured_calls(inv, locus)` reads the calls out of the store (snapshot events at the function, with their
arguments); `replay(calls, root, module, qualname, fixed)` runs them twice (the code as it is under `root`,
and the same tree with `fixed` files replaced) and answers a `ReplayReport`: before and after per call,
which calls could not be rebuilt and why, and whether the fix holds (every call that failed now passes,
every call that passed answers the same). A value that cannot be made again (a connection, a file open for
reading, a list cut at the capture's limits) stands as a tripwire: a call that never uses it is replayed all
the same, one that uses it in any way stops and is reported not rebuilt, with the value's place
(``self.pool._idle``). A captured lock is replaced by a fresh one, and a file production only wrote to (a
log) by a file in memory, and the report says so. The child process is the standard library only, so it runs under
the service's own interpreter (`python=`); it never runs in the service's process, never touches the
service's files (a copy, SQLite databases included, made fresh for each run), and stops at `timeout`.

>>> rebuild({"type": "list", "elements": [{"type": "int", "value": 2}], "size": 1})
[2]
>>> rebuild({"type": "str", "not_captured": "redacted"})
Traceback (most recent call last):
...
probebook.assistant.replay.NotRebuilt: a str that was redacted
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from probebook.errors import AssistantError, one_line
from probebook.session import Investigation

# the child process's script: standard library only (it may run under the service's own interpreter)
_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "replay_child.py")

__all__ = ["CapturedCall", "NOTICED_MS", "ReplayReport", "captured_calls", "replay", "rebuild", "NotRebuilt", "epoch",
           "same", "fixed", "kept", "children"]


class NotRebuilt(ValueError):
    """A captured value that cannot be made again (cut, redacted, or of a kind with no constructor)."""


_SCALARS = {"int", "float", "str", "bool", "NoneType"}


def rebuild(tree: Mapping[str, Any]) -> Any:
    """The value a capture tree describes, for the builtin kinds; `NotRebuilt` says why not otherwise.
    (The child process has its own copy of these rules, which also rebuilds objects of the service's
    classes from their fields.)"""
    kind = tree.get("type")
    if "not_captured" in tree:
        raise NotRebuilt(f"a {kind} that was {_CUT.get(tree['not_captured'], tree['not_captured'])}")
    if tree.get("truncated"):
        raise NotRebuilt(f"a {kind} cut at the capture's limits")
    if kind in _SCALARS:
        return tree.get("value")
    if kind in ("list", "tuple", "set", "frozenset"):
        items = [rebuild(e) for e in tree.get("elements", [])]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
    if kind == "dict":
        return {rebuild(k): rebuild(v) for k, v in tree.get("entries", [])}
    raise NotRebuilt(f"a {kind} (only builtin values are rebuilt here)")


_CUT = {"redacted": "redacted", "depth": "cut at the capture's depth", "limit": "cut at the capture's byte limit",
        "cycle": "part of a cycle", "time": "cut at the capture's deadline", "error": "not readable"}


@dataclass
class CapturedCall:
    """One call of the function as production made it: the snapshot's evidence id and its arguments."""

    evidence_id: str
    arguments: Dict[str, Any]  # name -> capture tree
    failed: bool = False  # this call is one the verdict cites (it showed the defect)
    ts: Optional[float] = None  # when production made it (epoch seconds): the replay's clocks read that time


@dataclass
class ReplayReport:
    """Before and after, per call; the calls that could not be rebuilt; whether the fix holds."""

    rows: List[Dict[str, Any]] = field(default_factory=list)
    not_rebuilt: List[Dict[str, str]] = field(default_factory=list)
    isolation: str = ""

    @property
    def validated(self) -> bool:
        """Every replayed call that failed now passes, and every call that passed answers as before."""
        if not self.rows or not any(r["failed_in_production"] for r in self.rows):
            return False
        return all(fixed(r) if r["failed_in_production"] else kept(r) for r in self.rows)

    def summary(self) -> str:
        failing = [r for r in self.rows if r["failed_in_production"]]
        now = [r for r in failing if fixed(r)]
        by_time = [r for r in now if same(r["before"], r["after"])]
        kept_ = [r for r in self.rows if not r["failed_in_production"] and kept(r)]
        slower = [r for r in self.rows if not r["failed_in_production"] and _much_faster(r["before"], r["after"])]
        said = "fix validated" if self.validated else "fix NOT validated"
        stand = self.stand_ins
        return (f"{said}: {len(now)} of {len(failing)} failing calls now pass" + (
                    f" ({len(by_time)} by time alone, same answer: {_ms(by_time, 'before')} ms -> "
                    f"{_ms(by_time, 'after')} ms at the median)" if by_time else "")
                + f", {len(kept_)} of {len(self.rows) - len(failing)} other calls answer as before"
                + (f"; {len(slower)} other calls at least {_SLOWER}x slower" if slower else "")
                + f"; {len(self.not_rebuilt)} calls not rebuilt"
                + (f"; stand-ins: {', '.join(stand[:3])}" + (" ..." if len(stand) > 3 else "") if stand else ""))

    @property
    def stand_ins(self) -> List[str]:
        """What the replayed calls ran with in place of production's (a fresh lock for a captured one)."""
        return sorted({s for r in self.rows for side in ("before", "after") for s in r[side].get("stand_ins", [])})

    def to_dict(self) -> Dict[str, Any]:
        return {"validated": self.validated, "summary": self.summary(), "rows": self.rows,
                "not_rebuilt": self.not_rebuilt, "stand_ins": self.stand_ins, "isolation": self.isolation}


# a call counts as faster (or slower) when it takes at most 1/_SLOWER of the other side's time, and that side
# took at least NOTICED_MS ms: far beyond a child process's jitter, as a latency defect is
_SLOWER, NOTICED_MS = 5, 20.0


def same(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """The two answers say the same (the time each took, and what stood in, aside)."""
    keys = ("ok", "type", "value", "raised", "message")
    return all(before.get(k) == after.get(k) for k in keys)


def _much_faster(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """`a` took at most 1/_SLOWER of `b`'s time, `b` at least NOTICED_MS ms."""
    ta, tb = a.get("ms"), b.get("ms")
    return ta is not None and tb is not None and tb >= NOTICED_MS and ta * _SLOWER <= tb


def fixed(row: Mapping[str, Any]) -> bool:
    """A call that showed the defect passes with the fix: it answers, and differently, or the same answer
    many times faster (a latency defect: the answer was right, the time was the fault)."""
    b, a = row["before"], row["after"]
    return bool(a.get("ok")) and (not same(b, a) or _much_faster(a, b))


def kept(row: Mapping[str, Any]) -> bool:
    """A call that passed answers as before with the fix, and not many times slower."""
    return bool(row["after"].get("ok")) and same(row["before"], row["after"]) and \
        not _much_faster(row["before"], row["after"])


def _ms(rows: Sequence[Mapping[str, Any]], side: str) -> str:
    times = sorted(r[side]["ms"] for r in rows)
    return f"{times[len(times) // 2]:g}"


def captured_calls(inv: Investigation, locus: str, failing: Sequence[str] = (), limit: int = 50) -> List[CapturedCall]:
    """The calls of `locus` (``path.py:Qual.name``) the store's snapshots hold, newest last; those whose
    evidence ids are in `failing` (the verdict's) marked as failed, and at most `limit` others."""
    path, _, qualname = locus.rpartition(":")
    if not path or not qualname:
        raise AssistantError(f"locus {locus!r}: write path.py:Qual.name, as a verdict names it")
    frame = inv.sql("SELECT evidence_id, file, function, arguments, ts FROM snapshots ORDER BY ts, evidence_id")
    wanted, out, others = set(failing), [], 0
    for row in frame.to_dicts():
        if row["function"] != qualname or not str(row["file"]).endswith(path.lstrip("/")):
            continue
        args = row["arguments"]
        args = json.loads(args) if isinstance(args, str) else dict(args or {})
        is_failing = row["evidence_id"] in wanted
        if not is_failing:
            if others >= limit:
                continue
            others += 1
        out.append(CapturedCall(row["evidence_id"], args, is_failing, epoch(row.get("ts"))))
    return out


def epoch(ts: Any) -> Optional[float]:
    """An event's time as epoch seconds (the store answers tz-aware datetimes)."""
    if ts is None:
        return None
    return ts.timestamp() if hasattr(ts, "timestamp") else float(ts)


def replay(calls: Sequence[CapturedCall], root: str, module: str, qualname: str, fixed: Mapping[str, str],
           python: Optional[str] = None, timeout: float = 60.0, paths: Sequence[str] = ()) -> ReplayReport:
    """Run `module.qualname` on each call's arguments twice, from the tree at `root` as it is and with the
    files of `fixed` (path relative to `root` -> new text) replaced, each in a fresh copy in a child process.
    `paths`: more folders the service imports from (after the copy; they are read, never written)."""
    if not os.path.isdir(root):
        raise AssistantError(f"{root}: no such folder; give the folder the service's code is imported from")
    for rel in fixed:
        if os.path.isabs(rel) or ".." in rel.split(os.sep) or not os.path.isfile(os.path.join(root, rel)):
            raise AssistantError(f"fixed file {rel!r}: a path relative to {root} of a file that is there")
    payload = [{"id": c.evidence_id, "arguments": c.arguments, "ts": c.ts} for c in calls]
    base = tempfile.mkdtemp(prefix="probebook-replay-")
    try:  # each database is copied once: both sides start from the same data, whatever production writes
        databases = _databases(payload, root, os.path.join(base, "once"))
        before = _run_copy(base, root, {}, module, qualname, payload, python, timeout, paths, databases)
        after = _run_copy(base, root, fixed, module, qualname, payload, python, timeout, paths, databases)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report = ReplayReport(isolation=before.pop("_isolation", ""))
    after.pop("_isolation", None)
    for c in calls:
        b, a = before.get(c.evidence_id), after.get(c.evidence_id)
        if b is None or a is None or "not_rebuilt" in b or "not_rebuilt" in a:
            why = (b or {}).get("not_rebuilt") or ("with the fix: " + a["not_rebuilt"] if a and "not_rebuilt" in a
                                                   else "the child process gave no answer for it")
            report.not_rebuilt.append({"evidence_id": c.evidence_id, "why": why})
            continue
        report.rows.append({"evidence_id": c.evidence_id, "failed_in_production": c.failed,
                            "arguments": {k: _brief(v) for k, v in c.arguments.items()}, "before": b, "after": a})
    return report


def _brief(tree: Mapping[str, Any]) -> str:
    try:
        return one_line(repr(rebuild(tree)), 80)
    except NotRebuilt as exc:
        return f"<{exc}>"


_SQLITE = b"SQLite format 3\x00"


def _paths_in(tree: Any) -> List[str]:
    """The absolute paths among a capture tree's whole strings."""
    if not isinstance(tree, dict):
        return []
    if tree.get("type") == "str" and isinstance(tree.get("value"), str) and os.path.isabs(tree["value"]) \
            and not tree.get("truncated"):
        return [tree["value"]]
    return [p for k in children(tree) for p in _paths_in(k)]


def children(tree: Mapping[str, Any]) -> List[Any]:
    """The capture trees directly inside one: a container's elements, a dict's keys and values, an object's
    fields."""
    return list(tree.get("elements", [])) + [x for kv in tree.get("entries", []) for x in kv] + \
        list((tree.get("fields") or {}).values())


_MAX_DB = 1 << 30  # a database over 1 GiB is not copied for a replay (said in the report)
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
Databases = Tuple[Dict[str, str], Dict[str, str], Dict[str, str], Dict[str, str]]


def _sqlite_file(path: str) -> Optional[os.stat_result]:
    """The file's stat when it is a regular file whose first bytes say SQLite, else None (a client may put
    any path in a request: a FIFO or a device is never opened)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        with open(path, "rb") as fh:
            return st if fh.read(16) == _SQLITE else None
    except OSError:
        return None


def _backup(path: str, size: int, copy: str) -> str:
    """A consistent copy of the SQLite file at `path` made at `copy` with SQLite's backup from a read-only
    connection (its path escaped as a URI: '#', '?', '%'), in steps, so production's writers wait at most
    one step; '' when made, else why not."""
    if size > _MAX_DB:
        return f"{size >> 20} MiB, over the {_MAX_DB >> 20} MiB a replay copies"
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    try:
        src = sqlite3.connect(pathlib.Path(path).as_uri() + "?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst, pages=256, sleep=0.005)
        finally:
            src.close()
            dst.close()
    except sqlite3.Error as exc:
        return one_line(exc, 120)
    return ""


def _databases(payload: List[Dict[str, Any]], root: str, into: str) -> Databases:
    """Each SQLite file a replay needs, copied once (`_backup`) for both sides: the captured calls' paths
    under `root` (path -> path relative to it), those elsewhere (path -> its copy), those not copied (path
    -> why), and the files of the code's folder itself (relative path -> its copy: the tree's plain copy
    of a database being written may be torn)."""
    inside: Dict[str, str] = {}
    copied: Dict[str, str] = {}
    refused: Dict[str, str] = {}
    tree: Dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", ".git")]
        for name in files:
            path = os.path.join(folder, name)
            st = _sqlite_file(path) if name.endswith(_DB_SUFFIXES) else None
            if st is not None:
                rel = os.path.relpath(path, root)
                why = _backup(path, st.st_size, os.path.join(into, "tree", rel))
                if why:
                    refused[path] = f"copied with the code as a plain file, not by SQLite's backup: {why}"
                else:
                    tree[rel] = os.path.join(into, "tree", rel)
    for path in dict.fromkeys(p for call in payload for t in call["arguments"].values() for p in _paths_in(t)):
        st = _sqlite_file(path)
        if st is None:
            continue
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
        if not rel.startswith(".."):
            inside[path] = rel
            continue
        copy = os.path.join(into, f"{len(copied)}-{os.path.basename(path)}")
        why = _backup(path, st.st_size, copy)
        if why:
            refused[path] = why
        else:
            copied[path] = copy
    return inside, copied, refused, tree


def _run_copy(base: str, root: str, fixed: Mapping[str, str], module: str, qualname: str,
              payload: List[Dict[str, Any]], python: Optional[str], timeout: float, paths: Sequence[str],
              databases: Databases) -> Dict[str, Any]:
    """One side of the replay, in `base`/run made again (the same paths on both sides, so an answer that
    holds a path reads the same): the code's copy, and a fresh copy of each database copied once."""
    inside, copied, refused, in_code = databases
    work = os.path.join(base, "run")
    shutil.rmtree(work, ignore_errors=True)
    tree = os.path.join(work, "code")
    shutil.copytree(root, tree, ignore=shutil.ignore_patterns("__pycache__", ".git", "*.pyc"))
    for rel, once in in_code.items():  # the consistent copy in place of the tree's, without its journals
        shutil.copyfile(once, os.path.join(tree, rel))
        for side in ("-wal", "-shm", "-journal"):
            if os.path.exists(os.path.join(tree, rel + side)):
                os.remove(os.path.join(tree, rel + side))
    in_tree = len(in_code)
    named = {path: os.path.join(tree, rel) for path, rel in inside.items()}
    os.makedirs(os.path.join(work, "databases"))
    for path, once in copied.items():
        named[path] = os.path.join(work, "databases", os.path.basename(once))
        shutil.copyfile(once, named[path])
    for rel, text in fixed.items():
        with open(os.path.join(tree, rel), "w", encoding="utf-8") as fh:
            fh.write(text)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
           "HOME": work, "PROBEBOOK_REPLAY": "1", "PROBEBOOK_REPLAY_DBS": json.dumps(named)}
    try:
        done = subprocess.run([python or sys.executable, "-I", _CHILD, tree, module, qualname, *paths],
                              input=json.dumps(payload), capture_output=True, text=True, timeout=timeout,
                              cwd=tree, env=env)
    except subprocess.TimeoutExpired:
        raise AssistantError(f"replay: the calls did not finish within {timeout:g}s; replay fewer calls or "
                             f"raise timeout") from None
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode
        raise AssistantError(f"replay: {one_line(last, 300)}")
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    answers["_isolation"] = (f"ran in a child process ({os.path.basename(python or sys.executable)} -I) on a "
                             f"fresh copy of {root}" + (f" with its {in_tree} SQLite file(s) copied fresh (SQLite's "
                                                        f"backup, once for both sides)" if in_tree else
                                                        ", which holds no SQLite file")
                             + "".join(f"; {os.path.basename(p)} copied fresh from {p} (SQLite's backup, read "
                                       f"only, once for both sides) for the connections and paths the captures hold"
                                       for p in copied)
                             + "".join(f"; {p} not copied ({why})" for p, why in refused.items())
                             + "; each call's clocks (time.time, time.monotonic) set back to when production "
                               "made it; the service and its files were not touched")
    return answers
