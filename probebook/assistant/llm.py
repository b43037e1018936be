"""The LLM planner: a model chooses the tools, through the `openai` client's Chat Completions with
tool calling, against any OpenAI-compatible endpoint; the proof gate judges what it concludes.

The model gets the `ToolBox` tools plus `record_hypothesis`, `run_strategy` (the deterministic
investigator, whose gated verdict comes back as a proposal) and `conclude`. Budgets: tool-call rounds,
tokens (from each response's `usage`) and wall-clock seconds. A model that answers without tools,
repeats the same call with the same arguments three times, runs out of a budget or cites evidence
that does not hold never gets `proven`: it ends `inconclusive` (or `likely`, as the gate downgraded
it), with the reason. Every probe it placed is removed at the end.

>>> cfg = LlmConfig.from_env({"PROBEBOOK_LLM_BASE_URL": "http://127.0.0.1:8000/v1",
...                           "PROBEBOOK_LLM_MODEL": "qwen2.5-coder"}, max_steps=12)
>>> cfg.model, cfg.max_steps, cfg.send_values
('qwen2.5-coder', 12, True)
>>> LlmConfig.from_env({})
Traceback (most recent call last):
...
probebook.errors.LlmError: no model endpoint: set PROBEBOOK_LLM_BASE_URL (e.g. http://127.0.0.1:8000/v1) and ...
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from probebook.errors import LlmError, ProbebookError, one_line

from .investigator import Investigator
from .llm_tools import PLANNER_SCHEMAS, hypothesis_from_args, public_verdict, verdict_from_args, withhold_values
from .model import Finding, Hypothesis, Incident, Verdict
from .proof import ProofGate
from .tools import ToolBox, ToolResult

__all__ = ["LlmConfig", "LlmPlanner", "SYSTEM_PROMPT"]

_ENV = {"base_url": "PROBEBOOK_LLM_BASE_URL", "api_key": "PROBEBOOK_LLM_API_KEY", "model": "PROBEBOOK_LLM_MODEL"}
_LOOP = 3  # the same call with the same arguments this many times is a loop

SYSTEM_PROMPT = """You are an SRE investigating a production incident in running Python services.
Method: read the alerts, metrics, logs and changes; form hypotheses (record_hypothesis); read the
running source; then TEST each hypothesis in the running code with read-only probes (place_probe,
wait_events) and descend until one holds. run_strategy runs a deterministic investigator and proposes
a verdict you may accept with conclude(proposal=ID).
Proof is checked in code: a verdict is proven only if it cites evidence ids (from wait_events or sql)
captured by a probe you placed in this investigation, inside the claimed locus (path.py:Qual.name),
that satisfy the predicate you state (capture|field|stack, op, value). Otherwise conclude likely or
inconclusive and say so. A change before the onset is a suspect, never a proof.
Call exactly one tool per step when you can; end with conclude."""


@dataclass
class LlmConfig:
    """Where the model is and how far it may go. `send_values=False`: no captured value (locals,
    arguments, expressions, messages) is sent to the model, only evidence ids, functions and lines."""

    base_url: str = ""
    model: str = ""
    api_key: str = ""
    max_steps: int = 30
    max_tokens: int = 200_000
    send_values: bool = True
    temperature: Optional[float] = None
    timeout_s: float = 60.0
    max_retries: int = 2
    max_refusals: int = 1  # refused conclusions the model may follow with a better one

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, **overrides: Any) -> "LlmConfig":
        """Defaults < env `PROBEBOOK_LLM_*` (or `env`) < `overrides` (None means "not set")."""
        env = os.environ if env is None else env
        kw: Dict[str, Any] = {k: env[v] for k, v in _ENV.items() if env.get(v)}
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw).validated()

    def validated(self) -> "LlmConfig":
        """Itself, or an `LlmError` saying what to set."""
        if not self.base_url or not self.model:
            raise LlmError(f"no model {'endpoint' if not self.base_url else 'name'}: set {_ENV['base_url']} "
                           f"(e.g. http://127.0.0.1:8000/v1) and {_ENV['model']}, or pass LlmConfig(base_url=..., "
                           f"model=...)")
        if self.max_steps < 1 or self.max_tokens < 1:
            raise LlmError("LlmConfig: max_steps and max_tokens must be at least 1")
        return self


class _End(Exception):
    """The loop ends without an accepted conclusion; the message says why."""


class LlmPlanner:
    """Runs one investigation with a model choosing the tools, within `budget_s` seconds; `run()`
    returns the gated verdict. `client`: an `openai.OpenAI`-shaped client (default: made from `config`)."""

    def __init__(self, config: LlmConfig, tools: ToolBox, gate: ProofGate, incident: Incident,
                 budget_s: float = 110.0, progress: Optional[Callable[[str], None]] = None, wait_s: float = 20.0,
                 stop: Optional[threading.Event] = None, client: Any = None) -> None:
        self.cfg = config.validated()
        self.tools, self.gate, self.incident = tools, gate, incident
        self.progress = progress or (lambda line: None)
        self.wait_s = wait_s
        self.stop = stop or threading.Event()
        self.client = client
        self.budget_s = budget_s
        self.hypotheses: List[Hypothesis] = []
        self.proposals: Dict[str, Verdict] = {}
        self.tokens = 0
        self.steps = 0
        self._deadline = 0.0
        self._seen: Dict[Tuple[str, str], int] = {}
        self._value_metrics: set = set()
        self._refused: Optional[Verdict] = None
        self._refusals = 0

    # ------------------------------------------------------------------ the loop
    def run(self) -> Verdict:
        self._deadline = time.monotonic() + self.budget_s
        try:
            verdict = self._loop()
        except _End as end:
            verdict = self._ended(str(end))
        finally:
            self.tools.remove_all()
        return self.gate.final(verdict, self.hypotheses)

    def _loop(self) -> Verdict:
        messages: List[Dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT},
                                          {"role": "user", "content": self._incident_text()}]
        schemas = ToolBox.schemas() + PLANNER_SCHEMAS
        while True:
            if self.steps >= self.cfg.max_steps:
                raise _End(f"step budget spent: {self.steps} rounds of tool calls without an accepted conclusion")
            self._check_time()
            msg = self._ask(messages, schemas)
            calls = [c for c in (msg.tool_calls or []) if getattr(c, "function", None) is not None]
            text = (msg.content or "").strip()
            self._note("model", text or "calls " + ", ".join(c.function.name for c in calls))
            if not calls:
                raise _End(f"the model answered without calling a tool: {one_line(text or '(nothing)', 200)}")
            self.steps += 1
            messages.append({"role": "assistant", "content": msg.content, "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.function.name,
                                                              "arguments": c.function.arguments or "{}"}}
                for c in calls]})
            for c in calls:
                content, final = self._dispatch(c.function.name, c.function.arguments or "{}")
                messages.append({"role": "tool", "tool_call_id": c.id, "content": content})
                if final is not None:
                    return final

    def _ask(self, messages: List[Dict[str, Any]], schemas: List[Dict[str, Any]]) -> Any:
        extra = {"temperature": self.cfg.temperature} if self.cfg.temperature is not None else {}
        try:
            resp = self._client().chat.completions.create(
                model=self.cfg.model, messages=messages, tools=schemas, tool_choice="auto",
                timeout=max(1.0, min(self.cfg.timeout_s, self._deadline - time.monotonic())), **extra)
        except Exception as exc:  # the client's errors (connection, status, timeout, bad JSON) end the same way
            if not self._is_client_error(exc):
                raise
            why = f"the model endpoint {self.cfg.base_url} failed: {type(exc).__name__}: {one_line(exc, 200)}"
            if self.steps == 0 and self.tokens == 0:  # nothing done yet: a setup mistake to report, not a verdict
                raise LlmError(why + f"; check {_ENV['base_url']}, {_ENV['model']} and {_ENV['api_key']}") from None
            raise _End(why) from None
        usage = getattr(resp, "usage", None)
        self.tokens += int(getattr(usage, "total_tokens", 0) or 0) or len(json.dumps(messages, default=str)) // 4
        if not getattr(resp, "choices", None):
            raise _End("the model endpoint answered with no choices")
        if self.tokens > self.cfg.max_tokens:
            raise _End(f"token budget spent: {self.tokens} tokens, the most is {self.cfg.max_tokens}")
        return resp.choices[0].message

    def _client(self) -> Any:
        if self.client is None:
            try:
                from openai import OpenAI
            except ImportError:
                raise LlmError("the LLM planner needs the openai package: pip install 'probebook[lab]'") from None
            self.client = OpenAI(base_url=self.cfg.base_url, api_key=self.cfg.api_key or "not-needed",
                                 max_retries=self.cfg.max_retries, timeout=self.cfg.timeout_s)
        return self.client

    @staticmethod
    def _is_client_error(exc: Exception) -> bool:
        try:
            from openai import OpenAIError
        except ImportError:
            return False
        return isinstance(exc, OpenAIError)

    # ------------------------------------------------------------------ one tool call
    def _dispatch(self, name: str, raw: str) -> Tuple[str, Optional[Verdict]]:
        key, err = (name, raw), "arguments must be a JSON object"
        try:
            args = json.loads(raw) if raw.strip() else {}
            key = (name, json.dumps(args, sort_keys=True))
        except ValueError as exc:
            args, err = None, f"arguments are not JSON: {one_line(exc, 120)}"
        self._seen[key] = self._seen.get(key, 0) + 1
        if self._seen[key] >= _LOOP:
            raise _End(f"the model called {name}({one_line(key[1], 120)}) {_LOOP} times: a loop")
        self._check_time()
        if not isinstance(args, dict):
            result = ToolResult(name, "", error=err)
            self._note(name, "error: " + result.error)
            return result.to_json(), None
        self.progress(f"{name}: {one_line(json.dumps(args), 160)}")
        if name == "conclude":
            return self._conclude(args)
        if name == "record_hypothesis":
            result = self._record(args)
        elif name == "run_strategy":
            result = self._strategy(args)
        else:
            result = self._tool(name, args)
        self.progress(f"  -> {result.error or result.summary}")
        return result.to_json(), None

    def _tool(self, name: str, args: Dict[str, Any]) -> ToolResult:
        if name == "wait_events":  # never past the budget
            args = {**args, "timeout": min(_seconds(args.get("timeout"), self.wait_s), self._left())}
        result = self.tools.call(name, args)
        if name == "place_probe" and not result.error and args.get("kind") == "metric":
            metric = str(args.get("metric") or "")
            if metric and not metric.isidentifier():  # an expression over the program's data, not a duration
                self._value_metrics.add(result.data["probe"])
        if not self.cfg.send_values and not result.error:
            result = replace(result, data=withhold_values(name, result.data,
                                                          str(args.get("probe")) in self._value_metrics))
        return result

    def _record(self, args: Dict[str, Any]) -> ToolResult:
        try:
            h = hypothesis_from_args(args)
        except (TypeError, ValueError) as exc:
            return self._noted(ToolResult("record_hypothesis", "", error=one_line(exc, 300)))
        old = next((x for x in self.hypotheses if x.statement == h.statement), None)
        if old is not None:
            h.id, h.evidence = old.id, old.evidence
            self.hypotheses.remove(old)
        self.hypotheses.append(self.tools.journal.hypothesis(self.incident, h))
        return self._noted(ToolResult("record_hypothesis", f"hypothesis {h.id} ({h.status}): {h.statement}",
                                      {"id": h.id}))

    def _strategy(self, args: Dict[str, Any]) -> ToolResult:
        # its own ToolBox: it removes its probes when it ends, and leaves the model's in place
        sub = ToolBox(self.tools.inv, self.incident, self.tools.journal, self.tools.budget)
        budget = min(_seconds(args.get("budget_s"), self._left()), self._left())
        try:
            v = Investigator(sub, self.gate, self.incident, budget, self.progress, self.wait_s, self.stop).run()
        except (ProbebookError, ValueError, LookupError) as exc:
            sub.remove_all()
            return self._noted(ToolResult("run_strategy", "", error=one_line(exc, 300)))
        self.tools.placed.update(sub.placed)
        self.hypotheses += [h for h in v.ranked if h not in self.hypotheses]
        pid = f"strategy:{len(self.proposals) + 1}"
        self.proposals[pid] = replace(v, ranked=[])
        return self._noted(ToolResult("run_strategy", f"proposal {pid}: {v.kind} {v.service} {v.locus}".strip(),
                                      {"proposal": pid, "verdict": public_verdict(v, self.cfg.send_values),
                                       "accept": f"conclude(proposal='{pid}')"}, list(v.evidence)))

    def _conclude(self, args: Dict[str, Any]) -> Tuple[str, Optional[Verdict]]:
        try:
            pid = str(args.get("proposal") or "")
            if pid:
                if pid not in self.proposals:
                    raise ValueError(f"no proposal {pid!r}; run_strategy made: {', '.join(self.proposals) or 'none'}")
                v = replace(self.proposals[pid], reasons=[])
                v.mitigation, v.check = str(args.get("mitigation") or v.mitigation), str(args.get("check") or v.check)
            else:
                v = verdict_from_args(args)
        except (TypeError, ValueError) as exc:
            return self._noted(ToolResult("conclude", "", error=one_line(exc, 300))).to_json(), None
        checked = self.gate.check(v)
        self._note("conclude", f"{checked.headline()} ({'; '.join(checked.reasons)})", checked.evidence)
        self.progress(f"gate: {checked.kind} {checked.locus}: {one_line('; '.join(checked.reasons), 200)}")
        if checked.kind == v.kind:
            if checked.kind in ("proven", "outside", "no-fault"):
                self._mark_proven(checked)
            return ToolResult("conclude", f"accepted: {checked.kind}").to_json(), checked
        self._refused, self._refusals = checked, self._refusals + 1
        if self._refusals > self.cfg.max_refusals:
            raise _End(f"the gate refused {self._refusals} conclusions")
        advice = "gather evidence with your own probes and conclude again, or conclude likely/inconclusive"
        return ToolResult("conclude", f"refused: {v.kind} is now {checked.kind}",
                          {"reasons": checked.reasons, "next": advice}).to_json(), None

    # ------------------------------------------------------------------ helpers
    def _ended(self, why: str) -> Verdict:
        self.progress(f"end: {why}")
        self._note("end", why)
        if self._refused is not None:  # the best it said, as the gate let it stand
            return replace(self._refused, reasons=self._refused.reasons + [why])
        return Verdict("inconclusive", cause=why, reasons=[why])

    def _mark_proven(self, v: Verdict) -> None:
        h = next((x for x in self.hypotheses if x.locus and x.locus == v.locus), None)
        if h is None:
            h = Hypothesis(v.cause, v.service, v.locus, v.predicate)
            self.hypotheses.append(h)
        h.status, h.score, h.evidence = "proven", 1.0, list(v.evidence)
        self.tools.journal.hypothesis(self.incident, h)

    def _check_time(self) -> None:
        if self.stop.is_set():
            raise _End("stopped by the user; every probe it placed is removed")
        if self._left() <= 0:
            raise _End(f"time budget spent: {self.budget_s:g} s")

    def _left(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def _note(self, tool: str, summary: str, evidence: Optional[List[str]] = None) -> None:
        self.tools.journal.finding(self.incident, Finding(tool, one_line(summary, 300), list(evidence or [])))

    def _noted(self, result: ToolResult) -> ToolResult:
        self._note(result.tool, result.error and "error: " + result.error or result.summary, result.evidence)
        return result

    def _incident_text(self) -> str:
        inc = self.incident
        return json.dumps({"incident": inc.title, "report": inc.text, "opened_at": inc.opened_at,
                           "alerts": [{"name": a.name, "labels": a.labels, "summary": a.summary,
                                       "starts_at": a.starts_at} for a in inc.alerts]})


def _seconds(raw: Any, default: float) -> float:
    try:
        return float(raw) if raw not in (None, "") else default
    except (TypeError, ValueError):
        return default
