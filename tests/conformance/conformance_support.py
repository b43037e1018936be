"""Helpers of the conformance tests: where a marker of shapes.py is, and the events of one kind.

Imported by name from the test modules; a `conftest` is not importable by name once several folders
have one (whichever pytest loaded last wins)."""

import os
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))


def marker_line(name: str) -> int:
    """Line number of the `# at:name` marker in shapes.py."""
    with open(os.path.join(HERE, "shapes.py")) as fh:
        for i, text in enumerate(fh, 1):
            if text.rstrip().endswith(f"at:{name}"):
                return i
    raise LookupError(name)


def where(name: str) -> str:
    return f"conformance/shapes.py:{marker_line(name)}"


def events(agent, kind: str) -> List:
    return [e for e in agent.drain_events() if e.kind == kind]
