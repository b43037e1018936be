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
