"""One lab for the whole session: real services under the agent, real Prometheus and Alertmanager
(where installed; under CI=true they must be), on free loopback ports; stopped at the end, and nothing
may be left running."""

from __future__ import annotations

from typing import Iterator

import pytest
from support import in_ci

from labtools import lab_processes
from probebook.lab.monitoring import missing_binaries
from probebook.lab.runner import Lab, LabOptions

WINDOW = "5s"  # short alert windows keep the suite fast; the demo uses 10s


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if in_ci() and missing_binaries():  # the scenarios would pass on the lab's own health check alone
        pytest.fail(f"CI=true and the lab's tests need real monitoring: {' and '.join(missing_binaries())} not "
                    f"installed (apt-get install -y prometheus prometheus-alertmanager)", pytrace=False)
    state = str(tmp_path_factory.mktemp("lab") / "state")
    lab = Lab(LabOptions(state_dir=state, window=WINDOW))
    try:
        lab.up()
        mon = lab.manifest["monitoring"]
        assert not in_ci() or (mon["prometheus"] and mon["alertmanager"]), f"CI=true: the lab ran without {mon}"
        yield lab
    finally:
        lab.down()
    left = lab_processes(state)
    assert not left, f"lab down left processes behind: {left}"
