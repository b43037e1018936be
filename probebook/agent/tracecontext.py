"""The current trace context (W3C trace ids) as probes see it.

When the service uses OpenTelemetry, its current span is the context. Otherwise services (or
frameworks) may record the incoming ``traceparent`` with `set_traceparent`, and span probes nest
under it.

>>> tok = set_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
>>> current()
('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7')
>>> reset(tok)
"""

from __future__ import annotations

import contextvars
import os
import re
import sys
import threading
from typing import Any, Optional, Tuple

__all__ = ["current", "thread_name", "set_traceparent", "traceparent", "reset", "new_span_id", "new_trace_id", "push_span"]

_CTX: contextvars.ContextVar[Optional[Tuple[str, str]]] = contextvars.ContextVar("probebook_trace", default=None)
_modules = sys.modules
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def current() -> Optional[Tuple[str, str]]:
    """(trace_id, span_id) of the current context, or None."""
    trace = _modules.get("opentelemetry.trace")  # every event asks: one call when OpenTelemetry is absent
    if trace is not None:
        try:
            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
        except Exception:  # a broken or partial OpenTelemetry install must not hurt the host
            pass
    return _CTX.get()


def set_traceparent(header: str) -> Any:
    """Adopt an incoming W3C ``traceparent``; returns a token for `reset`. Bad headers are ignored."""
    m = _TRACEPARENT.match(header.strip().lower()) if isinstance(header, str) else None
    return _CTX.set((m.group(1), m.group(2)) if m else None)


def push_span(trace_id: str, span_id: str) -> Any:
    return _CTX.set((trace_id, span_id))


def reset(token: Any) -> None:
    try:
        _CTX.reset(token)
    except (ValueError, RuntimeError):  # created in another context: nothing to undo here
        pass


def traceparent() -> Optional[str]:
    """The ``traceparent`` header value to send downstream, if there is a context."""
    cur = current()
    return f"00-{cur[0]}-{cur[1]}-01" if cur else None


_threads = threading.local()


def thread_name() -> str:
    """The current thread's name, remembered per thread after the first call (every event carries
    it; a thread renamed after its first event keeps the old name in later ones)."""
    try:
        return _threads.name  # type: ignore[no-any-return]
    except AttributeError:
        name = _threads.name = threading.current_thread().name
        return name
