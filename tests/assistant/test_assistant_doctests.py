"""The examples in the assistant's docstrings (and the predicate model it shares with the lab) hold."""

import doctest
import importlib
import pkgutil

import pytest

import probebook.assistant

MODULES = ["probebook.evidence.predicate"] + [
    m.name for m in pkgutil.walk_packages(probebook.assistant.__path__, "probebook.assistant.")]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
