"""The JSON schemas of the assistant's tools (what an LLM sees; `ToolBox` implements each by name)."""

from __future__ import annotations

from typing import Any, Dict, List

__all__ = ["SPECS"]


def _obj(required: List[str], **props: Dict[str, Any]) -> Dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


_S = {"type": "string"}
_SERVICE = {"type": "string", "description": "a connected service name (see services)"}
_PATH = {"type": "string", "description": "a file path as loaded by the service, matched from the end, e.g. shop/cart.py"}
_FUNCTION = {"type": "string", "description": "qualified name, e.g. Cart.total"}

SPECS: List[Dict[str, Any]] = [
    {"name": "alerts", "description": "Alerts open now (name, service, labels, summary, since).", "parameters": _obj([])},
    {"name": "promql", "description": "A PromQL range query; per series its first, last and max value.",
     "parameters": _obj(["query"], query=_S, range={"type": "string", "description": "e.g. 15m"})},
    {"name": "logs", "description": "Log lines of a service, filtered by text, trace id or level.",
     "parameters": _obj(["service"], service=_SERVICE, grep=_S, trace=_S, level=_S, since=_S,
                        limit={"type": "integer", "minimum": 1, "maximum": 40})},
    {"name": "changes", "description": "Deploys, config and flag changes, restarts and migrations, newest first. "
                                       "A change before the onset is a suspect, never a proof.",
     "parameters": _obj([], since=_S, service=_S)},
    {"name": "services", "description": "Connected services: instances, health, live probes.", "parameters": _obj([])},
    {"name": "modules", "description": "Modules a service has loaded (name and file), filtered by a substring.",
     "parameters": _obj(["service"], service=_SERVICE, contains=_S)},
    {"name": "source", "description": "Numbered lines of a file as the service runs it (at most 200).",
     "parameters": _obj(["service", "path"], service=_SERVICE, path=_PATH, start={"type": "integer"},
                        end={"type": "integer"})},
    {"name": "functions", "description": "Functions and methods of a running file with their line ranges.",
     "parameters": _obj(["service", "path"], service=_SERVICE, path=_PATH)},
    {"name": "callees", "description": "The calls a function's body makes, with lines (from the running source).",
     "parameters": _obj(["service", "path", "function"], service=_SERVICE, path=_PATH, function=_FUNCTION)},
    {"name": "find", "description": "Lines of a running file that contain a text, with their functions.",
     "parameters": _obj(["service", "path", "text"], service=_SERVICE, path=_PATH, text=_S)},
    {"name": "raises", "description": "Where a function raises, and the condition guarding each raise.",
     "parameters": _obj(["service", "path", "function"], service=_SERVICE, path=_PATH, function=_FUNCTION)},
    {"name": "place_probe", "description": "Place a read-only probe on every instance of a service. kind: snapshot "
                                           "(locals and capture expressions at a line), log (template), metric "
                                           "(duration of a function: where = module:Qual.name), span, exception "
                                           "(a call that ends by raising, with every frame's locals).",
     "parameters": _obj(["service", "kind", "where"], service=_SERVICE,
                        kind={"type": "string", "enum": ["snapshot", "log", "metric", "span", "exception"]},
                        where={"type": "string", "description": "path.py:LINE or package.module:Qual.name"},
                        when={"type": "string", "description": "optional condition, a safe subset of Python"},
                        capture={"type": "array", "items": _S}, template=_S, metric=_S, ttl=_S,
                        rate={"type": "number"},
                        light={"type": "boolean", "description": "capture the frame's locals shallowly (one "
                                                                 "level, 10 items): cheap when only `capture` is read"})},
    {"name": "remove_probe", "description": "Remove a probe this investigation placed.",
     "parameters": _obj(["probe"], probe=_S)},
    {"name": "wait_events", "description": "Wait until a probe has `count` events (or `timeout` s); their evidence "
                                           "ids and captured values.",
     "parameters": _obj(["probe"], probe=_S, count={"type": "integer", "minimum": 1},
                        timeout={"type": "number", "maximum": 120})},
    {"name": "sql", "description": "One SELECT over the evidence store (tables: snapshots, logs, metrics, spans, "
                                   "exceptions, probes, alerts, metric_series, log_lines, changes, timeline).",
     "parameters": _obj(["query"], query=_S)},
]
