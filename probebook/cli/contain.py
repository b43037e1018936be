"""`probebook contain`: containment for a saved investigation's verdict, with approval.

    probebook contain incident.duckdb --lab                  # the proposals, nothing changed
    probebook contain incident.duckdb --lab --yes            # do the first, then check the symptom
    probebook contain incident.duckdb --remediation ops.remediate:make --prometheus URL --yes \
        --proposal config-payments-timeout

Without `--yes` nothing changes a service: the proposals are printed (and audited as proposed). A
proposal's id names what it does, so the same id means the same action in a later run; one that is no
longer proposed (what it would undo changed since) is refused. The result goes to stdout as JSON. Exit
status: 0 contained (or only proposals shown), 1 an error or the action failed, 3 the symptom is still
there, could not be judged, or nothing could be proposed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from probebook.errors import ProbebookError, one_line

from .investigate import add_sources, open_investigation
from .usage import Subparsers, usage_error

__all__ = ["register"]

PROG = "probebook contain"


def register(sub: Subparsers) -> None:
    p = sub.add_parser("contain", help="propose (and with --yes do) the action that contains a verdict's incident",
                       description="Propose containment for a saved investigation's verdict (roll back, restore a "
                                   "config value or flag, restart); with --yes do one, audited, and check the "
                                   "symptom after it.")
    p.set_defaults(handler=_run)
    p.add_argument("store", metavar="FILE.duckdb", help="the investigation (probebook investigate --out FILE)")
    p.add_argument("--verdict", default=None, metavar="ID", help="the verdict to contain (default: the last)")
    p.add_argument("--yes", action="store_true", help="approve: do the proposal (nothing changes without it)")
    p.add_argument("--proposal", default=None, metavar="ID",
                   help="which proposal --yes does, by the id the listing shows (default: the first)")
    p.add_argument("--remediation", default=None, metavar="MODULE:FACTORY",
                   help="what changes services: FACTORY(investigation) returns a Remediation (default with "
                        "--lab: the lab's)")
    p.add_argument("--audit", default=None, metavar="FILE",
                   help="the audit log (default: actions-audit.log beside FILE.duckdb)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the symptom to go (default 120)")
    p.add_argument("--since", default="6h", help="how far back changes are undone (default 6h)")
    add_sources(p)


def _remediation(args: argparse.Namespace, inv: Any) -> Any:
    if args.remediation:
        from probebook.assistant.containment import load_remediation

        try:
            return load_remediation(args.remediation, inv)
        except ProbebookError as exc:
            usage_error(PROG, one_line(exc))
    if args.lab:
        from probebook.lab.remediation import LabRemediation
        from probebook.lab.runner import Lab

        return LabRemediation(Lab.attach(args.state_dir))
    return None


def _run(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.store):
        usage_error(PROG, f"{args.store}: no such file; give the .duckdb file an investigation wrote (--out)")
    if args.yes and not (args.lab or args.remediation):
        usage_error(PROG, "--yes needs something that can change services: --lab, or --remediation MODULE:FACTORY")
    from probebook.assistant.containment import (announce, changes_elsewhere, contain, current_user,
                                                 default_audit_path, propose, why_no_proposal)
    from probebook.assistant.journal import Journal

    args.out = args.store
    inv = open_investigation(args, PROG)
    if inv is None:
        return 1
    try:
        journal = Journal(inv.store)
        verdicts = journal.verdicts()
        verdict = next((v for v in verdicts if v.id == args.verdict), None) if args.verdict else \
            (verdicts[-1] if verdicts else None)
        if verdict is None:
            known = ", ".join(v.id for v in verdicts) or "none"
            print(f"{PROG}: error: no verdict {args.verdict or ''} in {args.store} (its verdicts: {known})",
                  file=sys.stderr)
            return 1
        proposals = propose(inv, verdict, since=args.since)
        print(f"verdict {verdict.id}: {verdict.headline()}", file=sys.stderr)
        if not proposals:
            print(json.dumps({"verdict": verdict.id, "proposals": [], "why": why_no_proposal(verdict.kind, changes_elsewhere(inv, verdict, args.since))}, indent=1))
            return 3 if args.yes else 0  # asked to contain, and nothing could be: not contained
        for p in proposals:
            print(f"  {p.line()}\n    expected: {p.expected}", file=sys.stderr)
        audit, who = args.audit or default_audit_path(args.store), f"cli:{current_user()}"
        if not args.yes:  # a listing: audited and on the timeline as proposed, nothing decided
            announce(inv, proposals, audit, who)
            print(f"nothing changed; to do one: {PROG} {args.store} ... --yes --proposal {proposals[0].id}",
                  file=sys.stderr)
            print(json.dumps({"verdict": verdict.id, "proposals": [p.to_dict() for p in proposals]}, indent=1,
                             default=str))
            return 0
        chosen = next((p for p in proposals if p.id == args.proposal), None) if args.proposal else proposals[0]
        if chosen is None:
            usage_error(PROG, f"--proposal {args.proposal}: not proposed now; these are "
                              f"{', '.join(p.id for p in proposals)}")
        incident = journal.incident_of(verdict.id)
        result = contain(inv, chosen, _remediation(args, inv), approve=True,
                         alerts=incident.alerts if incident else (), verdict=verdict, audit=audit, who=who,
                         check_timeout=args.timeout,
                         progress=lambda line: print(line, file=sys.stderr, flush=True))
    except ProbebookError as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        inv.close()
    print(json.dumps({"verdict": verdict.id, "proposals": [p.to_dict() for p in proposals],
                      "result": result.to_dict()}, indent=1, default=str))
    if result.outcome == "contained":
        return 0
    return 1 if result.outcome == "failed" else 3
