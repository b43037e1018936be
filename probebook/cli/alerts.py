"""`probebook alerts listen`: receive Alertmanager's webhooks, print each new or changed alert.

    probebook alerts listen [--port 9099] [--evidence incident.duckdb] [--json] [--max-body BYTES]

Point Alertmanager at it (``receivers: [{name: probebook, webhook_configs: [{url:
http://127.0.0.1:9099/}]}]``). It listens on 127.0.0.1 only; one line per alert goes to stdout
(``--json``: one JSON object per line), rejected requests are one line each on stderr, and Ctrl-C
or SIGTERM stops it (exit 0). With ``--evidence`` the alerts are also stored in that DuckDB file.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict
from typing import Any, List

from probebook.connectors.alertmanager import MAX_BODY, Alert, AlertReceiver
from probebook.errors import EvidenceError, TelemetryInputError, one_line

from .usage import Subparsers, add_group, usage_error

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    commands = add_group(sub, "alerts", "receive alerts from Alertmanager", "{listen}")
    listen = commands.add_parser(
        "listen", help="run a webhook receiver for Alertmanager on 127.0.0.1",
        description="Receive Alertmanager's webhook notifications on 127.0.0.1 and print each new or changed "
                    "alert (de-duplicated by fingerprint).")
    listen.add_argument("--port", type=int, default=9099, help="port on 127.0.0.1 (default 9099; 0: a free one)")
    listen.add_argument("--evidence", help="also store the alerts in this DuckDB evidence file")
    listen.add_argument("--json", action="store_true", help="print one JSON object per alert")
    listen.add_argument("--max-body", type=int, default=MAX_BODY, help=f"largest payload in bytes (default {MAX_BODY})")
    listen.set_defaults(handler=_listen)


def _listen(args: argparse.Namespace) -> int:
    prog = "probebook alerts listen"
    if not 0 <= args.port <= 65535:
        usage_error(prog, f"--port must be from 0 to 65535, got {args.port}")
    if args.max_body < 1024:
        usage_error(prog, f"--max-body must be at least 1024 bytes, got {args.max_body}")
    store: Any = None
    if args.evidence:
        from probebook.evidence import EvidenceStore

        try:
            store = EvidenceStore(args.evidence)
        except EvidenceError as exc:  # in use by another process, a folder, no permission
            usage_error(prog, f"cannot open {args.evidence}: {one_line(exc, 200)}")
    out_lock = threading.Lock()

    def on_alerts(alerts: List[Alert]) -> None:
        if store is not None:
            from probebook.evidence.telemetry import store_alerts

            store_alerts(store, alerts, "webhook", f"POST {receiver.url}")
        with out_lock:
            for alert in alerts:
                print(json.dumps(asdict(alert), sort_keys=True) if args.json else alert.line(), flush=True)

    def on_reject(line: str) -> None:
        with out_lock:
            print(f"probebook: rejected a request: {line}", file=sys.stderr, flush=True)

    receiver = AlertReceiver(on_alerts, port=args.port, max_body=args.max_body, on_reject=on_reject)
    try:
        receiver.start()
    except TelemetryInputError as exc:
        if store is not None:
            store.close()
        usage_error(prog, str(exc))
    print(f"probebook: receiving alerts at {receiver.url} (Ctrl-C stops)", file=sys.stderr, flush=True)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        receiver.stop()
        if store is not None:
            store.close()
    return 0
