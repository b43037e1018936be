"""Bad usage of any `probebook` subcommand: one line on stderr, ``prog: error: ...``, exit status 2;
and `add_group`, how a module adds its group of subcommands with parsers that answer so.

>>> usage_error("probebook audit verify", "x.log: no such file")   # doctest: +SKIP
probebook audit verify: error: x.log: no such file
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["UsageExit", "Parser", "usage_error", "add_group"]

Subparsers = argparse._SubParsersAction  # what `register(sub)` of a group module receives


class UsageExit(SystemExit):
    """Exit status 2 after one line on stderr; `probebook.cli.main` returns its code."""


def usage_error(prog: str, message: str) -> NoReturn:
    """The one usage-error answer of every subcommand: ``prog: error: message``, then exit 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise UsageExit(2)


class Parser(argparse.ArgumentParser):
    """argparse whose mistakes are `usage_error`s (plain argparse prints its whole usage block)."""

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, f"{message}; see {self.prog} --help")


def add_group(sub: Subparsers, name: str, help: str, metavar: str) -> Subparsers:
    """``probebook NAME COMMAND ...``: a group whose COMMAND is required (``args.NAME_command``).

    `metavar` lists the commands, ``{up,down}``, for the one-line error when COMMAND is missing.
    """
    group = sub.add_parser(name, help=help)
    commands = group.add_subparsers(dest=f"{name}_command", metavar=metavar, parser_class=Parser)
    commands.required = True
    return commands
