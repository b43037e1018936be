"""The examples in the assistant's docstrings (and the predicate model it shares with the lab) hold."""

import pkgutil

import pytest
from support import check_doctests, with_examples

import probebook.assistant

MODULES = with_examples(["probebook.evidence.predicate"] + [
    m.name for m in pkgutil.walk_packages(probebook.assistant.__path__, "probebook.assistant.")])


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    check_doctests(name)
