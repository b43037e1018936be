"""Alerts from Alertmanager: a webhook receiver, polling of its v2 API, one normalized `Alert`.

>>> receiver = AlertReceiver(on_alerts=lambda alerts: print([a.name for a in alerts])).start()   # doctest: +SKIP
>>> receiver.url        # give this to Alertmanager: receivers: [{webhook_configs: [{url: ...}]}]  # doctest: +SKIP
'http://127.0.0.1:40123/'
>>> AlertmanagerClient("http://127.0.0.1:9093").alerts()                         # doctest: +SKIP
[Alert(name='QueueBacklog', service='worker', severity='page', status='firing', ...)]

Alertmanager re-sends a group's alerts every `group_interval`, and polling sees the same alerts
again: `AlertBook` keeps one record per fingerprint, so each alert is reported once per change
(fired, resolved, its summary edited). The receiver answers hostile payloads (wrong types, bodies
over `max_body`, malformed JSON) with a 4xx and one line saying what is wrong, and keeps serving.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from probebook.errors import AlertPayloadError, SourceUnreachable, TelemetryInputError, one_line

from .http_json import check_base_url, get_json
from .timefmt import parse_time

__all__ = ["Alert", "AlertBook", "AlertReceiver", "AlertmanagerClient", "parse_webhook",
           "alert_from_api", "MAX_BODY"]

MAX_BODY = 4 * 1024 * 1024  # a group of thousands of alerts fits; a 10 MB body is refused unread
_DRAIN_MAX = 64 * 1024 * 1024  # read and dropped at most, after refusing a body as too large
_STATES = {"active": "firing", "suppressed": "suppressed", "unprocessed": "pending"}


@dataclass(frozen=True)
class Alert:
    """One alert, the same whether it came by webhook or by polling. Times are epoch seconds;
    `ends` is None while the alert fires (Alertmanager's endsAt is then only a timeout)."""

    name: str
    service: str
    severity: str
    summary: str
    labels: Dict[str, str]
    started: Optional[float]
    ends: Optional[float]
    fingerprint: str
    status: str  # firing | resolved | suppressed | pending
    source_url: str = ""  # the generator's link (a Prometheus graph of the rule)
    annotations: Dict[str, str] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.status != "resolved"

    def line(self) -> str:
        """``FIRING QueueBacklog service=worker severity=page: more than 30 jobs wait``."""
        return (f"{self.status.upper()} {self.name} service={self.service or '-'} "
                f"severity={self.severity or '-'}: {self.summary}").rstrip(": ")


# ---------------------------------------------------------------------- normalizing
def _strings(raw: Any, where: str, required: bool) -> Dict[str, str]:
    if raw is None and not required:
        return {}
    if not isinstance(raw, dict):
        raise AlertPayloadError(f"{where}: expected an object of string values, got {type(raw).__name__}")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise AlertPayloadError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    return dict(raw)


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AlertPayloadError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    return value


def _time(raw: Mapping[str, Any], key: str, where: str) -> Optional[float]:
    text = _text(raw, key, where)
    stamp = parse_time(text) if text else None
    if text and stamp is None and not text.startswith("0001-"):
        raise AlertPayloadError(f"{where}.{key}: expected an RFC 3339 time such as 2024-05-01T10:00:00Z, "
                                f"got {text[:40]!r}")
    return stamp


def _normalize(raw: Any, where: str, status: str, default_url: str = "") -> Alert:
    if not isinstance(raw, dict):
        raise AlertPayloadError(f"{where}: expected an alert object, got {type(raw).__name__}")
    labels = _strings(raw.get("labels"), f"{where}.labels", required=True)
    annotations = _strings(raw.get("annotations"), f"{where}.annotations", required=False)
    fingerprint = _text(raw, "fingerprint", where) or _fingerprint(labels)
    ends = _time(raw, "endsAt", where) if status == "resolved" else None
    return Alert(
        name=labels.get("alertname", ""),
        service=next((labels[k] for k in ("service", "app", "app_kubernetes_io_name", "job") if labels.get(k)), ""),
        severity=labels.get("severity") or labels.get("priority", ""),
        summary=next((annotations[k] for k in ("summary", "description", "message") if annotations.get(k)), ""),
        labels=labels, started=_time(raw, "startsAt", where), ends=ends, fingerprint=fingerprint,
        status=status, source_url=_text(raw, "generatorURL", where) or default_url, annotations=annotations)


def _fingerprint(labels: Mapping[str, str]) -> str:
    # Alertmanager always sends one; other senders may not: ours is stable over the same labels
    return hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]


