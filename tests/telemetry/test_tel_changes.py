"""Changes from a real git repository made by the test, and from the lab's change log."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from probebook.connectors.changes import GitHistory, classify_paths, read_change_log
from probebook.errors import TelemetryInputError
from probebook.lab.changes import ChangeLog

NOW = time.time()


def _git(repo, *args, when=None):
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dana", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "Dana", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    if when is not None:
        stamp = f"@{int(when)} +0000"
        env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


def _commit(repo, files, message, when):
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message, when=when)


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "shop"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _commit(repo, {"services/orders/app.py": "v1", "services/payments/app.py": "v1"}, "first version", NOW - 86400 * 3)
    _git(repo, "tag", "-a", "orders-v1", "-m", "orders 1", when=NOW - 86400 * 3)
    _commit(repo, {"services/orders/app.py": "v2"}, "orders: batch the price lookups", NOW - 3000)
    _commit(repo, {"services/orders/config/pool.yaml": "size: 2"}, "orders: pool size 20 -> 2", NOW - 2400)
    _commit(repo, {"services/payments/feature_flags.json": "{}"}, "payments: retry flag on", NOW - 1800)
    _git(repo, "tag", "-a", "v2.8.0", "-m", "release 2.8.0", when=NOW - 1200)  # a repo-wide release
    _commit(repo, {"services/payments/app.py": "v3"}, "payments: new client", NOW - 600)
    _git(repo, "tag", "payments/v3", when=NOW - 600)  # lightweight, named for its service
    return repo


def test_commits_and_tags_per_service_path_with_kinds(repo):
    history = GitHistory(str(repo), {"orders": "services/orders", "payments": "services/payments"})
    result = history.changes(since=NOW - 7200)
    got = [(c.service, c.kind, c.summary) for c in result.changes]
    assert got == [
        ("orders", "code", "orders: batch the price lookups"),
        ("orders", "config", "orders: pool size 20 -> 2"),
        ("payments", "flag", "payments: retry flag on"),
        ("orders", "release", "tag v2.8.0: release 2.8.0"),
        ("payments", "release", "tag v2.8.0: release 2.8.0"),
        ("payments", "code", "payments: new client"),
        ("payments", "release", "tag payments/v3: payments: new client"),  # lightweight: the commit subject
    ]
    config = result.changes[1]
    assert config.by == "Dana <dana@example.com>" and len(config.ref) == 12
    assert config.details["files"] == ["services/orders/config/pool.yaml"]
    assert abs(config.ts - (NOW - 2400)) < 2 and config.source == f"git:{repo}"
    assert not result.partial and result.query["paths"]["orders"] == "services/orders"
    orders = history.changes(since=NOW - 86400 * 4, services=["orders"]).changes
    assert [c.ref for c in orders if c.kind == "release"] == ["orders-v1", "v2.8.0"]
    assert history.changes(since=NOW - 7200, until=NOW - 2000, services=["orders"]).changes[-1].kind == "config"
    again = history.changes(since=NOW - 7200)
    assert [c.digest for c in again.changes] == [c.digest for c in result.changes]  # stable ids


def test_git_mistakes_are_one_line_errors(tmp_path, repo):
    with pytest.raises(TelemetryInputError, match="no such folder"):
        GitHistory(str(tmp_path / "missing"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(TelemetryInputError, match="is not a git repository"):
        GitHistory(str(tmp_path / "plain"))
    whole = GitHistory(str(repo)).changes(since=NOW - 7200)
    assert {c.service for c in whole.changes} == {"shop"}  # no paths: the repository is one service


def test_classify_paths():
    assert classify_paths(["deploy/flags.yaml"]) == "flag"
    assert classify_paths(["a/config/x.py", "b.toml"]) == "config"
    assert classify_paths(["a.toml", "app.py"]) == "code"


def test_the_lab_change_log_with_a_half_written_line(tmp_path):
    path = str(tmp_path / "changes.jsonl")
    log = ChangeLog(path)
    log.record("deploy", "orders", "orders 2.8.0 deployed", by="ci", from_version="2.7.1", to_version="2.8.0")
    log.record("flag", "gateway", "new_checkout_flow on for 30%", by="growth-team", flag="new_checkout_flow")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"ts": 17145576, "kind": "config"}\n{"ts": 1714557')
    result = read_change_log(path, since=NOW - 60)
    assert [(c.kind, c.service, c.ref, c.by) for c in result.changes] == [
        ("deploy", "orders", "2.8.0", "ci"), ("flag", "gateway", "new_checkout_flow", "growth-team")]
    assert result.changes[0].details["from_version"] == "2.7.1"
    assert result.partial and result.notes == ["changes.jsonl: 1 partial last line skipped (still being written)",
                                               "changes.jsonl: 1 lines without ts, kind or service skipped"]
    assert read_change_log(path, since=NOW - 60, services=["gateway"]).changes[0].kind == "flag"
    assert read_change_log(str(tmp_path / "none.jsonl")).changes == []
