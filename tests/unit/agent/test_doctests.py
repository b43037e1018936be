"""The examples in the agent's docstrings run on every Python, so they stay true."""

from __future__ import annotations

import pkgutil
import sys

import pytest
from support import check_doctests, with_examples

import probebook.agent

# one backend per interpreter family: bytecode injection and code swap (<= 3.11), sys.monitoring (>= 3.12)
_OTHER_BACKEND = ({"probebook.agent.instrument.inject", "probebook.agent.instrument.codeswap"} if sys.version_info >= (3, 12)
                  else {"probebook.agent.instrument.monitor"})
# every module of the agent's subpackages too; _boot's sitecustomize starts an agent when imported
MODULES = with_examples(m.name for m in pkgutil.walk_packages(probebook.agent.__path__, "probebook.agent.")
                        if not m.ispkg and m.name not in _OTHER_BACKEND and not m.name.startswith("probebook.agent._boot."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    check_doctests(name)