def parse_webhook(body: bytes) -> List[Alert]:
    """The alerts of one webhook POST (Alertmanager's version 4 payload); `AlertPayloadError` else."""
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise AlertPayloadError("body is not UTF-8 JSON", 400) from None
    except ValueError as exc:
        raise AlertPayloadError(f"malformed JSON: {exc}", 400) from None
    except RecursionError:
        raise AlertPayloadError("malformed JSON: nested too deeply", 400) from None
    if not isinstance(payload, dict):
        raise AlertPayloadError(f"expected a JSON object with an 'alerts' list, got {type(payload).__name__}")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise AlertPayloadError(f"alerts: expected a list of alerts, got {type(alerts).__name__}")
    external = payload.get("externalURL") if isinstance(payload.get("externalURL"), str) else ""
    out = []
    for i, raw in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(raw, dict):
            raise AlertPayloadError(f"{where}: expected an alert object, got {type(raw).__name__}")
        status = raw.get("status", payload.get("status"))
        if status not in ("firing", "resolved"):
            raise AlertPayloadError(f"{where}.status: expected 'firing' or 'resolved', got {status!r}"[:200])
        out.append(_normalize(raw, where, status, external))
    return out


def alert_from_api(raw: Any, where: str = "alert") -> Alert:
    """One alert of ``GET /api/v2/alerts`` (a gettableAlert)."""
    status = raw.get("status") if isinstance(raw, dict) else None
    state = status.get("state") if isinstance(status, dict) else None
    if state not in _STATES:
        raise AlertPayloadError(f"{where}.status.state: expected active, suppressed or unprocessed, got {state!r}")
    return _normalize(raw, where, _STATES[state])


# ---------------------------------------------------------------------- de-duplication
class AlertBook:
    """The latest record of each alert, by fingerprint. Thread-safe.

    A newer start of the same fingerprint (it fired again) replaces the record; for the same start,
    a resolved alert stays resolved (a late copy saying "firing" is stale).
    """

    def __init__(self, capacity: int = 10000) -> None:
        self.capacity = capacity
        self._alerts: Dict[str, Alert] = {}
        self._lock = threading.RLock()

    def changes(self, alerts: Sequence[Alert]) -> List[Alert]:
        """Of `alerts`, those that are new or differ from the record (nothing is recorded yet)."""
        with self._lock:
            seen: Dict[str, Alert] = {}
            for alert in alerts:
                old = seen.get(alert.fingerprint) or self._alerts.get(alert.fingerprint)
                if old is not None:
                    if (alert.started or 0) < (old.started or 0):
                        continue
                    if alert.started == old.started and old.status == "resolved" and alert.status != "resolved":
                        continue
                    if alert == old:
                        continue
                seen[alert.fingerprint] = alert
            return list(seen.values())

    def record(self, alerts: Sequence[Alert]) -> None:
        with self._lock:
            for alert in alerts:
                self._alerts.pop(alert.fingerprint, None)
                self._alerts[alert.fingerprint] = alert  # re-insert: dict order is age order
            while len(self._alerts) > self.capacity:
                oldest = next((fp for fp, a in self._alerts.items() if not a.open), next(iter(self._alerts)))
                del self._alerts[oldest]

    def update(self, alerts: Sequence[Alert]) -> List[Alert]:
        """Record `alerts`; answer those that were new or changed."""
        with self._lock:
            changed = self.changes(alerts)
            self.record(changed)
            return changed

    def all(self) -> List[Alert]:
        with self._lock:
            return list(self._alerts.values())

    def __len__(self) -> int:
        return len(self._alerts)


# ---------------------------------------------------------------------- polling
class AlertmanagerClient:
    """Alertmanager's v2 API. `timeout` bounds each call, start to end."""

    def __init__(self, url: str, timeout: float = 10.0, headers: Optional[Mapping[str, str]] = None) -> None:
        self.url = check_base_url(url, "Alertmanager")
        self.timeout, self.headers = timeout, dict(headers or {})

    @staticmethod
    def params(active: bool = True, silenced: bool = True, inhibited: bool = True,
               filters: Sequence[str] = ()) -> Dict[str, Any]:
        params: Dict[str, Any] = {"active": str(active).lower(), "silenced": str(silenced).lower(),
                                  "inhibited": str(inhibited).lower(), "unprocessed": "true"}
        return {**params, "filter": list(filters)} if filters else params

    def alerts(self, active: bool = True, silenced: bool = True, inhibited: bool = True,
               filters: Sequence[str] = ()) -> List[Alert]:
        """Alerts Alertmanager holds now; `filters` are matchers such as ``service="orders"``."""
        raw = get_json(self.url, "/api/v2/alerts", self.params(active, silenced, inhibited, filters),
                       timeout=self.timeout, what="Alertmanager", headers=self.headers)
        if not isinstance(raw, list):
            raise SourceUnreachable(f"Alertmanager at {self.url}: /api/v2/alerts answered a "
                                    f"{type(raw).__name__}, not a list; is this Alertmanager 0.16 or newer?")
        try:
            alerts = [alert_from_api(a, f"alerts[{i}]") for i, a in enumerate(raw)]
        except AlertPayloadError as exc:
            raise SourceUnreachable(f"Alertmanager at {self.url} answered an alert of unknown shape: {exc}") from None
        return [replace(a, source_url=a.source_url or self.url) for a in alerts]


