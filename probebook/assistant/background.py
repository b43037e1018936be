"""`AssistantRun`: one investigation in a background thread, so the notebook's kernel stays usable
while the assistant places probes and waits for their events.

The run keeps what a live view shows: the steps as the assistant reports them, the probes it placed,
the hypotheses it journaled, and at the end the verdict (or why there is none). `stop()` asks the
assistant to stop; it ends at its next step (within about a second) and removes its probes.

>>> from probebook.session import Investigation
>>> from probebook.assistant import Assistant
>>> inv = Investigation()
>>> run = AssistantRun(Assistant(inv), "checkout 502s since 10:40").start()
>>> run.wait(30).kind, run.state
('inconclusive', 'done')
>>> inv.close()
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from probebook.errors import one_line
from probebook.session import ProbeRecord

from .assistant import Assistant
from .model import Alert, Hypothesis, Verdict

__all__ = ["AssistantRun", "RUN_STATES"]

# what `AssistantRun.state` answers
RUN_STATES = ("starting", "running", "stopping", "done", "stopped", "failed")


class AssistantRun:
    """`Assistant.investigate(...)` in a daemon thread; the arguments are those of `investigate`
    (`options`: `budget_s`, `wait_s`, `planner`, `llm`; one left None takes its default).

    `on_change(fn)` registers a callback run (in the assistant's thread) after every step and at the
    end: a live view's refresh, say. It must be quick and must not raise."""

    def __init__(self, assistant: Assistant, text: str = "", alerts: Optional[List[Alert]] = None, title: str = "",
                 **options: Any) -> None:
        self.assistant = assistant
        self.text, self.alerts, self.title = text, alerts, title
        self._options = {k: v for k, v in options.items() if v is not None}
        self.stop_event = threading.Event()
        self.verdict: Optional[Verdict] = None
        self.error = ""
        self.started_at = 0.0
        self.finished_at = 0.0
        self._steps: List[Tuple[float, str]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._before: set = set()  # ids of the probe records that existed before the run
        self._listeners: List[Callable[[], None]] = []

    # ------------------------------------------------------------------ control
    def start(self) -> "AssistantRun":
        if self._thread is not None:
            raise RuntimeError("this run has started already; make a new AssistantRun")
        self._before = {id(r) for r in list(self.assistant.inv.records.values())}
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name="probebook-assistant", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the assistant to stop; it removes its probes and ends with an `inconclusive` verdict."""
        self.stop_event.set()
        self._notify()

    def wait(self, timeout: Optional[float] = None) -> Optional[Verdict]:
        """The verdict once the run has ended (None if `timeout` passed first, or it failed: `error`)."""
        self._done.wait(timeout)
        return self.verdict

    def on_change(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    # ------------------------------------------------------------------ what it shows
    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def state(self) -> str:
        """One of `RUN_STATES`."""
        if self._done.is_set():
            return "failed" if self.error else "stopped" if self.stop_event.is_set() else "done"
        if self.stop_event.is_set():
            return "stopping"
        return "running" if self._thread is not None else "starting"

    @property
    def seconds(self) -> float:
        """How long it has run (until now, or until it ended)."""
        if not self.started_at:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at

    def steps(self) -> List[Tuple[float, str]]:
        """(epoch seconds, line) for every step the assistant reported, oldest first."""
        with self._lock:
            return list(self._steps)

    def probes(self) -> List[ProbeRecord]:
        """The probes placed in this investigation while the run was going: the assistant's (and any
        a person placed meanwhile from the same investigation)."""
        end = self.finished_at or float("inf")
        return [r for r in list(self.assistant.inv.records.values())
                if id(r) not in self._before and self.started_at <= r.placed_at <= end]

    def hypotheses(self) -> List[Hypothesis]:
        """At the end, the verdict's ranked hypotheses; before, those journaled so far by this run."""
        if self.verdict is not None:
            return list(self.verdict.ranked)
        if not self.started_at:
            return []
        frame = self.assistant.inv.store.sql(
            "SELECT h.body FROM assistant_hypotheses h JOIN assistant_incidents i ON i.evidence_id = h.incident "
            f"WHERE epoch(i.ts) >= {self.started_at - 0.5!r} ORDER BY h.ts")
        return [Hypothesis.from_dict(_json(body)) for body in frame.to_series(0).to_list()] if frame.height else []

    # ------------------------------------------------------------------ the thread
    def _step(self, line: str) -> None:
        with self._lock:
            self._steps.append((time.time(), line))
        self._notify()

    def _notify(self) -> None:
        for fn in list(self._listeners):
            try:
                fn()
            except Exception:  # a view that cannot refresh must not end the investigation
                pass

    def _run(self) -> None:
        try:
            self.verdict = self.assistant.investigate(self.text, alerts=self.alerts, title=self.title,
                                                      progress=self._step, stop=self.stop_event, **self._options)
        except Exception as exc:  # noqa: BLE001 - the thread's end: shown in the view, never lost
            self.error = one_line(f"{type(exc).__name__}: {exc}", 300)
        finally:
            self.finished_at = time.time()
            self._done.set()
            self._notify()


def _json(body: object) -> dict:
    return json.loads(body) if isinstance(body, str) else dict(body)  # type: ignore[arg-type]
