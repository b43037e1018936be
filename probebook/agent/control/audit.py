"""The append-only, hash-chained audit log of control actions.

One JSON object per line: ``{"seq", "ts", "who", "action", "target", "result", "prev", "hash"}``,
where ``hash = sha256(prev + canonical JSON of the entry without "hash")`` and ``prev`` is the
hash of the entry before (64 zeros for the first). Editing, removing or reordering an entry
breaks the chain, and `verify` names the first entry at fault. With a key (``PROBEBOOK_AUDIT_KEY_FILE``)
the hash is an HMAC-SHA256 under it: whoever edits the log and computes the chain again without the
key is found by `verify` with the key, even with no head to compare.

Several processes of one service (pre-fork workers) may share a file: an append takes an
exclusive ``flock`` and continues the chain from the file's last entry, so the chain stays one.
Writes are flushed at once and fsync'ed at most once a second ("fsync-light").

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "audit.jsonl")
>>> log = AuditLog(path)
>>> log.append("alice", "add_probe", "p1 at app.py:3", "ok").seq
1
>>> verify(path)
VerifyResult(ok=True, first_bad_seq=None, reason='1 entries, chain intact', entries=1)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

try:  # Unix: lets worker processes share one chain
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per file
    fcntl = None  # type: ignore[assignment]

from probebook.protocol.fleet import canonical_json

__all__ = ["AuditEntry", "AuditLog", "VerifyResult", "GENESIS", "entry_hash", "verify", "read_key"]

GENESIS = "0" * 64
_FIELDS = ("seq", "ts", "who", "action", "target", "result", "prev", "hash")
_MAX_TEXT = 1000
_FSYNC_EVERY = 1.0
_TAIL_CHUNK = 16384


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: float
    who: str
    action: str
    target: str
    result: str
    prev: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    """`ok`, or the first entry at fault (`first_bad_seq`) and why."""

    ok: bool
    first_bad_seq: Optional[int]
    reason: str
    entries: int = 0


_MIN_KEY = 16


def entry_hash(fields: Dict[str, Any], key: Optional[bytes] = None) -> str:
    """The chain hash of an entry given as a dict (its "hash" key, if any, is ignored); with `key`, an
    HMAC-SHA256 under it."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    data = (str(body.get("prev", "")) + canonical_json(body)).encode("utf-8")
    return hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()


def read_key(path: str) -> bytes:
    """The audit key in the file at `path` (its bytes, surrounding whitespace removed); ValueError with a
    one-line reason when it cannot be read or is shorter than 16 bytes."""
    try:
        with open(path, "rb") as fh:
            key = fh.read().strip()
    except OSError as exc:
        raise ValueError(f"audit key file {path}: {exc.strerror or exc}") from None
    if len(key) < _MIN_KEY:
        raise ValueError(f"audit key file {path}: the key must be at least {_MIN_KEY} bytes; make one with: "
                         f"head -c 32 /dev/urandom | base64 > {path}")
    return key


def _clip(text: Any) -> str:
    s = str(text).replace("\n", " ").replace("\r", " ")
    return s if len(s) <= _MAX_TEXT else s[: _MAX_TEXT - 3] + "..."


class AuditLog:
    """Appends entries to `path`; never raises: a failure is kept in `error` (health reports it)."""

    def __init__(self, path: str, key: Optional[bytes] = None) -> None:
        self.path = os.path.abspath(path)
        self._key = key
        self.error = ""
        self.head: Tuple[int, str] = (0, GENESIS)
        self._lock = threading.Lock()
        self._last_sync = 0.0

    def append(self, who: str, action: str, target: str, result: str) -> Optional[AuditEntry]:
        """Write one entry at the end of the chain; None (and `error` set) when the file cannot be written."""
        with self._lock:
            try:
                entry = self._append_locked(_clip(who), _clip(action), _clip(target), _clip(result))
            except (OSError, ValueError) as exc:
                self.error = f"audit log {self.path} not writable: {exc}; set PROBEBOOK_AUDIT to a writable file"
                return None
            self.error = ""
            self.head = (entry.seq, entry.hash)
            return entry

    def _append_locked(self, who: str, action: str, target: str, result: str) -> AuditEntry:
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            seq, prev, torn = _tail(fd)
            fields: Dict[str, Any] = {"seq": seq + 1, "ts": round(time.time(), 6), "who": who, "action": action,
                                      "target": target, "result": result, "prev": prev}
            fields["hash"] = entry_hash(fields, self._key)
            line = ("\n" if torn else "") + canonical_json(fields) + "\n"
            os.write(fd, line.encode("utf-8"))
            now = time.monotonic()
            if now - self._last_sync >= _FSYNC_EVERY:
                os.fsync(fd)
                self._last_sync = now
            return AuditEntry(**fields)
        finally:
            os.close(fd)  # closing also drops the flock


