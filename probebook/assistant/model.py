"""What an investigation reasons with: the incident, hypotheses, findings and the verdict.

Plain dataclasses with a JSON round trip (`to_dict`/`from_dict`), stored as rows of the
investigation's DuckDB file by `probebook.assistant.journal`, each with an evidence-style id.

>>> v = Verdict(kind="likely", service="orders", locus="app/quota.py:Quota.left", cause="negative quota")
>>> Verdict.from_dict(v.to_dict()) == v
True
>>> parse_locus("app/quota.py:Quota.left")
('app/quota.py', 'Quota.left')
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypeVar

from probebook.evidence.predicate import Predicate

__all__ = ["Alert", "Incident", "Hypothesis", "Finding", "Verdict", "VERDICT_KINDS", "HYPOTHESIS_STATUSES",
           "parse_locus", "locus_matches", "process_of"]

VERDICT_KINDS = ("proven", "likely", "outside", "no-fault", "inconclusive")
HYPOTHESIS_STATUSES = ("open", "supported", "refuted", "proven")

T = TypeVar("T")


def _from(cls: Type[T], raw: Mapping[str, Any], **nested: Any) -> T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kw = {k: v for k, v in raw.items() if k in names}
    kw.update({k: v for k, v in nested.items() if k in raw})
    return cls(**kw)


@dataclass
class Alert:
    """One alert as the on-call engineer gets it: name, labels, summary, since when."""

    name: str
    labels: Dict[str, str] = field(default_factory=dict)
    summary: str = ""
    starts_at: float = 0.0
    state: str = "firing"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Alert":
        return _from(cls, raw)


@dataclass
class Incident:
    """What opened the investigation. `opened_at` (epoch seconds) bounds what counts as proof."""

    title: str
    text: str = ""
    alerts: List[Alert] = field(default_factory=list)
    opened_at: float = field(default_factory=time.time)
    id: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "alerts": [a.to_dict() for a in self.alerts]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Incident":
        return _from(cls, raw, alerts=[Alert.from_dict(a) for a in raw.get("alerts", [])])


@dataclass
class Hypothesis:
    """A cause to test: where it would be (`locus` ``path.py:Qual.name``) and what would prove it."""

    statement: str
    service: str
    locus: str = ""
    predicate: Optional[Predicate] = None
    status: str = "open"
    evidence: List[str] = field(default_factory=list)
    score: float = 0.0  # how strongly the observations so far point here (ranking only, never proof)
    id: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["predicate"] = self.predicate.to_dict() if self.predicate else None
        return d

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Hypothesis":
        pred = raw.get("predicate")
        return _from(cls, raw, predicate=Predicate.from_dict(pred) if pred else None)


@dataclass
class Finding:
    """What one tool call showed, in a line, with the evidence ids it rests on."""

    tool: str
    summary: str
    evidence: List[str] = field(default_factory=list)
    ts: float = field(default_factory=time.time)
    id: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Finding":
        return _from(cls, raw)


@dataclass
class Verdict:
    """The answer. `kind` is one of VERDICT_KINDS; `proven`, `outside` and `no-fault` are what the
    proof gate let through, `reasons` say why anything was downgraded."""

    kind: str
    service: str = ""
    locus: str = ""
    cause: str = ""
    predicate: Optional[Predicate] = None
    mitigation: str = ""
    check: str = ""
    evidence: List[str] = field(default_factory=list)
    ranked: List[Hypothesis] = field(default_factory=list)
    reasons: List[str] = field(default_factory=list)
    # `outside`, or a process of ours that is gone: our service that makes the call to it, and the
    # function of ours where that call's answer (or refusal) was captured
    boundary_service: str = ""
    boundary_locus: str = ""
    id: str = ""
    # a fault that keeps its own cause from running again (a drained pool stops callers before the leak):
    # the probe that catches the cause in the act once restarting `service` frees what it holds
    # ({"where": "file.py:LINE", "capture": [...]}); containment proposes the restart and tries the proof again
    after_restart: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in VERDICT_KINDS:
            raise ValueError(f"verdict kind {self.kind!r} unknown; use one of {', '.join(VERDICT_KINDS)}")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["predicate"] = self.predicate.to_dict() if self.predicate else None
        d["ranked"] = [h.to_dict() for h in self.ranked]
        return d

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Verdict":
        pred = raw.get("predicate")
        return _from(cls, raw, predicate=Predicate.from_dict(pred) if pred else None,
                     ranked=[Hypothesis.from_dict(h) for h in raw.get("ranked", [])])

    def headline(self) -> str:
        """One line for a terminal or a card: ``PROVEN accounts app/quota.py:Quota.left: ...``."""
        where = " ".join(x for x in (self.service, self.locus) if x)
        return f"{self.kind.upper()} {where}: {self.cause}".strip()


def epoch_of(value: Any) -> float:
    """Epoch seconds of a time as the store answers it (a datetime) or as a number.

    >>> epoch_of(12.5), epoch_of(None)
    (12.5, 0.0)
    """
    return value.timestamp() if hasattr(value, "timestamp") else float(value or 0.0)


_PROCESS = re.compile(r"^([A-Za-z][\w.-]{0,80}) process(?: \(.*\))?$")


def process_of(locus: str) -> Optional[str]:
    """The service a process locus names (``payments process``, with or without a note in
    parentheses: ``payments process (killed)``), else None. A process locus is the claim that the
    service's process itself is the cause (gone, not answering), not a function in it.

    >>> process_of("payments process (killed)"), process_of("shop/pay.py:charge")
    ('payments', None)
    """
    m = _PROCESS.match(locus.strip())
    return m.group(1) if m else None


def parse_locus(locus: str) -> Tuple[str, str]:
    """``path.py:Qual.name`` -> (path, qualified name); either part may be empty."""
    path, sep, qual = locus.rpartition(":")
    if not sep:
        return ("", locus) if not locus.endswith(".py") else (locus, "")
    return path, qual


def locus_matches(locus: str, file: str, function: str) -> bool:
    """Is (`file`, `function`) of an event inside `locus`? The path matches by whole components from
    the end (``shop/orders.py`` matches ``/srv/releases/2.8/shop/orders.py``); the function by its
    qualified name (an event may carry ``Class.method`` or only ``method``)."""
    path, qual = parse_locus(locus)
    if not qual or not function or not path:
        return False
    want = [p for p in path.replace("\\", "/").split("/") if p]
    have = [p for p in (file or "").replace("\\", "/").split("/") if p]
    if len(have) < len(want) or have[len(have) - len(want):] != want:
        return False
    # Python < 3.11 reports a method by its bare name: it matches the locus's last part only
    return function == qual or ("." not in function and qual.split(".")[-1] == function)
