"""`probebook investigate`: the assistant from a terminal. Progress lines go to stderr, the verdict
(after the proof gate) to stdout as JSON.

    probebook investigate "checkout 502s since 10:40" --lab
    probebook investigate --alert HighErrorRate --connect orders=/run/orders/ --token-file tokens.txt \\
        --prometheus http://127.0.0.1:9090 --alertmanager http://127.0.0.1:9093 --out incident.duckdb
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, List, Optional

from probebook.errors import ProbebookError, one_line

from .usage import Subparsers, usage_error

if TYPE_CHECKING:
    from probebook.session import Investigation

__all__ = ["register", "add_sources", "open_investigation"]

PROG = "probebook investigate"


def register(sub: Subparsers) -> None:
    p = sub.add_parser("investigate", help="investigate an incident with live probes; the verdict as JSON",
                       description="Investigate an incident: the alerts firing now and your words, tested "
                                   "with read-only probes; PROVEN only with evidence this run captured.")
    p.set_defaults(handler=_run)
    p.add_argument("text", nargs="?", default="", help="what is wrong, in words (e.g. 'checkout 502s since 10:40')")
    p.add_argument("--alert", default=None, metavar="NAME", help="start from this firing alert only")
    add_sources(p)
    p.add_argument("--llm", action="store_true", help="plan with an LLM ($PROBEBOOK_LLM_BASE_URL, _MODEL, _API_KEY)")
    p.add_argument("--out", default=":memory:", metavar="FILE.duckdb", help="keep the evidence in this file")
    p.add_argument("--budget", type=float, default=110.0, help="seconds for the whole investigation (default 110)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def add_sources(p: argparse.ArgumentParser) -> None:
    """The options naming what an investigation reads: the lab, or services, Prometheus, Alertmanager."""
    p.add_argument("--lab", action="store_true", help="investigate the running incident lab (its services, "
                                                       "Prometheus, Alertmanager, logs and change log)")
    p.add_argument("--state-dir", default=None, help="the lab's state directory (with --lab)")
    p.add_argument("--connect", action="append", default=[], metavar="NAME=TARGET",
                   help="a service: an agent URL or a port-file directory (repeatable)")
    p.add_argument("--token-file", default=None, help="the agents' token file (else $PROBEBOOK_TOKEN[_FILE])")
    p.add_argument("--prometheus", default=None, help="Prometheus URL (else $PROBEBOOK_PROMETHEUS_URL)")
    p.add_argument("--alertmanager", default=None, help="Alertmanager URL (else $PROBEBOOK_ALERTMANAGER_URL)")


def open_investigation(args: argparse.Namespace, prog: str) -> Optional["Investigation"]:
    """An `Investigation` (its store at `args.out`) connected to what `add_sources`' options name; None
    after printing the one-line reason when it cannot be made. Bad usage exits (status 2)."""
    from probebook.session import Investigation

    if not args.lab and not args.connect:
        usage_error(prog, "nothing to investigate: give --lab, or --connect NAME=TARGET for each service")
    targets: List[tuple] = []
    for item in args.connect:
        name, sep, target = item.partition("=")
        if not sep or not name or not target:
            usage_error(prog, f"--connect {item!r}: write NAME=TARGET, e.g. orders=http://127.0.0.1:7001")
        targets.append((name, target))
    try:
        inv = Investigation(args.out)
    except ProbebookError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return None
    try:
        if args.lab:
            from probebook.lab.endpoints import connect_lab
            from probebook.lab.runner import Lab

            connect_lab(inv, Lab.attach(args.state_dir))
        for name, target in targets:
            inv.connect(name, target, token_file=args.token_file)
        if args.prometheus or args.alertmanager:
            inv.telemetry.configure(prometheus=args.prometheus, alertmanager=args.alertmanager)
    except ProbebookError as exc:
        inv.close()
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return None
    return inv


def _run(args: argparse.Namespace) -> int:
    from probebook.assistant import Assistant

    inv = open_investigation(args, PROG)
    if inv is None:
        return 1
    try:
        assistant = Assistant(inv)
        alerts = assistant.firing_alerts()
        if args.alert:
            alerts = [a for a in alerts if a.name == args.alert]
            if not alerts:
                print(f"{PROG}: error: no alert {args.alert!r} is firing; leave out --alert to use every firing "
                      f"alert", file=sys.stderr)
                return 1
        kw = {}
        if args.llm:
            from probebook.assistant.llm import LlmConfig

            kw = {"planner": "llm", "llm": LlmConfig.from_env()}
        progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
        verdict = assistant.investigate(args.text, alerts=alerts, budget_s=args.budget, progress=progress, **kw)
    except ProbebookError as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        inv.close()
    print(json.dumps(verdict.to_dict(), indent=1, default=str))
    return 0
