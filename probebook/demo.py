"""`make demo`: probes go into a running service, the incident lab breaks, JupyterLab opens.

Run: ``python -m probebook.demo [--scenario ID] [--agent-only] [--no-lab]``.

1. A small checkout service answers some users with HTTP 500 and logs nothing useful; four
   probes (log, snapshot with a condition, duration metric, exception) show why, come out again,
   and the code is exactly as before. This part prints its evidence and needs nothing else.
2. The incident lab comes up with a scenario injected (`probebook lab up --scenario ID`).
3. JupyterLab starts on the quickstart notebook (its URL, with the token, is printed).
   Ctrl-C stops JupyterLab and the lab.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import List, Optional

from probebook.agent import Agent
from probebook.agent.engine import backend_problem
from probebook.lab import minishop
from probebook.lab.procs import free_port

__all__ = ["main", "agent_demo"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCENARIO = "cache-wrong-type"


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
    lines, start = inspect.getsourcelines(func)  # type: ignore[arg-type]
    return start + next(i for i, line in enumerate(lines) if text in line)


def agent_demo() -> int:
    """Part 1: the agent in a running service, evidence printed. Returns 0 when the code was restored."""
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


def _lab(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "probebook.cli", "lab", *args])


def _jupyter(notebook_dir: str) -> Optional[subprocess.Popen]:
    if shutil.which("jupyter", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")) is None:
        print("JupyterLab is not installed here: pip install 'probebook[lab]'")
        return None
    port = free_port()
    token = os.urandom(12).hex()
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebook_dir}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=1).read()
            break
        except OSError:
            time.sleep(0.5)
    if proc.poll() is not None:
        print("JupyterLab did not start; try: jupyter lab notebooks/quickstart.ipynb")
        return None
    print(f"\nJupyterLab: http://127.0.0.1:{port}/lab/tree/quickstart.ipynb?token={token}")
    return proc


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m probebook.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=DEFAULT_SCENARIO, help=f"lab scenario to inject (default {DEFAULT_SCENARIO})")
    ap.add_argument("--agent-only", action="store_true", help="only part 1: the agent in a service, no lab, no JupyterLab")
    ap.add_argument("--no-lab", action="store_true", help="skip the incident lab")
    opts = ap.parse_args(argv)
    problem = backend_problem()
    if problem:  # an interpreter outside the project's venv: one line saying what to run instead
        print(f"python -m probebook.demo: {problem} (or run `make demo`, which uses .venv)", file=sys.stderr)
        return 1
    rc = agent_demo()
    if opts.agent_only or rc != 0:
        return rc
    lab_up = False
    if not opts.no_lab:
        print(f"\n== the incident lab, scenario {opts.scenario}")
        lab_up = _lab("up", "--scenario", opts.scenario) == 0
        if lab_up:
            _lab("status")
            print("(the lab keeps running while JupyterLab does; `probebook lab down` stops it)")
    jupyter = _jupyter(os.path.join(ROOT, "notebooks"))
    try:
        if jupyter is not None:
            print("Ctrl-C to stop.")
            jupyter.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if jupyter is not None and jupyter.poll() is None:
            os.killpg(jupyter.pid, signal.SIGTERM)
            jupyter.wait(10)
        if lab_up:
            _lab("down")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
