"""Source browsing: only loaded module files, with a content hash and numbered lines."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys

import pytest

from probebook.agent.source import MAX_LINES, loaded_modules, read_source
from probebook.errors import LocationError, SourceNotFound


@pytest.fixture
def loaded(tmp_path, monkeypatch):
    """A module written for this test and imported, so it is a loaded module file."""
    pkg = tmp_path / "srcpkg_unit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    body = "".join(f"x{i} = {i}\n" for i in range(1, MAX_LINES + 21))
    (pkg / "big.py").write_text("# -*- coding: utf-8 -*-\nNAME = 'caf\u00e9'\n" + body, encoding="utf-8")
    (pkg / "unloaded.py").write_text("SECRET = 'never served'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("srcpkg_unit.big")
    yield pkg
    for name in ("srcpkg_unit.big", "srcpkg_unit"):
        sys.modules.pop(name, None)


def test_loaded_modules_have_files_and_sha256_of_their_content(loaded):
    mods = {m.name: m for m in loaded_modules()}
    big = mods["srcpkg_unit.big"]
    assert big.file == str(loaded / "big.py")
    assert big.sha256 == hashlib.sha256((loaded / "big.py").read_bytes()).hexdigest()
    assert not big.changed
    assert "json" in mods or "os" in mods


def test_lines_are_numbered_decoded_and_paged(loaded):
    src = read_source("srcpkg_unit/big.py", start=2, end=3)
    assert src.lines == [(2, "NAME = 'caf\u00e9'"), (3, "x1 = 1")]
    assert src.total_lines == MAX_LINES + 22
    whole = read_source("big.py")
    assert whole.truncated and len(whole.lines) == MAX_LINES and whole.lines[-1][0] == MAX_LINES
    assert whole.sha256 == src.sha256


def test_a_file_changed_on_disk_after_loading_is_flagged(loaded):
    read_source("srcpkg_unit/big.py")  # hashed as loaded
    path = loaded / "big.py"
    path.write_text(path.read_text() + "late = 1\n")
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    big = next(m for m in loaded_modules() if m.name == "srcpkg_unit.big")
    assert big.changed and big.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_only_loaded_module_files_are_served(loaded):
    with pytest.raises(SourceNotFound, match="no loaded module"):
        read_source("srcpkg_unit/unloaded.py")
    for path in ("/etc/passwd", "../../etc/shadow", "", "big"):
        with pytest.raises(LocationError):
            read_source(path)
    with pytest.raises(SourceNotFound):
        read_source(str(loaded / ".." / "elsewhere.py"))


def test_a_suffix_matching_several_files_asks_for_more_of_the_path(loaded):
    with pytest.raises(LocationError, match="give more of the path"):
        read_source("__init__.py")


def test_an_inverted_range_is_refused(loaded):
    with pytest.raises(LocationError, match="end"):
        read_source("srcpkg_unit/big.py", start=9, end=3)
