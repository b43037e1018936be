"""Finding where a symptom enters a service's own code, from what an on-call engineer is given (an
alert's labels, the reporter's words) and the code the service runs. Generic: it reads the running
source for the route or words named in the incident; it knows no framework and no service.

>>> sorted(words("checkout 502s since 10:40 on /api/checkout"))
['/api/checkout', 'checkout']
>>> handler_names('    app.router.add_post("/api/checkout", self.checkout)')
['checkout']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .codeview import functions

__all__ = ["EntryPoint", "words", "handler_names", "is_app_file", "symptom_class", "SYMPTOMS"]

# SRE vocabulary, not names of any service: the class of a symptom decides the first strategy
SYMPTOMS = {
    "errors": ("error", "5xx", "500", "502", "503", "fail", "exception", "crash"),
    "latency": ("latency", "slow", "p95", "p99", "duration", "timeout", "lag"),
    "saturation": ("saturat", "pool", "exhaust", "connections", "backlog", "queue"),
    "growth": ("growth", "leak", "memory", "grow", "cache"),
    "down": ("down", "unreachable", "unavailable", "scrape"),
    "retries": ("retry", "retries", "amplif"),
}
_STOP = {"since", "the", "and", "for", "with", "from", "into", "are", "is", "on", "in", "of", "to", "a", "an",
         "all", "some", "users", "requests", "errors", "error", "slow", "high", "rate", "alert", "firing"}


@dataclass(frozen=True)
class EntryPoint:
    service: str
    file: str  # as the agent reports it (absolute)
    function: str  # qualified name
    line: int
    why: str


def symptom_class(text: str) -> str:
    """The first symptom class whose words appear in `text` (alert name, summary, reporter's text)."""
    low = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text).lower()
    for cls, keys in SYMPTOMS.items():
        if any(k in low for k in keys):
            return cls
    return "unknown"


def words(text: str) -> List[str]:
    """Paths (``/api/x``) and content words of the incident, in order, without duplicates."""
    out: List[str] = []
    for tok in re.findall(r"/[\w/.{}<>:-]+|[A-Za-z_][\w-]{3,}", text):
        t = tok.rstrip(".,:;")
        if t.lower() in _STOP or t.isdigit():
            continue
        if t not in out:
            out.append(t)
    return out


def handler_names(line: str) -> List[str]:
    """Names a route-registration line hands the request to: ``self.checkout`` -> ``checkout``."""
    rest = re.sub(r"(['\"]).*?\1", " ", line)  # drop string literals (the route itself)
    names = re.findall(r"(?:\b\w+\.)*?(\w+)\s*(?=[,)\]}])", rest)
    return [n for n in names if n not in ("self", "None", "True", "False") and not n.isdigit()]


def is_app_file(path: str) -> bool:
    """Code of the service itself, not the interpreter's, an installed package's or probebook's own."""
    p = path.replace("\\", "/")
    return p.endswith(".py") and not any(s in p for s in ("/site-packages/", "/dist-packages/", "/lib/python3",
                                                           "/lib64/python3", "/probebook/", "<frozen"))


def entry_points(service: str, files: Sequence[str], read, route_words: Sequence[str],
                 limit: int = 3) -> List[EntryPoint]:
    """Functions of `service` that receive requests for the words of the incident (a route first).

    `read(path) -> text` reads a running file. For each line holding a route word: a decorator line
    names the function below it; a registration line names its handler; else the function holding it."""
    found: List[EntryPoint] = []
    for word in route_words:
        for path in files:
            try:
                text = read(path)
            except Exception:  # noqa: BLE001 - an unreadable file is skipped, the next one may hold it
                continue
            lines = text.splitlines()
            fns = functions(text)
            for i, ln in enumerate(lines, 1):
                if f'"{word}' not in ln and f"'{word}" not in ln:
                    continue
                ep = _entry_at(service, path, fns, lines, i, word)
                if ep and all(ep.function != f.function or ep.file != f.file for f in found):
                    found.append(ep)
        if found:
            break
    # a route handed to a function or a decorated handler before a function that merely mentions it
    found.sort(key=lambda ep: 0 if ep.why.startswith("decorated") else 1 if " is handed to " in ep.why else 2)
    return found[:limit]


def _entry_at(service: str, path: str, fns, lines: List[str], i: int, word: str) -> Optional[EntryPoint]:
    text = lines[i - 1].strip()
    if text.startswith("@"):
        below = [f for f in fns if f.start > i]
        if below:
            f = min(below, key=lambda f: f.start)
            return EntryPoint(service, path, f.qualname, f.start, f"decorated with {word}")
    after = text[text.index(word) + len(word):].lstrip("\"'") if word in text else text
    for name in handler_names(after)[:1] + handler_names(text):
        for f in fns:
            if f.qualname.split(".")[-1] == name:
                return EntryPoint(service, path, f.qualname, f.start, f"{word} is handed to {name}")
    holders = [f for f in fns if f.start <= i <= f.end]
    if holders:
        f = max(holders, key=lambda f: f.start)
        return EntryPoint(service, path, f.qualname, f.start, f"{word} appears in it")
    return None
