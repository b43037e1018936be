"""Turn a probe's `where` into the code objects to instrument.

Two forms:

- ``path/to/file.py:LINE`` matched against loaded modules by path suffix (whole path components);
- ``package.module:Qualified.name`` for a function, method, property getter, nested function
  (``outer.<locals>.inner``) or lambda bound to a name.

Code objects are found by walking what a module holds (functions, classes, static/class methods,
properties, decorator wrappers through ``__wrapped__`` and closure cells) and then every nested
code object in their constants, so closures not yet created are covered too. Parsing a `where`
is the protocol's (`probebook.protocol.spec.parse_where`); this module finds what a parsed one names.

>>> parameter_names((lambda a, *rest, k=1: a).__code__)
('a', 'k', 'rest')
"""

from __future__ import annotations

import difflib
import operator
import os
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from types import CodeType, FunctionType, ModuleType
from typing import Dict, Iterable, List, Optional, Tuple

from probebook.errors import LocationError
from probebook.protocol.spec import Where

from ..capture.safe_access import module_file, module_name

__all__ = ["ModuleCode", "modules_for_file", "module_by_name", "refuse_own", "code_line_numbers",
           "parameter_names", "code_name", "PROLOGUE_OPS", "file_on_path", "closest_loaded", "drop_stale_index",
           "why_pending"]

# Instructions that set a frame up: no line of user code is made of them alone, and nothing may be
# injected before or among them.
PROLOGUE_OPS = frozenset({"RESUME", "RETURN_GENERATOR", "GEN_START", "MAKE_CELL", "COPY_FREE_VARS", "NOP"})


def code_line_numbers(code: CodeType) -> List[int]:
    """Lines of `code` itself (not nested code) that hold instructions other than a prologue."""
    import dis

    lines = set()
    for ins in dis.get_instructions(code):
        if ins.opname in PROLOGUE_OPS:
            continue
        ln = getattr(ins, "positions", None)
        lineno = ln.lineno if ln is not None and ln.lineno is not None else None
        if lineno is None:
            lineno = _starts_line(code, ins.offset)
        if lineno is not None:
            lines.add(lineno)
    return sorted(lines)


# The qualified name of a code object (`Cart.total.<locals>.f`); before 3.11 code has only `co_name`.
code_name = operator.attrgetter("co_qualname" if sys.version_info >= (3, 11) else "co_name")


def parameter_names(code: CodeType) -> Tuple[str, ...]:
    """The function's parameters, in order: positional, keyword-only, then *args and **kwargs."""
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # CO_VARARGS, CO_VARKEYWORDS
    return tuple(code.co_varnames[:n])


def _starts_line(code: CodeType, offset: int) -> Optional[int]:
    best = None
    for start, _end, lineno in _line_ranges(code):
        if start <= offset and lineno is not None:
            best = lineno
    return best


def _line_ranges(code: CodeType) -> Iterable[Tuple[int, int, Optional[int]]]:
    if hasattr(code, "co_lines"):
        return code.co_lines()
    import dis

    starts = list(dis.findlinestarts(code))
    out = []
    for i, (off, ln) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(code.co_code)
        out.append((off, end, ln))
    return out


def _norm(path: str) -> str:
    return os.path.realpath(path).replace("\\", "/")


def _matches_suffix(filename: str, suffix: str) -> bool:
    if os.path.isabs(suffix):
        return _norm(filename) == _norm(suffix)
    full = "/" + _norm(filename).lstrip("/")
    want = "/" + suffix.lstrip("./")
    return full.endswith(want)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # probebook/
_USERS = (os.path.join(_PACKAGE, "lab") + os.sep,)  # the incident lab's services and targets: application code


def refuse_own(module: ModuleType) -> None:
    """`LocationError` when `module` is probebook's own code (the agent, its auth, audit, redaction and
    protocol, the session): a probe there could read a token or a secret before it is redacted. The
    lab's services are application code and may be probed."""
    path = os.path.abspath(module_file(module) or "")
    if path.startswith(_PACKAGE + os.sep) and not path.startswith(_USERS):
        raise LocationError(f"where: {module_name(module)} is probebook's own code; probes on the agent itself "
                            f"(its auth, audit and redaction included) are refused")


def modules_for_file(suffix: str) -> List[ModuleType]:
    """Loaded modules whose source file ends with `suffix` (whole path components)."""
    found: Dict[str, ModuleType] = {}
    for mod, fn in _loaded_sources():
        if _matches_suffix(fn, suffix):
            found.setdefault(_norm(fn), mod)
    return list(found.values())


def _loaded_sources() -> Iterable[Tuple[ModuleType, str]]:
    """Each loaded module with a ``.py`` source file, and that file."""
    for mod in list(sys.modules.values()):
        fn = module_file(mod)  # never a module's own __getattr__: adding a probe runs no user code
        if fn is not None and fn.endswith(".py"):
            yield mod, fn


