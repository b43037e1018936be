"""The LLM planner: the real `openai` client over HTTP against a local server that speaks the Chat
Completions protocol and plays scripted tool calls, on a service written here (tinyshop) under a real
in-process agent. Whatever the model says, only the proof gate makes a verdict `proven`."""

import inspect
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import tinyshop  # noqa: E402
from fake_openai import FakeOpenAI, call, say, tool_answer  # noqa: E402

from probebook.agent import Agent  # noqa: E402
from probebook.assistant import Alert, Assistant, LlmConfig  # noqa: E402
from probebook.errors import LlmError  # noqa: E402
from probebook.session import Investigation  # noqa: E402

LOCUS = "tinyshop.py:Billing.discount_for"
EXPR = "DISCOUNTS.get(code, 0.0)"
ALERTS = [Alert("HighErrorRate", {"service": "tinyshop", "route": "/pay"})]


@pytest.fixture()
def shop(tmp_path):
    agent = Agent()
    inv = Investigation()
    inv.attach("tinyshop", agent, audit_path=str(tmp_path / "audit.jsonl"))
    yield inv
    inv.close()
    agent.close() if hasattr(agent, "close") else None


@pytest.fixture()
def traffic():
    api, stop, t = tinyshop.start("pay")
    yield api
    stop.set()
    t.join()


def _return_line() -> str:
    lines, start = inspect.getsourcelines(tinyshop.Billing.discount_for)
    return f"tinyshop.py:{start + next(i for i, ln in enumerate(lines) if EXPR in ln)}"


def _cfg(server: FakeOpenAI, **kw) -> LlmConfig:
    return LlmConfig(base_url=server.base_url, model="fake-sre", max_retries=0, **kw)


def _investigate(inv, server, **kw):
    lines = []
    cfg = kw.pop("cfg", None) or _cfg(server)
    verdict = Assistant(inv).investigate("POST /pay answers 500 for some customers", alerts=ALERTS,
                                         progress=lines.append, wait_s=kw.pop("wait_s", 5),
                                         budget_s=kw.pop("budget_s", 60),
                                         planner="llm", llm=cfg, **kw)
    return verdict, lines


def _probe_then_prove():
    """A model that places its own probe at the return of the discount lookup, waits for what the
    broken calls return, and concludes citing the ids it got back."""
    return [
        call("place_probe", service="tinyshop", kind="snapshot", where=_return_line(), when=f"{EXPR} > 1",
             capture=["code", EXPR], rate=20),
        lambda req: call("wait_events", probe=tool_answer(req)["data"]["probe"], count=3, timeout=10),
        lambda req: call("conclude", kind="proven", service="tinyshop", locus=LOCUS,
                         cause="the discount lookup returns a whole percent for one code",
                         predicate={"capture": EXPR, "op": ">", "value": 1},
                         evidence=tool_answer(req)["evidence"][:3], mitigation="store 0.15, not 15"),
    ]


@pytest.mark.parametrize("send_values", [True, False])
def test_a_model_proves_the_cause_with_its_own_probe_and_values_stay_home_when_asked(shop, traffic, send_values):
    with FakeOpenAI(_probe_then_prove(), api_key="sk-local") as server:
        verdict, lines = _investigate(shop, server, cfg=_cfg(server, api_key="sk-local", send_values=send_values))
    assert not server.errors
    assert verdict.kind == "proven", "\n".join(lines + verdict.reasons)
    assert verdict.service == "tinyshop" and verdict.locus == LOCUS and verdict.mitigation
    stored = shop.sql("SELECT evidence_id FROM snapshots")["evidence_id"].to_list()
    assert verdict.evidence and set(verdict.evidence) <= set(stored)
    first = server.requests[0]
    assert first["model"] == "fake-sre"
    names = {t["function"]["name"] for t in first["tools"]}
    assert {"place_probe", "wait_events", "record_hypothesis", "run_strategy", "conclude"} <= names
    # the captured code of the broken calls reaches the model only when values may be sent
    assert ("BROKEN" in server.sent()) is send_values
    ids_seen = tool_answer(server.requests[-1])["evidence"]
    assert set(verdict.evidence) <= set(ids_seen)  # evidence ids travel either way
    assert shop.probes().filter(shop.probes()["status"] != "removed").height == 0
    tools = shop.sql("SELECT tool FROM assistant_findings")["tool"].to_list()
    assert {"model", "place_probe", "wait_events", "conclude"} <= set(tools)
    assert shop.sql("SELECT kind FROM assistant_verdicts")["kind"].to_list() == ["proven"]


