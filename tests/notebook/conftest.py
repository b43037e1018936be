"""Fixtures of the notebook tests: the sample service under the agent, a real IPython shell with
the extension loaded, and `run` to execute a cell as a user would and read what they would see."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import pytest
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

from probebook.lab.sample import SampleService


@pytest.fixture(scope="module")
def sample():
    """One sample service for a module's tests (started under `probebook agent run`)."""
    with SampleService() as svc:
        yield svc


@pytest.fixture
def shell(tmp_path):
    """A real IPython shell with `%load_ext probebook`; the evidence file in the test's tmp dir."""
    globalipapp.start_ipython()  # once per process; later calls return None
    ip = globalipapp.get_ipython()
    ip.run_line_magic("load_ext", "probebook")
    ip.run_line_magic("config", f"Probebook.evidence_path = {str(tmp_path / 'evidence.duckdb')!r}")
    yield ip
    ip.run_line_magic("unload_ext", "probebook")  # removes the probes it placed, closes the store
    ip.config.pop("Probebook", None)  # what a test set with %config


@dataclasses.dataclass
class Cell:
    result: Any
    stdout: str
    stderr: str
    outputs: list

    @property
    def shown(self) -> str:
        """What the person reads under the cell (a magic's error line goes to stdout in a terminal shell)."""
        return self.stdout + self.stderr

    @property
    def error(self) -> Any:
        return self.result.error_in_exec or self.result.error_before_exec


@pytest.fixture
def run(shell) -> Callable[[str], Cell]:
    def _run(code: str) -> Cell:
        with capture_output() as cap:
            result = shell.run_cell(code, store_history=True)
        return Cell(result, cap.stdout, cap.stderr, cap.outputs)
    return _run


@pytest.fixture
def home(jupyter_home):
    """HOME and every Jupyter directory in tmp, for the kernel nbclient starts and for nbconvert."""
    return jupyter_home
