"""What the LLM planner adds to the `ToolBox`: the schemas of its own three tools (`record_hypothesis`,
`run_strategy`, `conclude`), reading a verdict out of a model's arguments, and withholding captured
values from what is sent to the model when `send_values` is off.

>>> [s["function"]["name"] for s in PLANNER_SCHEMAS]
['record_hypothesis', 'run_strategy', 'conclude']
>>> withhold_values("wait_events", [{"evidence_id": "snap:a:i:1", "function": "f", "line": 3,
...                                  "locals": {"token": "s3cr3t"}}])
[{'evidence_id': 'snap:a:i:1', 'function': 'f', 'line': 3, 'locals': '<withheld>'}]
>>> verdict_from_args({"kind": "proven", "service": "orders", "locus": "shop/a.py:f",
...                    "predicate": {"capture": "rate", "op": ">", "value": 1}}).predicate.describe()
'rate > 1'
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Mapping

from probebook.evidence.predicate import AGGS, OPS, Predicate

from .model import HYPOTHESIS_STATUSES, VERDICT_KINDS, Hypothesis, Verdict

__all__ = ["PLANNER_SCHEMAS", "WITHHELD", "withhold_values", "verdict_from_args", "hypothesis_from_args",
           "public_verdict"]

WITHHELD = "<withheld>"
# what a probe read out of the program (an event's values); everything else an event says is where and when
_VALUE_KEYS = ("expressions", "locals", "arguments", "raise_locals", "message")
# columns an sql answer keeps when values are withheld: ids, places, times, types and measured durations
_SQL_KEEP = {"evidence_id", "ts", "service", "instance_id", "probe_id", "seq", "file", "line", "function",
             "trace_id", "span_id", "parent_span_id", "kind", "exc_type", "metric_type", "unit", "name",
             "start_ns", "duration_ns", "status", "alias", "placed_at", "removed_at", "where"}

_S = {"type": "string"}
_PREDICATE = {
    "type": "object", "additionalProperties": False,
    "description": "What the cited evidence must show. Exactly one of capture (a captured expression or a local), "
                   "field (an event field such as value or exc_type) or stack (a function on the stack).",
    "properties": {"capture": _S, "field": _S, "stack": _S, "op": {"type": "string", "enum": list(OPS)},
                   "value": {"description": "what op compares with (number, string, bool or null)"},
                   "agg": {"type": "string", "enum": list(AGGS)},
                   "min_events": {"type": "integer", "minimum": 1}},
}
_LOCUS = {"type": "string", "description": "path.py:Qual.name of the function, e.g. shop/cart.py:Cart.total"}


def _fn(name: str, description: str, required: List[str], **props: Any) -> Dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": props, "required": required, "additionalProperties": False}}}


PLANNER_SCHEMAS: List[Dict[str, Any]] = [
    _fn("record_hypothesis", "Record (or update, by the same statement) a cause to test: where it would be and "
                             "what evidence would prove it. Returns its id.",
        ["statement", "service"], statement=_S, service=_S, locus=_LOCUS, predicate=_PREDICATE,
        status={"type": "string", "enum": [s for s in HYPOTHESIS_STATUSES if s != "proven"]}),
    _fn("run_strategy", "Run the deterministic investigator (generic error and latency strategies with their own "
                        "probes) and get its gated verdict as a proposal; accept it with conclude(proposal=ID).",
        [], budget_s={"type": "number", "description": "seconds it may take (capped by what is left)"}),
    _fn("conclude", "End the investigation with a verdict. proven/outside/no-fault pass only when the cited "
                    "evidence ids were captured by your probes inside the locus and satisfy the predicate; "
                    "a refusal comes back with the reasons.",
        ["kind"], kind={"type": "string", "enum": list(VERDICT_KINDS)}, service=_S, locus=_LOCUS,
        cause={"type": "string", "description": "the root cause in one sentence"}, predicate=_PREDICATE,
        evidence={"type": "array", "items": _S, "description": "evidence ids from wait_events or sql"},
        mitigation=_S, check={"type": "string", "description": "how to check that the fix holds"},
        boundary_service=_S, boundary_locus=_LOCUS,
        proposal={"type": "string", "description": "accept a run_strategy proposal by its id instead"}),
]


def withhold_values(tool: str, data: Any, value_metric: bool = False) -> Any:
    """`data` of a `tool` answer without captured values: events keep their evidence ids, function and
    line; sql rows keep only id, place, time and type columns. `value_metric`: the probe's metric is an
    expression of the program's data, so its `value` is withheld too."""
    if tool == "wait_events" and isinstance(data, list):
        drop = _VALUE_KEYS + (("value",) if value_metric else ())
        return [{k: (WITHHELD if k in drop else v) for k, v in row.items()} if isinstance(row, dict) else row
                for row in data]
    if tool == "sql" and isinstance(data, list):
        return [{k: (v if k in _SQL_KEEP else WITHHELD) for k, v in row.items()} if isinstance(row, dict) else row
                for row in data]
    return data


def _predicate(raw: Any) -> Any:
    if raw in (None, {}):
        return None
    if not isinstance(raw, Mapping):
        raise ValueError("predicate: an object such as {\"capture\": \"rate\", \"op\": \">\", \"value\": 1}")
    return Predicate.from_dict({k: v for k, v in raw.items() if v is not None})


def _text(args: Mapping[str, Any], name: str) -> str:
    v = args.get(name)
    return "" if v is None else str(v)


def verdict_from_args(args: Mapping[str, Any]) -> Verdict:
    """A `Verdict` from `conclude`'s arguments; a ValueError names what is wrong."""
    evidence = args.get("evidence") or []
    if not isinstance(evidence, list):
        raise ValueError("evidence: a list of evidence ids")
    return Verdict(_text(args, "kind"), _text(args, "service"), _text(args, "locus"), _text(args, "cause"),
                   _predicate(args.get("predicate")), _text(args, "mitigation"), _text(args, "check"),
                   [str(e) for e in evidence], boundary_service=_text(args, "boundary_service"),
                   boundary_locus=_text(args, "boundary_locus"))


def hypothesis_from_args(args: Mapping[str, Any]) -> Hypothesis:
    """A `Hypothesis` from `record_hypothesis`'s arguments (status `proven` is the gate's alone)."""
    status = _text(args, "status") or "open"
    if status not in HYPOTHESIS_STATUSES or status == "proven":
        raise ValueError("status: open, supported or refuted (only the proof gate makes a hypothesis proven)")
    if not _text(args, "statement") or not _text(args, "service"):
        raise ValueError("record_hypothesis needs a statement and a service")
    return Hypothesis(_text(args, "statement"), _text(args, "service"), _text(args, "locus"),
                      _predicate(args.get("predicate")), status,
                      score={"supported": 0.5, "open": 0.2, "refuted": 0.0}[status])


def public_verdict(v: Verdict, send_values: bool = True) -> Dict[str, Any]:
    """A verdict as the model sees it; without values the predicate's value, the cause and the gate's
    words (which quote captured values) are withheld, the locus, kind and evidence ids are kept."""
    if not send_values:
        pred = replace(v.predicate, value=WITHHELD) if v.predicate else None
        v = replace(v, predicate=pred, cause=WITHHELD, reasons=[WITHHELD] if v.reasons else [])
    d = v.to_dict()
    d.pop("ranked", None)
    d.pop("id", None)
    d["evidence"] = d["evidence"][:20]
    return d
