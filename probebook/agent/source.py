"""The source this process is actually running: loaded modules, their files, a content hash per file.

Only files of loaded modules are served, found by path suffix exactly as probe locations are
(``shop/cart.py``), so a client sees what is deployed, not what is in git, and can never read an
arbitrary file through the agent. The hash is the sha256 of the file's bytes on disk, computed
from the same bytes the lines are served from; `ModuleSource.changed` says the file was modified
after the agent first hashed it (the process may be running older code than the disk holds).

>>> import json.decoder
>>> src = read_source("lib/python%d.%d/json/decoder.py" % sys.version_info[:2], start=1, end=1)
>>> src.lines[0][0], len(src.sha256)
(1, 64)
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
import tokenize
from types import ModuleType
from typing import Dict, List, Optional, Tuple

from probebook.errors import LocationError, SourceNotFound
from probebook.protocol.records import ModuleSource, SourceFile
from probebook.protocol.spec import plain_text

from .capture.safe_access import module_file
from .instrument.locate import modules_for_file

__all__ = ["loaded_modules", "read_source", "MAX_LINES"]

MAX_LINES = 5000  # per answer; page with start/end


# realpath -> (mtime_ns, size, sha256, first sha256 seen)
_HASHES: Dict[str, Tuple[int, int, str, str]] = {}
_HASH_LOCK = threading.Lock()


def _module_files() -> List[Tuple[str, str]]:
    out = []
    for name, mod in list(sys.modules.items()):
        fn = module_file(mod)
        if fn is not None and fn.endswith(".py"):
            out.append((name, fn))
    return sorted(out)


def _hash(path: str, data: Optional[bytes] = None) -> Tuple[str, bool]:
    """(sha256 now, changed since first seen); cached by mtime and size."""
    st = os.stat(path)
    key = os.path.realpath(path)
    with _HASH_LOCK:
        hit = _HASHES.get(key)
    if hit is not None and data is None and hit[:2] == (st.st_mtime_ns, st.st_size):
        return hit[2], hit[2] != hit[3]
    if data is None:
        with open(path, "rb") as fh:
            data = fh.read()
    digest = hashlib.sha256(data).hexdigest()
    with _HASH_LOCK:
        first = _HASHES.get(key, (0, 0, digest, digest))[3]
        _HASHES[key] = (st.st_mtime_ns, st.st_size, digest, first)
    return digest, digest != first


def loaded_modules() -> List[ModuleSource]:
    """Every loaded module with a ``.py`` file that can be read, sorted by name."""
    out = []
    for name, fn in _module_files():
        try:
            digest, changed = _hash(fn)
        except OSError:
            continue  # e.g. deleted since import: nothing to serve
        out.append(ModuleSource(name, fn, digest, changed))
    return out


def read_source(path: str, start: Optional[int] = None, end: Optional[int] = None) -> SourceFile:
    """Lines `start`..`end` (1-based, inclusive) of the loaded module file ending with `path`."""
    if not isinstance(path, str) or not path.strip() or not path.strip().endswith(".py") or not plain_text(path):
        raise LocationError(f"path: expected the path (or a suffix of it) of a loaded .py file, got {path!r}", "path")
    mods = modules_for_file(path.strip())
    if not mods:
        raise SourceNotFound(f"no loaded module has a file ending with {path!r}; list them with GET /v1/source/modules")
    if len(mods) > 1:
        names = ", ".join(sorted(str(module_file(m)) for m in mods))
        raise LocationError(f"path: {path} matches {len(mods)} loaded files ({names}); give more of the path", "path")
    fn = str(module_file(mods[0]))
    try:
        with open(fn, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise SourceNotFound(f"{fn} was loaded but cannot be read now: {exc.strerror or exc}") from None
    digest, _ = _hash(fn, data)
    text = _decode(data)
    all_lines = text.splitlines()
    first = max(1, start or 1)
    last = min(len(all_lines), end or len(all_lines))
    if end is not None and start is not None and end < start:
        raise LocationError(f"end: must be >= start ({start}), got {end}", "end")
    truncated = last - first + 1 > MAX_LINES
    if truncated:
        last = first + MAX_LINES - 1
    lines = [(n, all_lines[n - 1]) for n in range(first, last + 1)]
    return SourceFile(fn, digest, lines, len(all_lines), truncated)


def _decode(data: bytes) -> str:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        encoding = "utf-8"
    return data.decode(encoding, "replace")
