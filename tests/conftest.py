"""Fixtures more than one test folder uses. Plain helpers are in support.py (`from support import wait_for`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from probebook.lab.redis_server import RedisServer


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under CI=true a test whose required part is missing fails with the reason (`support.required`)."""
    for mark in item.iter_markers("ci_missing"):
        pytest.fail(f"CI=true and this test {mark.kwargs['reason']}", pytrace=False)


@pytest.fixture(scope="module")
def redis() -> Iterator["RedisServer"]:
    """A real redis-server on a free loopback port, one for a module's tests; stopped after them."""
    from probebook.lab.redis_server import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def jupyter_home(tmp_path, monkeypatch):
    """HOME, IPython's and every Jupyter folder in the test's own folder, for the kernels nbclient and nbval
    start and for nbconvert: nothing lands in the real home."""
    home = tmp_path / "home"
    home.mkdir()
    for var, sub in (("HOME", ""), ("IPYTHONDIR", ".ipython"), ("JUPYTER_CONFIG_DIR", "config"),
                     ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    return home
