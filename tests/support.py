"""Helpers every test folder shares: waiting for something to come true, and ending a process started by
a test. Stdlib only, so the agent's suites import it on every Python 3.9-3.13.

Importable as `support` from any test (`pythonpath = ["tests"]` in pyproject.toml's pytest settings)::

    from support import end_process, wait_for

    port = wait_for(lambda: read_port(path), timeout=15, what="the agent's port file")
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, TypeVar, Union

__all__ = ["wait_for", "end_process", "in_ci", "required", "with_examples", "check_doctests", "within_budget", "check_table",
           "package_on_disk"]

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright drives it through executable_path
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, every: float = 0.1,
             what: Union[str, Callable[[], str]] = "the condition") -> T:
    """`predicate()`'s first true answer, asked every `every` seconds for up to `timeout` seconds.

    Past the deadline it raises AssertionError naming `what` was waited for and the last answer. `what` may
    be a callable, read only then, to show state at the moment of failure (a panel's HTML, a log's tail).

    >>> wait_for(lambda: 3)
    3
    >>> wait_for(lambda: [], timeout=0.05, every=0.01, what="events")
    Traceback (most recent call last):
    AssertionError: timed out after 0.05s waiting for events (last answer: [])
    """
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {text} (last answer: {last!r})")
        time.sleep(every)


def end_process(proc: "subprocess.Popen", wait: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `wait` seconds; close its pipes. Safe on a process that already ended."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def within_budget(took: float, limit: float) -> bool:
    """`took < limit`: a time budget holds on this machine's clock. Under `make mutation`
    (PROBEBOOK_TIMING=off, set by bench/mutation.py) mutmut's trampolines make every call of the mutated
    modules slower, so there the budget is not judged; the rest of the test still is.

    >>> within_budget(0.004, 0.01)
    True
    """
    return took < limit or os.environ.get("PROBEBOOK_TIMING") == "off"


def in_ci() -> bool:
    """Is this a CI run (`CI=true`, which `.ci/run` sets), where every part the tests need must be there?"""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def required(part: str, present: bool, install: str) -> Any:
    """The mark for tests that need `part` (Chromium, Prometheus, ...): nothing when it is there; when it
    is missing, a skip with the reason (the `-ra` summary lists it), and under CI=true a failure that says
    what is missing (`ci_missing`, failed by tests/conftest.py), so a green CI means the part was tested.

    >>> required("chromium", True, "apt-get install -y chromium").name
    'skipif'
    """
    import pytest  # here: the agent's suites import this module on Pythons where only the stdlib is sure

    reason = f"needs {part} ({install})"
    if present:
        return pytest.mark.skipif(False, reason=reason)
    return pytest.mark.ci_missing(reason=reason) if in_ci() else pytest.mark.skip(reason=reason)


def with_examples(names: Iterable[str]) -> List[str]:
    """Of the modules `names`, those whose docstrings hold examples that run: a module without any would
    pass a doctest run without checking anything, so it is left out of the parametrization."""
    import doctest
    import importlib

    def runs(test: "doctest.DocTest") -> bool:  # an example marked +SKIP is shown, never run
        return any(not e.options.get(doctest.SKIP) for e in test.examples)

    finder = doctest.DocTestFinder()
    return [n for n in names if any(runs(t) for t in finder.find(importlib.import_module(n)))]


def check_doctests(name: str) -> None:
    """Run the module's docstring examples: at least one, none failing."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no docstring examples to run"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"


def check_table(path: str, got: dict, note: str) -> None:
    """Compare `got` (row name -> answer, JSON-able) with the table written down at `path`, naming the rows
    that changed. The table holds the rows of a base Python (the first to write it) and, per other version,
    only the rows where that version answers differently. With PROBEBOOK_UPDATE_TABLE=1 this Python's
    answers are written first (base version first), one row a line, so a change reads as a diff."""
    import json
    import sys

    version = f"{sys.version_info[0]}.{sys.version_info[1]}"

    def load() -> dict:
        with open(path) as fh:
            return json.load(fh)

    def expected(stored: dict, name: str) -> Any:
        return stored["differs"].get(version, {}).get(name, stored["rows"].get(name))

    if os.environ.get("PROBEBOOK_UPDATE_TABLE") == "1":
        stored = load() if os.path.exists(path) else {"base": version, "rows": {}, "differs": {}}
        if stored["base"] == version:
            stored["rows"] = got
        else:
            stored["differs"][version] = {k: row for k, row in got.items() if stored["rows"].get(k) != row}

        def block(rows: dict) -> str:
            return "{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(row)}" for k, row in rows.items()) + "\n}"

        differs = ",\n".join(f"{json.dumps(v)}: {block(rows)}" for v, rows in sorted(stored["differs"].items()))
        with open(path, "w") as fh:
            fh.write(f'{{"note": {json.dumps(note)},\n"base": {json.dumps(stored["base"])},\n'
                     f'"rows": {block(stored["rows"])},\n"differs": {{\n{differs}\n}}}}\n')
    stored = load()
    assert version == stored["base"] or version in stored["differs"], \
        f"no rows stored for Python {version} in {os.path.basename(path)}: run with PROBEBOOK_UPDATE_TABLE=1"
    changed = [(name, expected(stored, name), row) for name, row in got.items() if expected(stored, name) != row]
    shown = "\n".join(f"  {name!r}: expected {want}, got {row}" for name, want, row in changed[:25])
    assert not changed, f"{len(changed)} of {len(got)} rows changed (first 25):\n{shown}"
    assert set(stored["rows"]) == set(got), f"rows stored that are no longer made: update {os.path.basename(path)}"


@contextlib.contextmanager
def package_on_disk(root: Any, package: str, modules: Dict[str, str]) -> Iterator[List[Any]]:
    """A service's package written under `root` (module name -> source) and imported from there while the
    block runs (answers the modules); after it, the folder leaves `sys.path` and the modules are forgotten."""
    folder = os.path.join(str(root), package)
    os.makedirs(folder)
    for name, source in {"__init__": "", **modules}.items():
        with open(os.path.join(folder, f"{name}.py"), "w", encoding="utf-8") as fh:
            fh.write(source)
    sys.path.insert(0, str(root))
    try:
        yield [importlib.import_module(f"{package}.{name}") for name in modules]
    finally:
        sys.path.remove(str(root))
        for name in [package, *(f"{package}.{m}" for m in modules)]:
            sys.modules.pop(name, None)
