"""Finding where a symptom enters a service's own code, from what an on-call engineer is given (an
alert's labels, the reporter's words) and the code the service runs. Generic: it reads the running
source for the route or words named in the incident; it knows no framework and no service.

>>> sorted(words("signup 502s since 10:40 on /v2/signup"))
['/v2/signup', 'signup']
>>> handler_names('    app.router.add_post("/v2/signup", self.signup)')
['signup']
>>> handler_names(': lambda q: shop.pay(float(q["amount"]))}')
['pay']
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .codeview import SourceError, functions

__all__ = ["EntryPoint", "words", "handler_names", "is_app_file", "symptom_class", "symptom_classes", "SYMPTOMS", "paths_in"]

# SRE vocabulary, not names of any service: the class of a symptom decides the first strategy
SYMPTOMS = {  # a mechanism that explains errors and latency at once comes before them
    "retries": ("retry", "retries", "amplif"),
    "errors": ("error", "5xx", "500", "502", "503", "fail", "exception", "crash", "wrong", "incorrect", "negative",
               "missing", "duplicate", "broken"),
    "latency": ("latency", "slow", "p95", "p99", "duration", "timeout", "lag"),
    "saturation": ("saturat", "pool", "exhaust", "connections", "backlog", "queue"),
    "growth": ("growth", "leak", "memory", "grow", "cache"),
    "down": ("down", "unreachable", "unavailable", "scrape"),
}
# probebook's own rooms, which share a process with what they probe only in tests and notebooks (the lab
# is a user of the agent like any service: its code is application code)
_OURS = ("agent/", "assistant/", "session/", "connectors/", "evidence/", "protocol/", "widgets/", "kernel_ext/",
         "cli/", "mcp/", "errors.py", "demo.py", "__init__.py")
_BUILTIN_NAMES = set(dir(builtins))
_STOP = {"since", "the", "and", "for", "with", "from", "into", "are", "is", "on", "in", "of", "to", "a", "an",
         "all", "some", "users", "requests", "errors", "error", "slow", "high", "rate", "alert", "firing"}


@dataclass(frozen=True)
class EntryPoint:
    service: str
    file: str  # as the agent reports it (absolute)
    function: str  # qualified name
    line: int
    why: str

    @property
    def receives(self) -> bool:
        """A route is handed to the function or decorates it (not a function that merely names the path,
        more often a caller of that path than its server)."""
        return not self.why.endswith(" appears in it")


_NEGATED = re.compile(r"\b(nothing|no|not|never|without|isn't|aren't)\b(\s+[\w']+){0,2}?\s+"
                      r"(wrong|errors?|fail\w*|broken|slow|problems?|issues?)\b")


def symptom_class(text: str) -> str:
    """The first symptom class whose words appear in `text` (alert name, summary, reporter's text);
    words under a negation ("nothing is wrong", "no errors") do not count.

    >>> symptom_class("Control: nothing is wrong; no errors"), symptom_class("totals are wrong")
    ('unknown', 'errors')
    """
    found = symptom_classes(text)
    return found[0] if found else "unknown"


def symptom_classes(text: str) -> List[str]:
    """Every symptom class whose words appear in `text`, in `SYMPTOMS` order.

    >>> symptom_classes("CacheGrowth RetryAmplification")
    ['retries', 'growth']
    """
    low = _NEGATED.sub(" ", re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text).lower())
    return [cls for cls, keys in SYMPTOMS.items() if any(k in low for k in keys)]


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


_URL_PATH = re.compile(r"https?://[^/\s'\"]+(/[^\s'\"?#]*)")
_PATH = re.compile(r"^/[A-Za-z0-9_\-./{}:]{1,120}$")


def paths_in(values: Sequence[object]) -> List[str]:
    """Request paths a call out may have gone to: the path of each URL in the values, and values that
    are themselves paths (a client that joins a base URL and a path holds them apart).

    >>> paths_in(["http://127.0.0.1:8080/orders/42?x=1", "/charges", "no path", {"base": "http://h:1"}])
    ['/orders/42', '/charges']
    """
    out: List[str] = []

    def add(p: str) -> None:
        p = p.rstrip("/")
        if p and p not in out and not p.startswith(("/tmp/", "/usr/", "/proc/", "/dev/", "/etc/", "/var/")):
            out.append(p)

    def walk(v: object, depth: int = 0) -> None:
        if depth > 4:
            return
        if isinstance(v, str):
            for m in _URL_PATH.finditer(v):
                add(m.group(1))
            if _PATH.match(v) and not v.endswith(".py"):
                add(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x, depth + 1)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x, depth + 1)

    for v in values:
        walk(v)
    return out


def handler_names(line: str) -> List[str]:
    """Names a route-registration line hands the request to: ``self.signup`` -> ``signup``."""
    rest = re.sub(r"(['\"]).*?\1", " ", line)  # drop string literals (the route itself)
    if re.match(r"\s*[:,]?\s*lambda\b", rest):  # a lambda: the first function of ours it calls
        called = [n for n in re.findall(r"(\w+)\s*\(", rest) if n not in _BUILTIN_NAMES]
        if called:
            return called[:1]
    names = re.findall(r"(?:\b\w+\.)*?(\w+)\s*(?=[,)\]}])", rest)
    return [n for n in names if n not in ("self", "None", "True", "False") and not n.isdigit()]


def is_app_file(path: str) -> bool:
    """Code of the service itself, not the interpreter's, an installed package's or probebook's own."""
    p = path.replace("\\", "/")
    if any(f"/probebook/{room}" in p for room in _OURS):
        return False
    return p.endswith(".py") and not any(s in p for s in ("/site-packages/", "/dist-packages/", "/lib/python3",
                                                           "/lib64/python3", "<frozen"))


def innermost_ours(frames: Sequence[dict]) -> Optional[dict]:
    """The innermost of an exception's captured frames that is the service's own code (where, for us,
    it was raised), or None."""
    return next((f for f in reversed(frames or []) if is_app_file(f.get("file") or "")), None)


def entry_points(service: str, files: Sequence[str], read, route_words: Sequence[str],
                 limit: int = 3) -> List[EntryPoint]:
    """Functions of `service` that receive requests for the words of the incident (a route first; when
    several routes are named, the handlers of all of them).

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
            try:
                fns = functions(text)
            except SourceError:  # not Python this interpreter parses: not an entry point
                continue
            for i, ln in enumerate(lines, 1):
                if f'"{word}' not in ln and f"'{word}" not in ln:
                    continue
                ep = _entry_at(service, path, fns, lines, i, word)
                if ep and all(ep.function != f.function or ep.file != f.file for f in found):
                    found.append(ep)
        if found and not word.startswith("/"):  # every route named is served; of plain words, the first found
            break
    if not found:  # no route: the code that raises what the reporter quotes ("quota exceeded")
        for word in route_words:
            for path in files:
                try:
                    lines = read(path).splitlines()
                except Exception:  # noqa: BLE001 - skipped like above
                    continue
                fns = None
                for i, ln in enumerate(lines, 1):
                    if "raise " in ln and word in ln and len(word) >= 5:
                        try:
                            fns = fns if fns is not None else functions("\n".join(lines))
                        except SourceError:
                            break
                        holders = [f for f in fns if f.start <= i <= f.end]
                        if holders:
                            f = max(holders, key=lambda f: f.start)
                            found.append(EntryPoint(service, path, f.qualname, f.start, f"raises {word!r}"))
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