def _relative(suffix: str) -> str:
    """A `where` path as the suffix matching compares it: forward slashes, no leading ``./`` or ``/``."""
    return suffix.replace("\\", "/").lstrip("./")


_INDEX_S = 30.0  # how long one look at the disk answers for (then it is dropped, see `drop_stale_index`)
_AGAIN_S = 2.0  # a file not in a look this old is looked for again (and the look took under a tenth of it)
_index_lock = threading.Lock()
_index: Optional[Tuple[float, Tuple[str, ...], Dict[str, List[str]], bool]] = None
_last_walk_s = 0.0  # how long the last look took: the next waits at least ten times that


def file_on_path(suffix: str, most_dirs: int = 50_000, most_s: float = 5.0) -> Tuple[Optional[str], bool]:
    """A file on disk that `suffix` could name once imported: under a ``sys.path`` directory (or the
    working directory), at any depth, ending with `suffix` (whole path components). Returns
    ``(path, True)`` when found, ``(None, True)`` when every directory was looked through, ``(None,
    False)`` when the look stopped at `most_dirs` directories or `most_s` seconds. Only directories an
    import can reach are looked in (names that are identifiers: no ``.git``, ``*.dist-info``,
    ``__pycache__`` or ``node_modules``); links are not followed. No import and no finder runs: the file
    system is read once, and that look answers for `_INDEX_S` seconds while ``sys.path`` stays the same;
    a file not in it is looked for again once the look is `_AGAIN_S` old and ten times as old as the last
    look took (a client that asks again and again makes the agent read the disk a tenth of the time at
    most, and a file written since is found). The bound is counted in directories, so whether a path is
    refused does not depend on how busy the host is; the time bound is a safety net."""
    if os.path.isabs(suffix):
        return (suffix if os.path.isfile(suffix) else None), True
    want = _relative(suffix)
    roots = _roots()
    for root in roots:  # the common case first: the suffix is a path from a sys.path entry
        if os.path.isfile(os.path.join(root, want)):
            return os.path.join(root, want), True
    name = want.rsplit("/", 1)[-1]
    for fresh in (_INDEX_S, max(_AGAIN_S, 10 * _last_walk_s)):  # not in a look a while old: look again
        by_name, complete = _disk_index(roots, most_dirs, most_s, fresh)
        for path in by_name.get(name, ()):
            if _matches_suffix(path, want):
                return path, True
    return None, complete


def _roots() -> Tuple[str, ...]:
    roots: Dict[str, str] = {}
    for entry in [*sys.path, os.getcwd()]:
        root = entry or os.getcwd()
        if isinstance(root, str) and os.path.isdir(root):
            roots.setdefault(_norm(root), root)
    return tuple(roots.values())


def _disk_index(roots: Tuple[str, ...], most_dirs: int, most_s: float, fresh: float
                ) -> Tuple[Dict[str, List[str]], bool]:
    """Every ``.py`` file under `roots` by name, and whether the look was whole: a look under `fresh`
    seconds old is taken again."""
    global _index, _last_walk_s
    with _index_lock:
        now = time.monotonic()
        if _index is not None and _index[1] == roots and now - _index[0] < fresh:
            return _index[2], _index[3]
        by_name: Dict[str, List[str]] = {}
        seen, ends, complete = 0, now + most_s, True
        for root in roots:
            for dirpath, dirs, files in os.walk(root):
                seen += 1
                if seen > most_dirs or time.monotonic() > ends:
                    complete = False
                    break
                dirs[:] = [d for d in dirs if d.isidentifier() and d not in ("__pycache__", "node_modules")]
                for f in files:
                    if f.endswith(".py"):
                        by_name.setdefault(f, []).append(os.path.join(dirpath, f))
            if not complete:
                break
        _index, _last_walk_s = (now, roots, by_name, complete), time.monotonic() - now
        return by_name, complete


def drop_stale_index() -> None:
    """Let go of a look at the disk older than `_INDEX_S` (the agent's housekeeping calls this)."""
    global _index
    if _index is not None:
        with _index_lock:  # checked again inside: a look made meanwhile stays
            if _index is not None and time.monotonic() - _index[0] >= _INDEX_S:
                _index = None


def closest_loaded(suffix: str, n: int = 3) -> List[str]:
    """The loaded modules' files nearest to `suffix`, each as many path components long as it."""
    want = _relative(suffix)
    depth = want.count("/") + 1
    tails = {"/".join(fn.replace("\\", "/").split("/")[-depth:]) for _, fn in _loaded_sources()}
    return difflib.get_close_matches(want, sorted(tails), n=n, cutoff=0.6)


