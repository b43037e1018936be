"""The token file both sides read: named bearer tokens of an agent.

A token file holds ``name:secret`` lines (``#`` comments and blank lines are skipped; a line
without a name gets the name ``default``). The name is what the audit log records as *who*.
Presented tokens are compared in constant time against every known secret. The agent checks
requests against it; the notebook side reads its secret from the same file.

>>> tokens = Tokens({"alice": "s3cret-alice-0123456789"})
>>> tokens.match("s3cret-alice-0123456789"), tokens.match("guess")
('alice', None)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from typing import Dict, Iterator, Mapping, Optional, Tuple

from probebook.errors import TokenFileError

__all__ = ["Tokens", "private_dir", "write_token_file", "client_secret"]

_MIN_SECRET = 8


class Tokens(Mapping[str, str]):
    """Token name -> secret; `match` finds the name of a presented secret."""

    def __init__(self, secrets_by_name: Mapping[str, str]) -> None:
        if not secrets_by_name:
            raise TokenFileError("no tokens given; pass a token or a token file with name:secret lines")
        self._secrets: Dict[str, str] = dict(secrets_by_name)
        self._digests = [(name, hashlib.sha256(s.encode("utf-8")).digest()) for name, s in self._secrets.items()]

    @classmethod
    def single(cls, secret: str, name: str = "default") -> "Tokens":
        return cls({name: _checked_secret(secret, "token")})

    @classmethod
    def from_file(cls, path: str) -> "Tokens":
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise TokenFileError(f"token file {path}: {exc.strerror or exc}; give a readable file of name:secret lines") from None
        found: Dict[str, str] = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, secret = line.partition(":")
            if not sep:
                name, secret = "default", line
            name = name.strip()
            if not name or any(c.isspace() for c in name):
                raise TokenFileError(f"token file {path} line {n}: expected name:secret with a name without spaces")
            if name in found:
                raise TokenFileError(f"token file {path} line {n}: token name {name!r} given twice")
            found[name] = _checked_secret(secret.strip(), f"token file {path} line {n}")
        if not found:
            raise TokenFileError(f"token file {path} holds no tokens; add a line such as alice:<secret>")
        return cls(found)

    def match(self, presented: str) -> Optional[str]:
        """The name of the token equal to `presented`, or None. Constant time in the secret."""
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        found = None
        for name, known in self._digests:  # no early exit: every token is compared
            if hmac.compare_digest(digest, known):
                found = name
        return found

    def __getitem__(self, name: str) -> str:
        return self._secrets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._secrets)

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:  # never print secrets
        return f"Tokens({sorted(self._secrets)})"


def client_secret(token: Optional[str], token_file: Optional[str]) -> Optional[str]:
    """The secret a client presents: `token`, else the first of `token_file` (or $PROBEBOOK_TOKEN_FILE's),
    else $PROBEBOOK_TOKEN; None when there is none (the caller says what to pass)."""
    if token:
        return token
    path = token_file or os.environ.get("PROBEBOOK_TOKEN_FILE")
    if path:
        return next(iter(Tokens.from_file(path).values()))
    return os.environ.get("PROBEBOOK_TOKEN") or None


def _checked_secret(secret: str, where: str) -> str:
    if not isinstance(secret, str) or len(secret) < _MIN_SECRET or any(c.isspace() for c in secret):
        raise TokenFileError(f"{where}: a token must be at least {_MIN_SECRET} characters without spaces")
    return secret


def private_dir() -> str:
    """``<tmp>/probebook-<uid>``, made 0700 if missing; refused when someone else owns it or can write
    to it (a directory planted in /tmp would let them swap our token file or edit our audit log)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"probebook-{uid}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if hasattr(os, "getuid") and (st.st_uid != uid or st.st_mode & 0o022 or not os.path.isdir(path)):
        raise TokenFileError(f"{path} is not a private directory of this user; remove it, or give a token "
                             f"file and an audit path explicitly")
    return path


def write_token_file(directory: Optional[str] = None, name: str = "default") -> Tuple[str, str]:
    """Make a fresh random token in a 0600 file; return (path, secret)."""
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    directory = directory or private_dir()
    secret = secrets.token_urlsafe(24)
    fd, path = tempfile.mkstemp(prefix="token-", dir=directory)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{name}:{secret}\n")
    return path, secret
