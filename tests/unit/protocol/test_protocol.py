"""The protocol between agent and notebook side: stdlib only, loads no engine, and what the agent
writes is what the notebook side reads (capture trees, event records, status words, columns)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest
from support import check_doctests, with_examples

import probebook.protocol
from probebook.agent import Agent, AgentLimits
from probebook.agent.capture.redaction import Redactor
from probebook.agent.capture.values import CaptureLimits, capture_value
from probebook.protocol import ACTIVE, ENDED, KINDS, Kind, ProbeInfo, Status, from_mapping
from probebook.protocol.capture_tree import children, cut, plain, scalar
from probebook.protocol.events import RECORDS, LogEvent, SnapshotEvent, SpanEvent, StatusEvent

MODULES = with_examples(["probebook.protocol"] + [m.name for m in pkgutil.iter_modules(probebook.protocol.__path__,
                                                                                      "probebook.protocol.")])


@pytest.mark.parametrize("name", MODULES + ["probebook.evidence.schema"])
def test_docstring_examples_hold(name: str) -> None:
    if name.startswith("probebook.evidence"):
        pytest.importorskip("duckdb")  # the agent's Pythons run this file without the notebook side
    check_doctests(name)


def test_protocol_and_connectors_load_nothing_of_the_agent() -> None:
    code = ("import sys, sysconfig\n"
            "before = set(sys.modules)\n"
            "import probebook.protocol, probebook.protocol.resp\n"
            "paths = sysconfig.get_paths()\n"
            "std, site = (paths['stdlib'], paths['platstdlib']), (paths['purelib'], paths['platlib'])\n"
            "files = {m: getattr(sys.modules[m], '__file__', None) for m in set(sys.modules) - before}\n"
            "print(sorted(m for m, f in files.items() if f and m.split('.')[0] != 'probebook'\n"
            "             and (not f.startswith(std) or f.startswith(site))))\n"
            "import probebook.connectors.agent\n"
            "print(sorted(m for m in sys.modules if m.startswith('probebook.agent')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]", f"the protocol is stdlib only, yet loaded {out[0]}"
    assert out[1] == "[]", f"importing a connector loaded agent modules: {out[1]}"


def test_what_the_agent_captures_reads_back_as_plain_values() -> None:
    class Cart:
        def __init__(self) -> None:
            self.items = [{"sku": "A-1", "qty": 2}]
            self.total = 12.5
            self.password = "hunter2"

    node = capture_value(Cart(), CaptureLimits(max_depth=4), Redactor())
    assert plain(node) == {"items": [{"sku": "A-1", "qty": 2}], "total": 12.5, "password": None}
    fields = dict(children(node))
    assert scalar(fields["total"]) == 12.5
    assert cut(fields["password"]) == "redacted"
    assert [label for label, _ in children(fields["items"])] == ["[0]"]
    assert plain(capture_value(KeyError("sku"), CaptureLimits(), Redactor())) == "KeyError('sku')"


def test_a_cut_node_says_why_and_is_no_value() -> None:
    deep = capture_value([[[[1]]]], CaptureLimits(max_depth=1), Redactor())
    inner = children(deep)[0][1]
    assert cut(inner) == "depth"
    assert plain(inner) is None
    assert scalar(inner) is inner  # a caller that shows trees keeps the node


def test_status_words_of_a_live_probe() -> None:
    agent = Agent(AgentLimits(cpu_budget=1.0))
    try:
        info = agent.add_probe({"kind": "log", "where": "json.decoder:JSONDecoder.decode", "template": "x"})
        assert isinstance(info, ProbeInfo)
        assert info.status in ACTIVE and not Status(info.status).ended
        json.loads("[1]")
        removed = agent.remove_probe(info.id)
        assert removed.status == Status.REMOVED and removed.status in ENDED
        statuses = [e.status for e in agent.drain_events() if isinstance(e, StatusEvent)]
        assert statuses[0] == "installed" and statuses[-1] == "removed"
        assert json.dumps({"s": statuses[-1]}) == '{"s": "removed"}'
    finally:
        agent.close()


def test_kind_and_status_are_their_words() -> None:
    assert KINDS == tuple(k.value for k in Kind) == ("log", "snapshot", "metric", "span", "exception")
    assert f"{Status.DISABLED}" == str(Status.DISABLED) == "disabled" and repr(Kind.LOG) == "'log'"
    assert {"expired", "removed", "disabled", "error"} == set(ENDED)
    assert Kind("span") is Kind.SPAN and hash(Kind.SPAN) == hash("span")


@pytest.mark.parametrize("kind", sorted(RECORDS))
def test_every_field_an_event_carries_has_a_column(kind: str) -> None:
    COMMON, KIND_TABLE, TABLES = _schema()
    record = RECORDS[kind]("p1") if kind != "log" else LogEvent("p1", message="m")
    table, _ = KIND_TABLE[kind]
    columns = {c for c, _ in COMMON} | {c for c, _ in TABLES[table]}
    assert set(record.to_dict()) - {"kind"} <= columns
    assert record.to_dict()["kind"] == kind


def test_snapshot_and_span_columns_keep_their_types() -> None:
    COMMON, _, TABLES = _schema()
    assert dict(TABLES["snapshots"])["locals"] == "JSON"
    assert dict(TABLES["spans"])["duration_ns"] == "BIGINT" and dict(TABLES["spans"])["otel"] == "BOOLEAN"
    assert dict(COMMON)["line"] == "INTEGER" and dict(COMMON)["ts"] == "TIMESTAMPTZ"
    assert SnapshotEvent("p").kind == "snapshot" and SpanEvent("p").kind == "span"


def test_records_read_leniently_from_older_and_newer_agents() -> None:
    info = from_mapping(ProbeInfo, {"id": "p9", "kind": "metric", "status": "pending", "future_field": 1})
    assert (info.id, info.status, info.hits, info.spec) == ("p9", "pending", 0, {})


def _schema():
    pytest.importorskip("duckdb")
    from probebook.evidence import schema

    return schema.COMMON, schema.KIND_TABLE, schema.TABLES
