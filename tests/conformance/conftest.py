import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from probebook.agent import Agent, AgentLimits  # noqa: E402


@pytest.fixture
def agent():
    # a loaded CI machine must not trip the CPU budget in tests that count events; it has its own test
    a = Agent(AgentLimits(cpu_budget=1.0))
    yield a
    a.close()