# ---------------------------------------------------------------------- the webhook receiver
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # Alertmanager posts each group at once
    allow_reuse_address = True
    receiver: "AlertReceiver"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-request is not worth a traceback on the notebook's stderr


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that stops sending mid-body loses its connection, not a thread forever
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, doc: Mapping[str, Any], close: bool = False) -> None:
        body = (json.dumps(doc) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?")[0] in ("/-/healthy", "/-/ready"):
            self._answer(200, {"status": "ok"})
        elif self.path.split("?")[0] in ("/", "/alerts"):
            self._answer(200, {"alerts": [asdict(a) for a in self.server.receiver.book.all()]})
        else:
            self._answer(404, {"error": "POST alerts to /; GET /alerts lists them"})

    def do_POST(self) -> None:
        receiver = self.server.receiver
        status, doc = self._receive(receiver)
        if status >= 400:
            receiver._rejected(f"{status} {doc['error']}")
        self._answer(status, doc, close=status in (411, 413))

    def _receive(self, receiver: "AlertReceiver") -> Tuple[int, Dict[str, Any]]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return 411, {"error": "send the payload with a Content-Length (chunked bodies are not accepted)"}
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return 411, {"error": "send the payload with a Content-Length header"}
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            return 400, {"error": f"Content-Length must be a byte count, got {length_text[:40]!r}"}
        if length > receiver.max_body:
            self._drain(length)
            return 413, {"error": f"payload of {length} bytes is over the {receiver.max_body} byte limit; "
                                  f"lower the group size or raise --max-body"}
        body = self.rfile.read(length)
        if len(body) < length:
            return 400, {"error": f"the body ended after {len(body)} of {length} bytes"}
        try:
            alerts = parse_webhook(body)
        except AlertPayloadError as exc:
            return exc.status, {"error": str(exc)}
        try:
            changed = receiver.deliver(alerts)
        except Exception as exc:  # the sink (the evidence store) failed: say so, keep serving
            return 500, {"error": f"could not keep the alerts: {one_line(exc, 200)}"}
        return 200, {"received": len(alerts), "new_or_changed": len(changed)}

    def _drain(self, length: int) -> None:
        # Read (and drop) what the client sends, up to a bound, so that it gets our 413 instead of a
        # connection reset for closing on unread data.
        left, deadline = min(length, _DRAIN_MAX), time.monotonic() + 2.0
        self.connection.settimeout(1.0)
        try:
            while left > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(left, 1 << 16))  # type: ignore[attr-defined]
                if not chunk:
                    break
                left -= len(chunk)
        except (OSError, socket.timeout):
            pass


class AlertReceiver:
    """A webhook endpoint for Alertmanager on 127.0.0.1; `on_alerts` gets each new or changed alert.

    `on_alerts` runs on the request's thread; when it raises, Alertmanager gets a 500 and retries,
    and the alerts are not recorded as seen, so the retry delivers them again.
    """

    def __init__(self, on_alerts: Optional[Callable[[List[Alert]], None]] = None, port: int = 0,
                 host: str = "127.0.0.1", max_body: int = MAX_BODY, book: Optional[AlertBook] = None,
                 on_reject: Optional[Callable[[str], None]] = None) -> None:
        if not 0 <= port <= 65535:
            raise TelemetryInputError(f"port must be from 0 to 65535, got {port}")
        self.on_alerts, self.host, self.port, self.max_body = on_alerts, host, port, max_body
        self.on_reject = on_reject  # gets one line per rejected request
        self.book = book if book is not None else AlertBook()
        self.received = 0  # alerts in accepted payloads
        self.rejections: List[str] = []  # the last few rejected requests, one line each
        self._deliver_lock = threading.Lock()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "AlertReceiver":
        try:
            server = _Server((self.host, self.port), _Handler)
        except OSError as exc:
            raise TelemetryInputError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; "
                                      f"pick another port") from None
        server.receiver = self
        self._server, self.port = server, int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"probebook-alerts-{self.port}", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def deliver(self, alerts: Sequence[Alert]) -> List[Alert]:
        """Pass the new or changed of `alerts` to `on_alerts`, then record them as seen."""
        with self._deliver_lock:
            changed = self.book.changes(alerts)
            if changed and self.on_alerts is not None:
                self.on_alerts(changed)
            self.book.record(changed)
            self.received += len(alerts)
            return changed

    def _rejected(self, line: str) -> None:
        self.rejections = (self.rejections + [line[:300]])[-20:]
        if self.on_reject is not None:
            try:
                self.on_reject(line[:300])
            except Exception:
                pass  # a report that fails must not turn a 4xx into a dropped connection

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "AlertReceiver":
        return self.start() if not self.running else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
