"""What changed: commits and tags in git touching a service's path, and a change log of deploys,
config changes and flag flips (the lab's ``changes.jsonl``, or any file of that shape).

>>> history = GitHistory("/src/shop", {"orders": "services/orders", "payments": "services/payments"})  # doctest: +SKIP
>>> [(c.kind, c.service, c.summary) for c in history.changes(since=time.time() - 7200).changes]      # doctest: +SKIP
[('config', 'orders', 'raise the pool size to 20'), ('release', 'orders', 'tag orders-v2.8.0: ...')]

Commits are classified by the files they touch: ``flag`` when a file's name mentions a flag,
``config`` when every file is configuration (.toml, .yaml, .json, .ini, .cfg, .conf, .env, or in a
``config``/``conf`` folder), else ``code``. A tag is a ``release`` of a service when its name
starts with the service's name (``orders-v2``, ``orders/v2``) or when a commit since the tag before
it touched the service's path. Times are the committer's and the tagger's.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from probebook.errors import TelemetryInputError, one_line

from .logs import JsonLinesFile
from .timefmt import parse_time, rfc3339

__all__ = ["Change", "ChangeResult", "GitHistory", "read_change_log", "classify_paths"]

_CONFIG_EXT = {".toml", ".yaml", ".yml", ".json", ".ini", ".cfg", ".conf", ".env", ".properties"}
_SEP, _END = "\x1f", "\x1e"


@dataclass(frozen=True)
class Change:
    ts: float
    kind: str  # code | config | flag | release, or the change log's: deploy, rollback, config, flag, ...
    service: str
    summary: str
    by: str
    ref: str  # commit id, tag name, or the version deployed
    source: str  # git:REPO or changelog:FILE
    details: Dict[str, Any] = field(default_factory=dict)
    digest: str = ""  # stable over re-reads: the evidence id is made of it


@dataclass
class ChangeResult:
    changes: List[Change]
    query: Dict[str, Any]
    notes: List[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.notes)


def classify_paths(paths: Sequence[str]) -> str:
    """``flag``, ``config`` or ``code`` for a commit touching `paths`."""
    if any("flag" in os.path.basename(p).lower() for p in paths):
        return "flag"
    if paths and all(os.path.splitext(p)[1].lower() in _CONFIG_EXT or
                     any(part in ("config", "conf", "configs") for part in p.lower().split("/")[:-1])
                     for p in paths):
        return "config"
    return "code"


class GitHistory:
    """Commits and tags of one repository. `paths`: service -> folder in the repository; a service
    without a folder is the whole repository. The repository is only read (``git log``)."""

    def __init__(self, repo: str, paths: Optional[Mapping[str, str]] = None, timeout: float = 20.0) -> None:
        if shutil.which("git") is None:
            raise TelemetryInputError("git is not installed; install it to read changes from a repository")
        self.repo = os.path.abspath(os.path.expanduser(repo))
        if not os.path.isdir(self.repo):
            raise TelemetryInputError(f"git repository {repo}: no such folder")
        self.paths = {s: p.strip("/") for s, p in (paths or {}).items()}
        self.timeout = timeout
        top = self._git("rev-parse", "--show-toplevel").strip()
        self.source = f"git:{top}"

    def _git(self, *args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", self.repo, *args], capture_output=True, timeout=self.timeout,
                                  env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
        except subprocess.TimeoutExpired:
            raise TelemetryInputError(f"git {args[0]} in {self.repo} took over {self.timeout:g}s") from None
        if done.returncode != 0:
            why = one_line(done.stderr.decode("utf-8", "replace"), 200)
            if "not a git repository" in why:
                raise TelemetryInputError(f"{self.repo} is not a git repository")
            if "does not have any commits" in why:
                return ""
            raise TelemetryInputError(f"git {args[0]} in {self.repo}: {why}")
        return done.stdout.decode("utf-8", "replace")

    def changes(self, since: Optional[float] = None, until: Optional[float] = None,
                services: Optional[Sequence[str]] = None) -> ChangeResult:
        """Commits and release tags from `since` to `until` (epoch seconds), per service, oldest first."""
        names = list(services) if services else (list(self.paths) or [os.path.basename(self.source)])
        out: List[Change] = []
        for service in names:
            commits = self._commits(service, since, until)
            out += commits
            out += self._tags(service, since, until)
        out.sort(key=lambda c: (c.ts, c.service, c.ref))
        query = {"git": self.source[4:], "paths": {s: self.paths.get(s, "") for s in names}, "since": since,
                 "until": until}
        return ChangeResult(out, query)

    def _window(self, since: Optional[float], until: Optional[float]) -> List[str]:
        args = [f"--since={rfc3339(since)}"] if since is not None else []
        return args + ([f"--until={rfc3339(until)}"] if until is not None else [])

    def _commits(self, service: str, since: Optional[float], until: Optional[float]) -> List[Change]:
        path = self.paths.get(service, "")
        text = self._git("log", f"--format={_END}%H{_SEP}%ct{_SEP}%an <%ae>{_SEP}%s", "--name-only",
                         *self._window(since, until), "--", path or ".")
        out = []
        for record in text.split(_END)[1:]:
            head, _, files = record.partition("\n")
            sha, ct, author, subject = (head.split(_SEP) + ["", "", "", ""])[:4]
            touched = [f for f in files.splitlines() if f.strip()]
            out.append(Change(float(ct), classify_paths(touched), service, subject, author, sha[:12], self.source,
                              {"commit": sha, "files": touched[:50], "path": path},
                              digest=f"{service}:{sha[:16]}"))
        return out

    def _tags(self, service: str, since: Optional[float], until: Optional[float]) -> List[Change]:
        fmt = _SEP.join(["%(refname:short)", "%(objectname)", "%(*objectname)", "%(creatordate:unix)",
                         "%(taggername)%(authorname)", "%(contents:subject)"])
        rows: List[Tuple[str, str, float, str, str]] = []
        for line in self._git("for-each-ref", "--sort=creatordate", f"--format={fmt}", "refs/tags").splitlines():
            name, obj, peeled, created, by, subject = (line.split(_SEP) + [""] * 6)[:6]
            if name:
                rows.append((name, peeled or obj, float(created or 0), by, subject))
        path = self.paths.get(service, "")
        prefix = re.compile(rf"^{re.escape(service)}[-/@_]", re.IGNORECASE)
        out, previous = [], ""
        for name, commit, created, by, subject in rows:
            base, previous = previous, commit
            if (since is not None and created < since) or (until is not None and created > until):
                continue
            mine = bool(prefix.match(name)) or not path or bool(
                self._git("log", "-1", "--format=%H", f"{base}..{commit}" if base else commit, "--", path).strip())
            if mine:
                out.append(Change(created, "release", service, f"tag {name}" + (f": {subject}" if subject else ""),
                                  by, name, self.source, {"tag": name, "commit": commit, "path": path},
                                  digest=f"{service}:tag:{name}:{commit[:12]}"))
        return out


def read_change_log(path: str, since: Optional[float] = None, until: Optional[float] = None,
                    services: Optional[Sequence[str]] = None) -> ChangeResult:
    """Changes of a JSON-lines change log: ``{"ts", "kind", "service", "summary", "by", "details"}``
    per line. A missing file is an empty log (nothing has changed yet); bad lines are skipped and noted."""
    query = {"changelog": os.path.abspath(path), "since": since, "until": until}
    if not os.path.exists(path):
        return ChangeResult([], query)
    reader = JsonLinesFile(path)
    out, unreadable = [], 0
    try:
        for _, raw, obj in reader.records():
            ts = parse_time(obj.get("ts")) if obj else None
            if obj is None or ts is None or not all(isinstance(obj.get(k), str) for k in ("kind", "service")):
                unreadable += obj is not None
                continue
            if (since is not None and ts < since) or (until is not None and ts > until):
                continue
            if services and obj["service"] not in services:
                continue
            details = obj.get("details") if isinstance(obj.get("details"), dict) else {}
            ref = str(details.get("to_version") or details.get("version") or details.get("flag") or "")
            out.append(Change(ts, obj["kind"], obj["service"], str(obj.get("summary", "")), str(obj.get("by", "")),
                              ref, f"changelog:{os.path.abspath(path)}", details,
                              digest=f"{obj['service']}:{hashlib.sha1(raw).hexdigest()[:16]}"))
    except OSError as exc:
        return ChangeResult(out, query, [f"{path}: cannot read ({exc.strerror or exc})"])
    notes = reader.notes() + ([f"{os.path.basename(path)}: {unreadable} lines without ts, kind or service skipped"]
                              if unreadable else [])
    return ChangeResult(out, query, notes)
