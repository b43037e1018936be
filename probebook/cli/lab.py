"""`probebook lab ...`: the incident lab from the command line.

    probebook lab up [--scenario ID] [--state-dir DIR] [--seed N] [--rps R] [--base-port P] [--no-monitoring]
    probebook lab status [--json]
    probebook lab inject ID
    probebook lab recover
    probebook lab down
    probebook lab scenarios
    probebook lab eval [--only ID,ID] [--scenarios DIR] [--json OUT] [--llm] [--budget S] [--contain | --lifecycle]

Errors are one line on stderr and exit status 1 (2 for bad usage). The lab's heavy imports happen
when a command runs, not when the `probebook` command starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List

from probebook.errors import ProbebookError

from .usage import Subparsers, add_group

__all__ = ["register"]


def _common(p: argparse.ArgumentParser) -> None:
    p.set_defaults(handler=_run)
    p.add_argument("--state-dir", default=None, help="where the lab keeps its state "
                                                     "(default $PROBEBOOK_LAB_DIR or ~/.local/state/probebook/lab)")
    p.add_argument("--scenarios", action="append", default=[], metavar="DIR",
                   help="another folder of scenario folders (repeatable; also $PROBEBOOK_LAB_SCENARIOS)")


def register(sub: Subparsers) -> None:
    lab_sub = add_group(sub, "lab", "the incident lab: a live shop with reproducible faults",
                        "{up,status,inject,recover,down,scenarios,eval}")
    up = lab_sub.add_parser("up", help="start the shop, its load, Prometheus and Alertmanager")
    _common(up)
    up.add_argument("--scenario", help="inject this scenario once the shop is up")
    up.add_argument("--seed", type=int, default=7, help="seed of the data and the load (default 7)")
    up.add_argument("--rps", type=float, default=16.0, help="customer requests per second (default 16)")
    up.add_argument("--base-port", type=int, default=0, help="first of consecutive ports (default: free ports)")
    up.add_argument("--window", default="10s", help="rate window of the alert rules (default 10s)")
    up.add_argument("--no-monitoring", action="store_true", help="do not start Prometheus and Alertmanager")
    status = lab_sub.add_parser("status", help="services, alerts firing, what customers see")
    _common(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    inject = lab_sub.add_parser("inject", help="inject a scenario into the running shop")
    _common(inject)
    inject.add_argument("id", help="a scenario id (see: probebook lab scenarios) or the path of a scenario folder")
    ev = lab_sub.add_parser("eval", help="score the assistant blind against the scenarios' ground truth")
    _common(ev)
    ev.add_argument("--only", default="", help="comma-separated scenario ids (default: every scenario)")
    ev.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="also write the results as JSON")
    ev.add_argument("--llm", action="store_true", help="the LLM planner ($PROBEBOOK_LLM_BASE_URL, _MODEL, _API_KEY)")
    ev.add_argument("--budget", type=float, default=110.0, help="seconds per investigation (default 110)")
    ev.add_argument("--contain", action="store_true",
                    help="after each verdict, do the containments it proposes, in order, until the symptom goes")
    ev.add_argument("--lifecycle", action="store_true",
                    help="the whole lifecycle after each verdict: the scenario's fix validated on captured calls, "
                         "containment, verification, the postmortem notebook run under nbval (in STATE/eval/ID)")
    for name, text in (("recover", "undo the active scenario: back to the baseline"),
                       ("down", "stop everything the lab started"), ("scenarios", "list the scenarios")):
        _common(lab_sub.add_parser(name, help=text))


def _print_status(status: Any, firing: List[Any], source: str) -> None:
    print(f"lab in {status['state_dir']}; scenario: {status['scenario'] or 'none'}")
    for name, s in status["services"].items():
        state = "up" if s["running"] else "DOWN"
        agent = f" agent {s['agent_url']}" if s["agent_url"] else " (outside service, no agent)"
        print(f"  {name:<10} {s['version']:<9} {state:<5} {s['url']}{agent}")
    mon = status["monitoring"]
    if mon.get("prometheus"):
        print(f"  prometheus {mon['prometheus']}  alertmanager {mon['alertmanager']}")
    else:
        print(f"  monitoring skipped: {mon.get('skipped')}")
    last = status["loadgen"].get("last") or {}
    kinds = ", ".join(f"{k} {v['requests']} ({v['failed']} failed, p95 {v['p95_ms']} ms)"
                      for k, v in (last.get("kinds") or {}).items())
    print(f"  customers (last {last.get('window_s', 10):g}s): {kinds or 'no requests yet'}")
    print(f"alerts firing ({source}): " + ("none" if not firing else ""))
    for f in firing:
        labels = ", ".join(f"{k}={v}" for k, v in f.labels.items())
        print(f"  {f.name} {{{labels}}}: {f.summary}")


def _eval(args: argparse.Namespace, state: str) -> int:
    import os

    from probebook.lab.evaluate import evaluate, table, to_json
    from probebook.lab.runner import Lab, LabOptions
    from probebook.lab.scenarios import all_scenarios, find_scenario

    only = [s for s in args.only.split(",") if s.strip()]
    scenarios = [find_scenario(s.strip(), args.scenarios) for s in only] if only else all_scenarios(args.scenarios)
    if args.scenarios and not only:  # a user's folder: its scenarios, not the built-in ones again
        roots = [os.path.abspath(d) for d in args.scenarios]
        scenarios = [s for s in scenarios if any(s.path.startswith(r + os.sep) for r in roots)]
    lab = Lab(LabOptions(state_dir=state, scenario_dirs=args.scenarios))
    started = not lab.running()  # a running lab is used as it is; else one is started for the evaluation
    if not started:
        lab = Lab.attach(state)
        lab.options.scenario_dirs += args.scenarios
    if started:
        lab.up()
        print(f"lab up in {state} for the evaluation")
    planner, llm = "deterministic", None
    if args.llm:
        from probebook.assistant.llm import LlmConfig

        planner, llm = "llm", LlmConfig.from_env()
    try:
        results = evaluate(lab, scenarios, budget_s=args.budget, planner=planner, llm=llm, contain=args.contain,
                           lifecycle=args.lifecycle)
    finally:
        if started:
            lab.down()
    print(table(results))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            fh.write(to_json(results))
    return 0


def _run(args: argparse.Namespace) -> int:
    from probebook.lab.actions import inject, recover
    from probebook.lab.runner import Lab, LabOptions, default_state_dir
    from probebook.lab.scenarios import all_scenarios, find_scenario

    state = args.state_dir or default_state_dir()
    try:
        cmd = args.lab_command
        if cmd == "scenarios":
            for s in all_scenarios(args.scenarios):
                print(f"{s.id:<22} {s.alert or '-':<19} {s.title}")
            return 0
        if cmd == "up":
            lab = Lab(LabOptions(state_dir=state, seed=args.seed, rps=args.rps, base_port=args.base_port,
                                 window=args.window, monitoring=not args.no_monitoring, scenario_dirs=args.scenarios))
            manifest = lab.up(scenario=args.scenario)
            mon = manifest["monitoring"]
            print(f"lab up in {manifest['up_seconds']:g}s: {', '.join(manifest['services'])} (state {lab.state})")
            print(f"  gateway {lab.url('gateway')}; agent token file {manifest['token_file']}")
            print(f"  prometheus {mon['prometheus']}, alertmanager {mon['alertmanager']}" if mon["prometheus"]
                  else f"  skipped: {mon['skipped']}")
            if args.scenario:
                print(f"  scenario {args.scenario} injected")
            return 0
        if cmd == "eval":
            return _eval(args, state)
        if cmd == "down":
            stopped = Lab(LabOptions(state_dir=state)).down()
            print(f"stopped {', '.join(stopped)}" if stopped else f"nothing was running in {state}")
            return 0
        lab = Lab.attach(state)
        lab.options.scenario_dirs += args.scenarios
        if cmd == "status":
            status = lab.status()
            source = "alertmanager" if status["monitoring"].get("alertmanager") else "lab health check"
            firing = lab.firing()
            if args.json:
                status["firing"] = [{"name": f.name, "labels": f.labels, "summary": f.summary} for f in firing]
                print(json.dumps(status, indent=1))
            else:
                _print_status(status, firing, source)
            return 0
        if cmd == "inject":
            for line in inject(lab, find_scenario(args.id, lab.options.scenario_dirs)):
                print(line)
            return 0
        if cmd == "recover":
            for line in recover(lab) or ["nothing to undo"]:
                print(line)
            return 0
    except ProbebookError as exc:
        print(f"probebook lab {args.lab_command}: error: {exc}", file=sys.stderr)
        return 1
    return 2