def test_the_model_may_run_the_deterministic_strategy_and_accept_its_proposal(shop, traffic):
    script = [call("run_strategy", budget_s=40),
              lambda req: call("conclude", proposal=tool_answer(req)["data"]["proposal"], mitigation="cap at 1")]
    with FakeOpenAI(script) as server:
        verdict, lines = _investigate(shop, server)
    proposal = tool_answer(server.requests[-1])
    assert proposal["data"]["verdict"]["kind"] == "proven", "\n".join(lines)
    assert verdict.kind == "proven", "\n".join(lines + verdict.reasons)
    assert verdict.locus.endswith(LOCUS) and verdict.mitigation == "cap at 1"
    assert shop.probes().filter(shop.probes()["status"] != "removed").height == 0


def test_forged_evidence_ids_are_refused_by_the_gate_with_its_reason(shop):
    forged = "snap:tinyshop:i-forged:1"
    script = [call("conclude", kind="proven", service="tinyshop", locus=LOCUS, cause="a guess",
                   predicate={"capture": EXPR, "op": ">", "value": 1}, evidence=[forged]),
              say("I am sure anyway.")]
    with FakeOpenAI(script) as server:
        verdict, lines = _investigate(shop, server)
    assert verdict.kind != "proven"
    assert f"{forged}: no such evidence in this investigation" in verdict.reasons
    # the model was told why, in the tool answer of the next request
    assert "no such evidence" in " ".join(tool_answer(server.requests[1])["data"]["reasons"])
    assert shop.sql("SELECT kind FROM assistant_verdicts")["kind"].to_list() == [verdict.kind]


def test_an_answer_without_tools_is_inconclusive_and_the_endpoint_comes_from_env(shop, monkeypatch):
    with FakeOpenAI([say("It is the database, surely.")]) as server:
        monkeypatch.setenv("PROBEBOOK_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("PROBEBOOK_LLM_MODEL", "env-model")
        verdict = Assistant(shop).investigate("POST /pay answers 500", alerts=ALERTS, planner="llm", budget_s=20)
    assert verdict.kind == "inconclusive"
    assert "without calling a tool" in verdict.cause
    assert server.requests[0]["model"] == "env-model"
    summaries = shop.sql("SELECT summary FROM assistant_findings WHERE tool = 'model'")["summary"].to_list()
    assert summaries == ["It is the database, surely."]


def test_malformed_calls_are_answered_with_an_error_the_model_can_read(shop):
    script = [call("place_probe", _raw="{not json"),
              call("conclude", kind="certain", service="tinyshop", locus=LOCUS),
              call("conclude", kind="proven", service="tinyshop", locus=LOCUS, predicate={"capture": "x", "op": "~"}),
              call("run_strategy", budget_s="soon"),
              say("giving up")]
    with FakeOpenAI(script) as server:
        verdict, lines = _investigate(shop, server, wait_s=1)
    errors = [tool_answer(server.requests[i]).get("error", "") for i in (1, 2, 3)]
    assert "not JSON" in errors[0] and "verdict kind 'certain' unknown" in errors[1] and "op '~' unknown" in errors[2]
    assert tool_answer(server.requests[4])["data"]["verdict"]["kind"] == "inconclusive", "\n".join(lines)
    assert verdict.kind == "inconclusive" and "without calling a tool" in verdict.cause


def test_the_same_call_three_times_is_a_loop_and_ends_inconclusive(shop):
    with FakeOpenAI([call("services")] * 3 + [call("conclude", kind="likely", service="tinyshop", locus=LOCUS)]
                    ) as server:
        verdict, _ = _investigate(shop, server)
    assert verdict.kind == "inconclusive"
    assert "3 times: a loop" in verdict.cause
    assert len(server.requests) == 3  # it never asked the model again


@pytest.mark.parametrize("budget, why", [({"max_steps": 2, "max_tokens": 10**9}, "step budget"),
                                         ({"max_tokens": 200_000}, "token budget")])
def test_a_spent_budget_ends_inconclusive(shop, budget, why):
    script = [call("services"), call("alerts"), call("changes"),
              call("conclude", kind="likely", service="tinyshop", locus=LOCUS)]
    with FakeOpenAI(script, usage=150_000) as server:
        verdict, _ = _investigate(shop, server, cfg=_cfg(server, **budget))
    assert verdict.kind == "inconclusive" and why in verdict.cause
    assert len(server.requests) == 2


def test_a_missing_or_unreachable_endpoint_is_a_one_line_error_that_says_what_to_set(shop):
    with pytest.raises(LlmError, match="PROBEBOOK_LLM_BASE_URL"):
        LlmConfig.from_env({"PROBEBOOK_LLM_MODEL": "m"})
    server = FakeOpenAI([])
    server.start()
    server.stop()  # nobody listens there now
    with pytest.raises(LlmError, match="failed: APIConnectionError.*PROBEBOOK_LLM_BASE_URL") as err:
        _investigate(shop, server)
    assert "\n" not in str(err.value)
    with FakeOpenAI([say("hi")], api_key="right") as server:
        with pytest.raises(LlmError, match="AuthenticationError"):
            _investigate(shop, server, cfg=_cfg(server, api_key="wrong"))
