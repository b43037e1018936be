"""The examples in the assistant's docstrings (its MCP server's, and the predicate model it shares with the lab) hold."""

import pkgutil

import pytest
from support import check_doctests, with_examples

import probebook.assistant
import probebook.mcp

MODULES = with_examples(["probebook.evidence.predicate"] + [
    m.name for pkg in (probebook.assistant, probebook.mcp) for m in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}.")])


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    check_doctests(name)
