"""One exception tree: every class drawn in `probebook.errors`' docstring where it sits, each also a
stdlib type a caller would catch, re-exported from the package; one `one_line`."""

from __future__ import annotations

import builtins
import re

import pytest

import probebook
import probebook.errors as errors

CLASSES = {name: getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)}
_DRAWN = re.compile(r"^ {4}[│ ]*(?:[├└]── )?(\w+)(?: +(\w+))?", re.M)


def _drawing():
    """(class, its parent as drawn, its stdlib type as drawn) for each row of the docstring's tree."""
    rows, stack = [], []
    for line in errors.__doc__.splitlines():
        m = _DRAWN.match(line)
        if not m or m.group(1) not in CLASSES and m.group(1) != "Exception":
            continue
        depth = (m.start(1) - 4) // 4
        del stack[depth:]
        parent = stack[-1] if stack else None
        stack.append(m.group(1))
        stdlib = m.group(2) if m.group(2) and m.group(2)[0].isupper() else None
        rows.append((m.group(1), parent, stdlib))
    return rows


def test_the_docstring_draws_every_class_under_its_real_parent_with_its_stdlib_type():
    rows = _drawing()
    assert sorted(name for name, _, _ in rows if name != "Exception") == sorted(CLASSES)
    for name, parent, stdlib in rows:
        if parent is None:
            continue
        cls = CLASSES[name]
        assert cls.__bases__[0] is (CLASSES.get(parent) or Exception), f"{name} is drawn under {parent}"
        if stdlib:
            assert issubclass(cls, getattr(builtins, stdlib))
            assert stdlib in {b.__name__ for b in cls.__bases__}, f"{name}: drawn as {stdlib}, not a direct base"


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_each_error_is_ours_and_a_stdlib_type_a_caller_would_catch(name):
    cls = CLASSES[name]
    assert issubclass(cls, errors.ProbebookError)
    if cls is not errors.ProbebookError:
        stdlib = [c for c in cls.__mro__ if c.__module__ == "builtins" and c not in (Exception, BaseException, object)]
        assert stdlib, f"{name} is only an Exception"
    assert getattr(probebook, name) is cls  # `from probebook import SpecError`


def test_the_old_homes_still_hand_out_the_same_classes():
    from probebook.agent import ProbebookError, SpecError
    from probebook.connectors import AgentUnreachable, ConnectorError

    assert (ProbebookError, SpecError) == (errors.ProbebookError, errors.SpecError)
    assert (ConnectorError, AgentUnreachable) == (errors.ConnectorError, errors.AgentUnreachable)


def test_error_fields_and_plain_messages():
    assert errors.SpecError("ttl: bad", "ttl").field == "ttl"
    assert errors.LocationError("no code").field == "where" and errors.ExpressionError("x").field == "when"
    assert str(errors.ProbeNotFound("no probe 'p9'")) == "no probe 'p9'"  # not KeyError's quotes
    assert errors.AgentAuthError("401", status=401).status == 401
    assert errors.AlertPayloadError("bad").status == 422


@pytest.mark.parametrize("text, limit, expected", [
    ("one\n  two\tthree ", 400, "one two three"),
    ("x" * 10, 10, "x" * 10),
    ("x" * 11, 10, "x" * 9 + "…"),
    (ValueError("Binder Error:\n column x"), 400, "Binder Error: column x"),
])
def test_one_line(text, limit, expected):
    assert errors.one_line(text, limit) == expected
    assert len(errors.one_line(text, limit)) <= limit


def test_the_evidence_store_raises_ours_not_duckdbs(tmp_path):
    pytest.importorskip("duckdb")
    from probebook.evidence import EvidenceStore

    with pytest.raises(errors.EvidenceError, match="^IO Error: .*directory"):
        EvidenceStore(str(tmp_path))  # a folder, not a file
    store = EvidenceStore()
    with pytest.raises(errors.EvidenceQueryError, match="Parser Error") as bad_sql:
        store.sql("SELEC 1")
    assert isinstance(bad_sql.value, ValueError) and "\n" not in str(bad_sql.value)
    with pytest.raises(errors.EvidenceQueryError, match="unknown table 'nope'"):
        store.frame("nope")
    store.close()
    with pytest.raises(errors.EvidenceError):
        store.add_timeline("after close")
