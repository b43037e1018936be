"""`make demo`: a small service runs, probes go in without a restart, evidence comes out.

Run: ``python -m probebook.demo``. The checkout service answers some users with HTTP 500 and
logs nothing useful; four probes (log, snapshot with a condition, duration metric, exception)
show why, then come out again and the code is exactly as before.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import List

from probebook.agent import Agent
from probebook.lab import minishop

__all__ = ["main"]


def _traffic(port: int, users: List[int]) -> List[int]:
    codes = []
    for i, user in enumerate(users):
        url = f"http://127.0.0.1:{port}/checkout?user={user}&items=3&seed={i}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                codes.append(resp.status)
        except urllib.error.HTTPError as err:
            codes.append(err.code)
    return codes


def _line_of(func: object, text: str) -> int:
    import inspect

    lines, start = inspect.getsourcelines(func)  # type: ignore[arg-type]
    return start + next(i for i, line in enumerate(lines) if text in line)


def main() -> int:
    server = minishop.serve(0)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, name="minishop", daemon=True).start()
    users = [1, 7, 13, 21, 2, 13, 3]
    print(f"minishop listening on 127.0.0.1:{port}")
    print("before probes, HTTP status per request:", _traffic(port, users))

    agent = Agent()
    original = minishop.price_cart.__code__
    rate_line = _line_of(minishop.price_cart, "cart.total = round(")
    probes = [
        agent.add_probe({"kind": "log", "where": f"lab/minishop.py:{rate_line}",
                         "template": "user={cart.user_id} discount={discount} rate={rate}"}),
        agent.add_probe({"kind": "snapshot", "where": f"lab/minishop.py:{rate_line}",
                         "when": "isinstance(discount, str)", "capture": ["cart.user_id", "rate"]}),
        agent.add_probe({"kind": "metric", "where": "probebook.lab.minishop:checkout",
                         "metric": {"name": "checkout_ms", "type": "duration"}}),
        agent.add_probe({"kind": "exception", "where": "probebook.lab.minishop:checkout"}),
    ]
    for p in probes:
        print(f"probe {p.id:<14} {p.kind:<9} {p.status:<9} at {p.location}")
    print("with probes, HTTP status per request:  ", _traffic(port, users))

    events = agent.drain_events()
    print("\n-- dynamic log lines")
    for e in events:
        if e.kind == "log":
            print(f"  {e.file.split('/')[-1]}:{e.line}  {e.message}")
    print("\n-- snapshots where the discount is a string (condition: isinstance(discount, str))")
    for e in events:
        if e.kind == "snapshot":
            print(f"  {e.function} line {e.line}: discount={json.dumps(e.locals.get('discount'))}")
            print(f"    user={json.dumps(e.expressions.get('cart.user_id'))} rate={json.dumps(e.expressions.get('rate'))}")
    print("\n-- checkout duration (ms)")
    print("  ", [round(e.value, 3) for e in events if e.kind == "metric"])
    print("\n-- exceptions")
    for e in events:
        if e.kind == "exception":
            top = e.frames[0]["locals"] if e.frames else {}
            print(f"  {e.exc_type} in {' -> '.join(f['function'] for f in e.frames)}: "
                  f"user_id={top.get('user_id', {}).get('value')} total={top.get('total', {}).get('value')}")
    for p in probes:
        agent.remove_probe(p.id)
    restored = minishop.price_cart.__code__ is original
    print(f"\nprobes removed; original code restored: {restored}; events dropped: {agent.dropped_events}")
    agent.close()
    server.shutdown()
    return 0 if restored else 1


if __name__ == "__main__":
    raise SystemExit(main())
