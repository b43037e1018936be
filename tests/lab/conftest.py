"""One lab for the whole session: real services under the agent, real Prometheus and Alertmanager
(where installed), on free loopback ports; stopped at the end, and nothing may be left running."""

from __future__ import annotations

from typing import Iterator

import pytest

from labtools import lab_processes
from probebook.lab.runner import Lab, LabOptions

WINDOW = "5s"  # short alert windows keep the suite fast; the demo uses 10s


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    state = str(tmp_path_factory.mktemp("lab") / "state")
    lab = Lab(LabOptions(state_dir=state, window=WINDOW))
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
    left = lab_processes(state)
    assert not left, f"lab down left processes behind: {left}"
