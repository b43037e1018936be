"""Tokens from files, constant-time matching, and the failed-authentication brake."""

from __future__ import annotations

import os
import stat

import pytest

from probebook.agent.control.auth import FailedAuthLimiter
from probebook.protocol.tokens import Tokens, write_token_file
from probebook.errors import TokenFileError


def test_token_file_names_and_secrets(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# who may probe\nalice:alice-secret-1\n\nbob: bob-secret-22 \nlonely-secret-333\n")
    tokens = Tokens.from_file(str(path))
    assert sorted(tokens) == ["alice", "bob", "default"]
    assert tokens.match("alice-secret-1") == "alice" and tokens.match("bob-secret-22") == "bob"
    assert tokens.match("lonely-secret-333") == "default"
    assert tokens.match("alice-secret-") is None and tokens.match("") is None
    assert "alice-secret-1" not in repr(tokens)


@pytest.mark.parametrize("text, message", [
    ("", "holds no tokens"),
    ("alice:short\n", "at least 8"),
    ("alice:one-secret-1\nalice:two-secret-2\n", "given twice"),
    ("al ice:one-secret-1\n", "name:secret"),
])
def test_bad_token_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(TokenFileError, match=message) as info:
        Tokens.from_file(str(path))
    assert "\n" not in str(info.value)


def test_missing_token_file(tmp_path):
    with pytest.raises(TokenFileError, match="readable file"):
        Tokens.from_file(str(tmp_path / "none"))


def test_generated_token_file_is_private_and_loads(tmp_path):
    path, secret = write_token_file(str(tmp_path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Tokens.from_file(path).match(secret) == "default"


def test_failures_lock_an_address_out_until_the_window_passes():
    now = [100.0]
    limiter = FailedAuthLimiter(max_failures=3, window=60, clock=lambda: now[0])
    assert [limiter.failed("10.0.0.1") for _ in range(3)] == [False, False, True]
    assert limiter.retry_after("10.0.0.1") == 60
    assert limiter.retry_after("10.0.0.2") == 0  # per address
    now[0] += 59.9
    assert 0 < limiter.retry_after("10.0.0.1") < 0.2  # still locked out just before the window ends
    now[0] += 0.1
    assert limiter.retry_after("10.0.0.1") == 0


def test_the_brake_remembers_a_bounded_number_of_addresses():
    limiter = FailedAuthLimiter(max_failures=2, window=60, max_addresses=10)
    for i in range(100):
        limiter.failed(f"addr-{i}")
    assert len(limiter._failures) == 10
