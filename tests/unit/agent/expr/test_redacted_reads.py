"""A value read through a redacted name stays redacted whatever the expression does to reach it."""

import pytest

from probebook.agent.capture.redaction import Redactor
from probebook.agent.expr.expressions import compile_expression
from probebook.errors import EvaluationError, ExpressionError

RED = Redactor().is_redacted_name
CREDS = {"user": "alice", "password": "hunter2", "apiKey": "k-123"}


@pytest.mark.parametrize("source", ["creds['pass' + 'word']", "creds.get('pass' + 'word')",
                                    "creds[field]", "creds.get(field, '')"])
def test_a_computed_key_that_names_a_secret_is_refused_at_run_time(source):
    expr = compile_expression(source, field="capture", is_redacted_name=RED)
    with pytest.raises(EvaluationError) as err:
        expr.evaluate({"creds": CREDS, "field": "password"}, {})
    assert "redacted" in str(err.value) and "hunter2" not in str(err.value)


def test_a_computed_key_that_names_nothing_secret_still_reads():
    expr = compile_expression("creds['us' + 'er']", field="capture", is_redacted_name=RED)
    assert expr.evaluate({"creds": CREDS}, {}) == "alice"


def test_a_constant_key_that_names_a_secret_is_refused_when_the_probe_is_added():
    with pytest.raises(ExpressionError):
        compile_expression("creds['password']", field="capture", is_redacted_name=RED)


@pytest.mark.parametrize("source", [
    "str(creds)", "list(creds.values())", "creds.values()", "tuple(creds.items())", "sorted(creds.values())",
    "'|'.join(creds.values())", "max(creds.values())", "'hunter2' in creds.values()",
    "creds == {'user': 'alice', 'password': 'hunter2', 'apiKey': 'k-123'}", "str([creds])",
    "str({'outer': creds})", "str(headers)", "str(pairs)", "sorted(pairs)", "min(headers)",
])
def test_an_operation_that_reads_every_entry_of_a_mapping_with_a_secret_is_refused(source):
    """Laundering: `str(creds)` or `list(creds.values())` would carry the secret out without its name, so
    value patterns alone would have to catch it (before, they did not for `hunter2`)."""
    expr = compile_expression(source, field="capture", is_redacted_name=RED)
    frame = {"creds": CREDS, "headers": [("Accept", "*/*"), ("Authorization", "hunter2")],
             "pairs": [["user", "alice"], ["password", "hunter2"]]}
    with pytest.raises(EvaluationError) as err:
        expr.evaluate(frame, {})
    assert "redacted" in str(err.value) and "hunter2" not in str(err.value)


@pytest.mark.parametrize("source, value", [
    ("str(config)", "{'user': 'alice', 'port': 5432}"), ("list(config.values())", ["alice", 5432]),
    ("sorted(config)", ["port", "user"]), ("len(creds)", 3), ("'password' in creds", True),
    ("creds.keys() == {'user', 'password', 'apiKey'}", True),
])
def test_whole_mappings_without_secrets_and_the_names_of_secrets_still_read(source, value):
    expr = compile_expression(source, field="capture", is_redacted_name=RED)
    assert expr.evaluate({"creds": CREDS, "config": {"user": "alice", "port": 5432}}, {}) == value
