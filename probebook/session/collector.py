"""Streams events from connected services into the evidence store, in a background thread.

One thread serves every service: it long-polls each in turn (short timeouts so a slow or dead
service cannot starve the others), ingests what arrived with the instance it came from, and
notes failures instead of raising. Listeners (widgets, waits) are told what arrived.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

from probebook.errors import ConnectorError
from probebook.connectors.agent_records import AgentEvent
from probebook.evidence import EvidenceStore

from .handles import ServiceHandle

__all__ = ["Collector"]

Listener = Callable[[str, List[AgentEvent]], None]  # (service, the events that arrived)


class Collector:
    """Pulls `events()` from each service handle and stores them. Thread-safe add/remove."""

    def __init__(self, store: EvidenceStore, poll_timeout: float = 0.25) -> None:
        self.store = store
        self.poll_timeout = poll_timeout
        self._services: Dict[str, ServiceHandle] = {}
        self._lock = threading.Lock()
        self._listeners: List[Listener] = []
        self.errors: Dict[str, str] = {}
        self.last_ok: Dict[str, float] = {}
        self.received: Dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, name: str, handle: ServiceHandle) -> None:
        with self._lock:
            self._services[name] = handle
            self.received.setdefault(name, 0)
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="probebook-collector", daemon=True)
            self._thread.start()

    def remove(self, name: str) -> None:
        with self._lock:
            self._services.pop(name, None)

    def listen(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def unlisten(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def poll_once(self) -> int:
        """One round over every service; returns how many events were stored."""
        with self._lock:
            services = list(self._services.items())
        stored = 0
        for name, handle in services:
            try:
                events = handle.events(timeout=self.poll_timeout if len(services) == 1 else 0.05)
            except ConnectorError as exc:
                self.errors[name] = str(exc)
                continue
            except Exception as exc:  # keep collecting the others; say what broke
                self.errors[name] = f"{type(exc).__name__}: {exc}"
                continue
            self.errors.pop(name, None)
            self.last_ok[name] = time.time()
            changes = getattr(handle, "changes", None)  # instances that joined or left (a followed fleet)
            while changes:
                self.store.add_timeline(f"{name}: {changes.popleft()}", source="fleet")
            if not events:
                continue
            by_instance: Dict[str, List[Dict[str, Any]]] = {}
            for e in events:
                by_instance.setdefault(e.instance_id, []).append(e.data)
            for instance_id, batch in by_instance.items():
                stored += sum(self.store.ingest(batch, service=name, instance_id=instance_id).inserted.values())
            self.received[name] = self.received.get(name, 0) + len(events)
            for fn in list(self._listeners):
                try:
                    fn(name, events)
                except Exception:  # a broken listener must not stop evidence from being stored
                    self.unlisten(fn)
        return stored

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                empty = not self._services
            if empty:
                self._stop.wait(0.2)
                continue
            self.poll_once()
            if self.errors:
                self._stop.wait(0.2)  # do not spin on a dead service

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