def why_pending(where: Where, pending: bool) -> str:
    """Why a `FILE:LINE` probe whose file no module has loaded waits, or `LocationError` when the file is
    found nowhere (not loaded, not on disk under sys.path) and the spec did not say `pending: true`."""
    found, complete = file_on_path(where.file)  # type: ignore[arg-type]
    if found is not None:
        return f"waiting for {where.file} to be imported"
    if not complete:
        return f"waiting for {where.file} to be imported (not found in the directories of sys.path looked at)"
    if pending:
        return f"waiting for {where.file} to be imported; no file ending with it was found on sys.path (pending: true)"
    near = closest_loaded(where.file)  # type: ignore[arg-type]
    raise LocationError(
        f"where: {where.file} is in no loaded module and no file on sys.path ends with it"
        + (f"; closest loaded: {', '.join(near)}" if near else "")
        + "; fix the path, or pass pending: true (--pending) to wait for it anyway", "where")


def module_by_name(name: str) -> Optional[ModuleType]:
    mod = sys.modules.get(name)
    return mod if issubclass(type(mod), ModuleType) else None


@dataclass
class ModuleCode:
    """Every function code object a module holds, with nested-code parents and qualnames."""

    module: ModuleType
    codes: List[CodeType] = field(default_factory=list)
    parent: Dict[int, CodeType] = field(default_factory=dict)
    qualname: Dict[int, str] = field(default_factory=dict)

    @classmethod
    def scan(cls, module: ModuleType) -> "ModuleCode":
        mc = cls(module)
        filename = module_file(module)
        seen_objs: set = set()
        ns = vars(module)
        for value in list(ns.values()):
            mc._walk_value(value, filename, seen_objs, depth=0)
        return mc

    def _add_code(self, code: CodeType, qualname: str, parent: Optional[CodeType]) -> None:
        if id(code) in self.qualname:
            return
        self.codes.append(code)
        self.qualname[id(code)] = qualname
        if parent is not None:
            self.parent[id(code)] = parent
        for const in code.co_consts:
            if isinstance(const, CodeType):
                self._add_code(const, f"{qualname}.<locals>.{const.co_name}", code)

    def _walk_value(self, value: object, filename: Optional[str], seen: set, depth: int) -> None:
        if depth > 4 or id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, FunctionType):
            code = value.__code__
            if filename is None or _same_file(code.co_filename, filename):
                self._add_code(code, value.__qualname__, None)
            inner = value.__dict__.get("__wrapped__")
            if inner is not None:
                self._walk_value(inner, filename, seen, depth + 1)
            for cell in value.__closure__ or ():
                try:
                    content = cell.cell_contents
                except ValueError:
                    continue
                if isinstance(content, (FunctionType, staticmethod, classmethod, property)):
                    self._walk_value(content, filename, seen, depth + 1)
        elif isinstance(value, (staticmethod, classmethod)):
            self._walk_value(value.__func__, filename, seen, depth + 1)
        elif isinstance(value, property):
            for fn in (value.fget, value.fset, value.fdel):
                if fn is not None:
                    self._walk_value(fn, filename, seen, depth + 1)
        elif isinstance(value, types.MethodType):
            self._walk_value(value.__func__, filename, seen, depth + 1)
        elif isinstance(value, type) and value.__module__ == self.module.__name__:
            for member in list(vars(value).values()):
                self._walk_value(member, filename, seen, depth + 1)

    def innermost_for_line(self, line: int) -> CodeType:
        """The code object that runs `line`: the innermost body containing it."""
        holders = [c for c in self.codes if line in _lines_cached(c)]
        if not holders:
            raise LocationError(self._no_code_message(line))
        inside = [c for c in holders if c.co_firstlineno < line] or holders
        return max(inside, key=lambda c: c.co_firstlineno)

    def by_qualname(self, qualname: str) -> CodeType:
        matches = [c for c in self.codes if self.qualname[id(c)] == qualname]
        if not matches:
            names = sorted({q for q in self.qualname.values() if "<locals>" not in q})
            near = [n for n in names if n.split(".")[-1] == qualname.split(".")[-1]] or names[:8]
            raise LocationError(
                f"where: no function {qualname!r} in module {self.module.__name__}; "
                f"candidates: {', '.join(near) or 'none'}"
            )
        return matches[0]

    def _no_code_message(self, line: int) -> str:
        all_lines = sorted({ln for c in self.codes for ln in _lines_cached(c)})
        before = [ln for ln in all_lines if ln < line][-1:]
        after = [ln for ln in all_lines if ln > line][:1]
        near = " or ".join(str(x) for x in before + after) or "none in this file"
        name = module_file(self.module) or module_name(self.module)
        return (
            f"where: line {line} of {name} holds no code inside a function (blank, comment, "
            f"decorator or module level); nearest lines that do: {near}"
        )


_LINES_CACHE: Dict[int, Tuple[CodeType, frozenset]] = {}


def _lines_cached(code: CodeType) -> frozenset:
    hit = _LINES_CACHE.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    lines = frozenset(code_line_numbers(code))
    if len(_LINES_CACHE) > 4096:
        _LINES_CACHE.clear()
    _LINES_CACHE[id(code)] = (code, lines)
    return lines


def _same_file(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return _norm(a) == _norm(b)
    except (OSError, ValueError):
        return False
