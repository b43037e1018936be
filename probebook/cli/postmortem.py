"""`probebook postmortem`: the postmortem notebook of a saved investigation.

    probebook postmortem incident.duckdb -o postmortem.ipynb

The notebook's cells re-run against the saved file (read-only), so `pytest --nbval postmortem.ipynb` checks
it with nothing running (docs/assistant.md#the-postmortem-notebook).
"""

from __future__ import annotations

import argparse
import os
import sys

from probebook.errors import ProbebookError, one_line

from .usage import Subparsers, usage_error

__all__ = ["register"]

PROG = "probebook postmortem"


def register(sub: Subparsers) -> None:
    p = sub.add_parser("postmortem", help="write the postmortem notebook of a saved investigation",
                       description="Write a re-runnable postmortem notebook from an investigation's DuckDB file "
                                   "(probebook investigate --out FILE, Investigation(FILE)).")
    p.set_defaults(handler=_run)
    p.add_argument("store", metavar="FILE.duckdb", help="the saved investigation")
    p.add_argument("-o", "--output", default=None, metavar="OUT.ipynb",
                   help="where to write it (default: FILE-postmortem.ipynb beside the store)")
    p.add_argument("--verdict", default=None, metavar="ID", help="the verdict it is about (default: the last)")
    p.add_argument("--no-execute", action="store_true", help="write the cells without running them")


def _run(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.store):
        usage_error(PROG, f"{args.store}: no such file; give the .duckdb file an investigation wrote (--out)")
    out = args.output or os.path.splitext(args.store)[0] + "-postmortem.ipynb"
    if not out.endswith(".ipynb"):
        usage_error(PROG, f"-o {out}: write a notebook name ending in .ipynb")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        usage_error(PROG, f"-o {out}: no folder {os.path.dirname(out)!r}; create it first or write elsewhere")
    from probebook.assistant.postmortem import write_postmortem

    try:
        write_postmortem(args.store, out, args.verdict, execute=not args.no_execute)
    except ProbebookError as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    print(out)
    return 0