def _tail(fd: int) -> Tuple[int, str, bool]:
    """(seq, hash) of the last well-formed entry, and whether the file ends in a torn line."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS, False
    end, buf = size, b""
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        buf = os.pread(fd, end - start, start) + buf if hasattr(os, "pread") else _read_at(fd, start, end) + buf
        end = start
        lines = buf.split(b"\n")
        complete = lines[1:] if end > 0 else lines  # the first piece may be cut mid-line
        for raw in reversed(complete):
            fields = _parse(raw.decode("utf-8", "replace"))
            if fields is not None:
                return int(fields["seq"]), str(fields["hash"]), not buf.endswith(b"\n")
    return 0, GENESIS, not buf.endswith(b"\n")


def _read_at(fd: int, start: int, end: int) -> bytes:  # pragma: no cover - platforms without pread
    os.lseek(fd, start, os.SEEK_SET)
    return os.read(fd, end - start)


def _parse(raw: str) -> Optional[Dict[str, Any]]:
    raw = raw.strip()
    if not raw:
        return None
    try:
        fields = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(fields, dict) or set(fields) != set(_FIELDS) or type(fields["seq"]) is not int:
        return None
    return fields


def _lines(path: str) -> List[Tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [(n, line.rstrip("\n")) for n, line in enumerate(fh, 1) if line.strip()]


def verify(path: str, head: Optional[str] = None, key: Optional[bytes] = None) -> VerifyResult:
    """Check the chain of the audit log at `path`.

    Names the first entry that was edited (its hash does not match its content), removed (the
    next one does not follow it), or reordered (it appears after a later entry). With `head` (the
    ``hash`` or ``seq:hash`` an agent reported in health), entries removed from the end are found too:
    the chain must still hold that entry. A log written with a key is verified with that `key`.
    """
    try:
        lines = _lines(path)
    except OSError as exc:
        return VerifyResult(False, None, f"cannot read {path}: {exc.strerror or exc}")
    parsed = [(n, _parse(raw)) for n, raw in lines]
    result = _verify_chain(parsed, key)
    if not result.ok or not head:
        return result
    want_seq, _, want_hash = head.strip().rpartition(":")
    entries = [f for _, f in parsed]  # an intact chain: every line is an entry
    found = next((f for f in entries if f["hash"] == want_hash.lower()), None)
    if found is None or (want_seq.isdigit() and found["seq"] != int(want_seq)):
        last = entries[-1]["seq"] if entries else 0
        return VerifyResult(False, last + 1, f"the head {head.strip()[:80]} is not in the log: entries after seq "
                                             f"{last} were removed (truncated), or the head belongs to another log",
                            len(entries))
    return VerifyResult(True, None, f"{result.reason}; holds the head seq {found['seq']}", result.entries)


def _verify_chain(parsed: List[Tuple[int, Optional[Dict[str, Any]]]], key: Optional[bytes] = None) -> VerifyResult:
    """The chain check of `verify` over (line number, parsed entry or None) pairs."""
    seqs = {f["seq"] for _, f in parsed if f is not None}
    expected_seq, expected_prev = 1, GENESIS
    for index, (lineno, fields) in enumerate(parsed):
        if fields is None:
            return VerifyResult(False, expected_seq, f"line {lineno}: not an audit entry (expected seq {expected_seq}); "
                                                     f"the entry was edited or the line damaged", index)
        seq = fields["seq"]
        if seq != expected_seq:
            if seq > expected_seq and expected_seq not in seqs:
                what = (f"entry seq {expected_seq} is missing: line {lineno} holds seq {seq} "
                        f"(removed)" if seq == expected_seq + 1 else
                        f"entries seq {expected_seq}..{seq - 1} are missing before line {lineno} (removed)")
                return VerifyResult(False, expected_seq, what, index)
            return VerifyResult(False, min(seq, expected_seq),
                                f"line {lineno}: seq {seq} where seq {expected_seq} belongs (reordered)", index)
        if entry_hash(fields, key) != fields["hash"]:
            hint = "" if key or index else " (a log written with a key is verified with it: --key-file)"
            return VerifyResult(False, seq, f"line {lineno}: entry seq {seq} does not match its hash (edited){hint}",
                                index)
        if fields["prev"] != expected_prev:
            if seq == 1:
                return VerifyResult(False, 1, f"line {lineno}: entry seq 1 does not start the chain (edited)", index)
            # the entry before was rewritten with a fresh hash: this one still chains to the old one
            return VerifyResult(False, seq - 1, f"line {parsed[index - 1][0]}: entry seq {seq - 1} was rewritten "
                                                f"(entry seq {seq} chains to a different hash)", index - 1)
        expected_seq, expected_prev = seq + 1, fields["hash"]
    return VerifyResult(True, None, f"{len(parsed)} entries, chain intact", len(parsed))
