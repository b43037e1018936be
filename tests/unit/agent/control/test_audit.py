"""The hash-chained audit log: appends, and verify naming the first edited, removed or reordered entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from probebook.agent.control import audit
from probebook.agent.control.audit import GENESIS, AuditLog, entry_hash, verify


@pytest.fixture
def log_path(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    log = AuditLog(path)
    for i in range(1, 7):
        log.append("alice", "add_probe", f"p{i} at app.py:{i}", "ok")
    return path


def _lines(path):
    with open(path) as fh:
        return fh.read().splitlines()


def _write(path, lines):
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def test_entries_chain_from_genesis_with_the_documented_fields(log_path):
    entries = [json.loads(line) for line in _lines(log_path)]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert set(entries[0]) == {"seq", "ts", "who", "action", "target", "result", "prev", "hash"}
    assert entries[0]["prev"] == GENESIS
    for before, after in zip(entries, entries[1:]):
        assert after["prev"] == before["hash"]
    assert all(entry_hash(e) == e["hash"] for e in entries)
    result = verify(log_path)
    assert result.ok and result.entries == 6 and result.first_bad_seq is None


def _edit_third_entry(path, change):
    lines = _lines(path)
    entry = json.loads(lines[2])
    change(entry)
    lines[2] = json.dumps(entry)
    _write(path, lines)
    return verify(path)


def test_an_edited_entry_is_named(log_path):
    result = _edit_third_entry(log_path, lambda e: e.update(who="mallory"))
    assert not result.ok and result.first_bad_seq == 3 and "edited" in result.reason


@pytest.mark.parametrize("field, value", [("seq", 33), ("ts", 1.5), ("who", "mallory"), ("action", "remove_probe"),
                                          ("target", "p9 at other.py:1"), ("result", "refused"), ("prev", "f" * 64)])
def test_an_edit_to_any_field_is_named(log_path, field, value):
    """Every field is under the hash: a hash that left one out would let that edit through."""
    result = _edit_third_entry(log_path, lambda e: e.update({field: value}))
    assert not result.ok and result.first_bad_seq == 3, (field, result)


def test_an_edited_entry_with_a_recomputed_hash_is_still_named(log_path):
    def forge(entry):
        entry["result"] = "ok (nothing to see)"
        entry["hash"] = entry_hash(entry)

    result = _edit_third_entry(log_path, forge)
    assert not result.ok and result.first_bad_seq == 3 and "rewritten" in result.reason


def test_a_removed_entry_is_named(log_path):
    lines = _lines(log_path)
    del lines[3]
    _write(log_path, lines)
    result = verify(log_path)
    assert not result.ok and result.first_bad_seq == 4 and "removed" in result.reason


def test_entries_removed_from_the_end_are_found_with_the_head_an_agent_reported(log_path):
    head = json.loads(_lines(log_path)[-1])
    assert verify(log_path, head=f"{head['seq']}:{head['hash']}").ok
    _write(log_path, _lines(log_path)[:-2])  # the chain that is left is intact by itself
    assert verify(log_path).ok
    result = verify(log_path, head=head["hash"])
    assert not result.ok and result.first_bad_seq == 5 and "truncated" in result.reason
    proc = subprocess.run([sys.executable, "-m", "probebook.cli", "audit", "verify", log_path, "--head",
                           f"{head['seq']}:{head['hash']}"], capture_output=True, text=True)
    assert proc.returncode == 1 and "truncated" in proc.stdout


def test_a_removed_first_entry_is_named(log_path):
    _write(log_path, _lines(log_path)[1:])
    result = verify(log_path)
    assert not result.ok and result.first_bad_seq == 1 and "removed" in result.reason


def test_reordered_entries_are_named(log_path):
    lines = _lines(log_path)
    lines[1], lines[4] = lines[4], lines[1]
    _write(log_path, lines)
    result = verify(log_path)
    assert not result.ok and result.first_bad_seq == 2 and "reordered" in result.reason


def test_a_damaged_line_is_named(log_path):
    lines = _lines(log_path)
    lines[4] = lines[4][:40]
    _write(log_path, lines)
    result = verify(log_path)
    assert not result.ok and result.first_bad_seq == 5


def test_appending_after_a_torn_last_line_continues_the_chain_and_verify_reports_the_tear(log_path):
    with open(log_path, "a") as fh:
        fh.write('{"seq": 7, "ts": 1')  # a crash mid-write
    entry = AuditLog(log_path).append("bob", "remove_all", "all probes", "ok")
    assert entry is not None and entry.seq == 7
    result = verify(log_path)
    assert not result.ok and result.first_bad_seq == 7 and "line 7" in result.reason


def test_threads_and_processes_appending_at_once_keep_one_chain(tmp_path):
    path = str(tmp_path / "shared.jsonl")
    script = ("import sys\nfrom probebook.agent.control.audit import AuditLog\nlog = AuditLog(sys.argv[1])\n"
              "for i in range(40):\n    log.append('worker', 'add_probe', str(i), 'ok')\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, path]) for _ in range(2)]
    log = AuditLog(path)
    threads = [threading.Thread(target=lambda: [log.append("t", "set_limits", str(i), "ok") for i in range(40)])
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(30) for p in procs] == [0, 0]
    result = verify(path)
    assert result.ok and result.entries == 200, result.reason


def test_an_unwritable_log_never_raises_and_says_why(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = AuditLog(str(blocker / "audit.jsonl"))  # a directory that is a file
    assert log.append("alice", "add_probe", "p1", "ok") is None
    assert "not writable" in log.error and "PROBEBOOK_AUDIT" in log.error
    assert "\n" not in log.error


def test_verify_of_a_missing_file_says_so(tmp_path):
    result = verify(str(tmp_path / "none.jsonl"))
    assert not result.ok and "cannot read" in result.reason


def test_fields_are_one_line_and_bounded(tmp_path):
    path = str(tmp_path / "a.jsonl")
    AuditLog(path).append("alice\nroot", "add_probe", "x" * 5000, "ok")
    (line,) = _lines(path)
    entry = json.loads(line)
    assert entry["who"] == "alice root" and len(entry["target"]) == 1000
    assert verify(path).ok
    assert os.stat(path).st_mode & 0o777 == 0o600


KEY = b"an-audit-key-of-32-bytes-length!"


def _rechain(entries, start):
    """What an attacker without the key does after editing: compute the chain again from `start` on."""
    prev = entries[start - 1]["hash"] if start else GENESIS
    for e in entries[start:]:
        e["prev"] = prev
        e["hash"] = entry_hash(e)
        prev = e["hash"]
    return [json.dumps(e) for e in entries]


def test_a_keyed_chain_edited_and_hashed_again_without_the_key_fails(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    log = AuditLog(path, KEY)
    for i in range(1, 6):
        log.append("alice", "add_probe", f"p{i} at app.py:{i}", "ok")
    assert verify(path, key=KEY).ok
    entries = [json.loads(line) for line in _lines(path)]
    entries[2]["who"] = "mallory"
    _write(path, _rechain(entries, 2))
    result = verify(path, key=KEY)
    assert not result.ok and result.first_bad_seq == 3 and "edited" in result.reason
    # the whole log hashed again without the key passes the unkeyed check: only the key finds it
    _write(path, _rechain(entries, 0))
    assert verify(path).ok
    assert not verify(path, key=KEY).ok and verify(path, key=KEY).first_bad_seq == 1


def test_a_keyed_log_checked_without_its_key_says_to_give_it(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    AuditLog(path, KEY).append("alice", "start", "svc", "ok")
    result = verify(path)
    assert not result.ok and result.first_bad_seq == 1 and "--key-file" in result.reason
    assert not verify(path, key=b"another-key-of-enough-length").ok


def _tamper(path, kind):
    lines = _lines(path)
    if kind in ("edited", "rewritten", "first rewritten"):
        i = 0 if kind == "first rewritten" else 2
        entry = json.loads(lines[i])
        entry.update(who="mallory") if kind == "edited" else entry.update(result="ok (nothing to see)")
        if kind == "first rewritten":
            entry["prev"] = "f" * 64
        if kind != "edited":
            entry["hash"] = entry_hash(entry)
        lines[i] = json.dumps(entry)
    elif kind == "removed one":
        del lines[3]
    elif kind == "removed two":
        del lines[2:4]
    elif kind == "first removed":
        lines = lines[1:]
    elif kind == "reordered":
        lines[1], lines[4] = lines[4], lines[1]
    elif kind == "damaged":
        lines[4] = lines[4][:40]
    _write(path, lines)


@pytest.mark.parametrize("kind, bad, reason, intact", [
    ("edited", 3, "line 3: entry seq 3 does not match its hash (edited)", 2),
    ("rewritten", 3, "line 3: entry seq 3 was rewritten (entry seq 4 chains to a different hash)", 2),
    ("first rewritten", 1, "line 1: entry seq 1 does not start the chain (edited)", 0),
    ("removed one", 4, "entry seq 4 is missing: line 4 holds seq 5 (removed)", 3),
    ("removed two", 3, "entries seq 3..4 are missing before line 3 (removed)", 2),
    ("first removed", 1, "entry seq 1 is missing: line 1 holds seq 2 (removed)", 0),
    ("reordered", 2, "line 2: seq 5 where seq 2 belongs (reordered)", 1),
    ("damaged", 5, "line 5: not an audit entry (expected seq 5); the entry was edited or the line damaged", 4)])
def test_verify_says_exactly_which_entry_and_what_happened_to_it(log_path, kind, bad, reason, intact):
    """What an auditor reads: the first entry at fault, its line, the kind of tampering and how many entries
    before it hold (mutation testing found each of these could change unseen)."""
    _tamper(log_path, kind)
    result = verify(log_path)
    assert (result.ok, result.first_bad_seq, result.reason, result.entries) == (False, bad, reason, intact)


def test_the_hash_of_an_entry_is_the_one_earlier_versions_wrote():
    """A log written by an earlier agent must still verify: the canonical form an entry is hashed in (field
    order, separators, the previous hash in front) is fixed, with and without a key. Pinned values."""
    fields = {"seq": 3, "ts": 1764979200.123456, "who": "alice@notebook", "action": "add_probe",
              "target": "orders.py:42", "result": "ok: probe p-1", "prev": "ab" * 32}
    assert entry_hash(fields) == "b7fa902d00c6048facaf814c1fa12aeac4827a7514203a00b9bce411c7bb8a20"
    assert entry_hash(dict(fields, hash="ignored")) == entry_hash(fields)
    assert entry_hash(fields, key=b"k" * 32) == "0053b25bffe709c22ca25850909b1f36d45022879e05c461ce5cf7cc307b370f"


def _tail_by_reading_all(path):
    """What `_tail` must answer, read the slow way: the last line that is a whole entry, and whether the file
    ends in a torn line."""
    import json as _json

    with open(path, "rb") as fh:
        data = fh.read()
    for raw in reversed(data.split(b"\n")):
        try:
            fields = _json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            continue
        if isinstance(fields, dict) and set(fields) == set(audit._FIELDS) and type(fields["seq"]) is int:
            return fields["seq"], fields["hash"], bool(data) and not data.endswith(b"\n")
    return 0, GENESIS, bool(data) and not data.endswith(b"\n")


_C = audit._TAIL_CHUNK


@pytest.mark.parametrize("junk", [0, 1, 100, _C - 1500, _C - 1000, _C - 600, _C - 100, _C - 1, _C, _C + 1,
                                  2 * _C - 600, 2 * _C + 7, 3 * _C])
@pytest.mark.parametrize("ending", ["", "\n", "{\"seq\": 1", "not json\n"])
def test_the_tail_is_found_across_read_windows(tmp_path, junk, ending):
    """`_tail` reads the file backwards in windows of `_TAIL_CHUNK` bytes: the last whole entry is found
    wherever the windows cut it, behind junk of any length (a torn write, a damaged line), and a file that
    ends mid-line is reported torn."""
    path = str(tmp_path / "audit.jsonl")
    log = AuditLog(path)
    for i in range(24):  # ~1.1 kB each (fields are clipped to 1,000 characters): windows cut through entries
        log.append("alice", "add_probe", "x" * (900 + i), "ok")
    with open(path, "ab") as fh:
        fh.write((b"\xff" + b"z" * (junk - 2) + b"\n") if junk > 1 else b"\n" * junk)  # not UTF-8, too
        fh.write(ending.encode())
    fd = os.open(path, os.O_RDONLY)
    try:
        assert audit._tail(fd) == _tail_by_reading_all(path)
    finally:
        os.close(fd)
    log.append("bob", "remove_probe", "p-1", "ok")  # the chain goes on from the found entry
    assert log.head[0] == 25


@pytest.mark.parametrize("content", [b"", b"\n", b"junk", b"junk\n", b"\xff\xfe not utf-8\n",
                                     b"x" * (audit._TAIL_CHUNK * 2 + 5), b"y\n" * audit._TAIL_CHUNK])
def test_a_file_without_any_whole_entry_starts_the_chain(tmp_path, content):
    """No entry to chain from (an empty file, only junk, bytes that are not UTF-8): the chain starts at
    genesis, and a file that ends mid-line is said to be torn."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(content)
    fd = os.open(str(path), os.O_RDONLY)
    try:
        assert audit._tail(fd) == (0, GENESIS, bool(content) and not content.endswith(b"\n"))
    finally:
        os.close(fd)


