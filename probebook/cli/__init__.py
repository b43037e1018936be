"""The `probebook` command: one subcommand group per module of this package.

    probebook agent run [options] -- python app.py     start a program with the agent inside
    probebook audit verify FILE [--head HASH]          check an agent's audit log
    probebook lab up|status|inject|recover|down|scenarios
    probebook alerts listen [--port 9099] [--evidence FILE]
    probebook investigate [TEXT] [--lab | --connect NAME=TARGET ...] [--alert NAME] [--llm] [--out FILE]
    probebook postmortem FILE.duckdb [-o postmortem.ipynb] [--verdict ID]
    probebook mcp [--stdio | --http HOST:PORT --clients-file FILE] [--lab | --connect NAME=TARGET ...]

Each group's module has ``register(subparsers)``, which adds its group (`usage.add_group`) and sets
``handler`` (a function of the parsed arguments returning the exit status); a new group
(investigate, postmortem, mcp) is a module here named in `GROUPS`. Bad usage anywhere is
`usage.usage_error`: one line on stderr, exit status 2. The command sits above every layer:
nothing else in probebook imports it.

>>> main(["audit", "verify", "/no/such/audit.log"])   # doctest: +SKIP
probebook audit verify: error: /no/such/audit.log: no such file
2
"""

from __future__ import annotations

import argparse
import importlib
from typing import Optional, Sequence, Tuple

from .usage import Parser, UsageExit, add_group, usage_error

__all__ = ["main", "build_parser", "GROUPS", "Parser", "UsageExit", "add_group", "usage_error"]

# the modules of this package that register a subcommand group, in the order `--help` lists them
GROUPS: Tuple[str, ...] = ("agent", "audit", "lab", "alerts", "investigate", "contain", "postmortem", "mcp")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="probebook", description="probebook: live, read-only probes in running Python services")
    parser.add_argument("--version", action="version", version=f"probebook {_version()}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in GROUPS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("probebook")
    except Exception:  # noqa: BLE001 - a source tree that was never installed
        from probebook import __version__

        return str(__version__)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; return its exit status (also the console script's)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except UsageExit as exc:
        return int(exc.code or 2)
    except KeyboardInterrupt:
        return 130
