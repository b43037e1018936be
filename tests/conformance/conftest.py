import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from probebook.agent import Agent, AgentLimits  # noqa: E402


def marker_line(name: str) -> int:
    """Line number of the `# at:name` marker in shapes.py."""
    with open(os.path.join(HERE, "shapes.py")) as fh:
        for i, text in enumerate(fh, 1):
            if text.rstrip().endswith(f"at:{name}"):
                return i
    raise LookupError(name)


@pytest.fixture
def agent():
    # a loaded CI machine must not trip the CPU budget in tests that count events; it has its own test
    a = Agent(AgentLimits(cpu_budget=1.0))
    yield a
    a.close()


def where(name: str) -> str:
    return f"conformance/shapes.py:{marker_line(name)}"


def events(agent, kind):
    return [e for e in agent.drain_events() if e.kind == kind]