def test_a_line_that_is_not_utf8_is_named_not_a_crash(log_path):
    log = AuditLog(log_path)
    for i in range(3):
        log.append("alice", "add_probe", f"t{i}", "ok")
    with open(log_path, "rb") as fh:
        lines = fh.read().split(b"\n")
    lines[1] = lines[1].replace(b"alice", b"al\xffce")
    with open(log_path, "wb") as fh:
        fh.write(b"\n".join(lines))
    result = verify(log_path)
    assert not result.ok and result.first_bad_seq == 2, result
    fd = os.open(log_path, os.O_RDONLY)
    try:
        assert audit._tail(fd)[0] == log.head[0]  # the last entry is still found behind it
    finally:
        os.close(fd)


def test_verify_with_the_head_gives_the_whole_answer(log_path):
    """The answers `probebook audit verify --head` prints, asserted whole (mutation testing found the head's
    answers checked by a keyword only)."""
    head = json.loads(_lines(log_path)[-1])
    whole = verify(log_path)
    with_head = verify(log_path, head=f"  {head['seq']}:{head['hash'].upper()}  ")
    assert with_head == audit.VerifyResult(True, None, f"{whole.reason}; holds the head seq {head['seq']}",
                                           whole.entries)
    _write(log_path, _lines(log_path)[:-2])
    cut = f"{head['seq']}:{head['hash']}"
    assert verify(log_path, head=cut) == audit.VerifyResult(
        False, head["seq"] - 1, f"the head {cut[:80]} is not in the log: entries after seq {head['seq'] - 2} were "
        "removed (truncated), or the head belongs to another log", head["seq"] - 2)
    empty = str(os.path.join(os.path.dirname(log_path), "empty.jsonl"))
    open(empty, "w").close()
    assert verify(empty, head=cut) == audit.VerifyResult(
        False, 1, f"the head {cut[:80]} is not in the log: entries after seq 0 were removed (truncated), or the "
        "head belongs to another log", 0)
    missing = str(os.path.join(os.path.dirname(log_path), "none", "a.jsonl"))
    assert verify(missing) == audit.VerifyResult(False, None, f"cannot read {missing}: No such file or directory")


def test_the_log_folder_is_private_and_carriage_returns_are_flattened(tmp_path):
    path = str(tmp_path / "new" / "audit.jsonl")
    AuditLog(path).append("alice\r\nroot", "add\rprobe", "x" * 1000, "ok")
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    entry = json.loads(_lines(path)[0])
    assert entry["who"] == "alice  root" and entry["action"] == "add probe" and entry["target"] == "x" * 1000
