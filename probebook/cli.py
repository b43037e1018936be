"""The `probebook` command.

    probebook agent run [--name SERVICE] [--port 0] [--token-file F] [--port-file F] -- python app.py
    probebook audit verify FILE

Each command group registers itself in `COMMANDS` (a function that adds its subparser); a
group's handler receives the parsed arguments and returns the exit status. Bad usage is one
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, List, NoReturn, Optional, Sequence

__all__ = ["main", "COMMANDS", "UsageExit"]

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


class UsageExit(SystemExit):
    """Exit 2 after one line on stderr."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}; see {self.prog} --help", file=sys.stderr)
        raise UsageExit(2)


def _usage(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise UsageExit(2)


# ---------------------------------------------------------------- probebook agent
def _add_agent(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    agent = sub.add_parser("agent", help="run a Python program with the agent inside")
    agent_sub = agent.add_subparsers(dest="agent_command", metavar="{run}", parser_class=_Parser)
    agent_sub.required = True
    run = agent_sub.add_parser(
        "run", help="start COMMAND with the agent started at interpreter start",
        usage="%(prog)s [options] -- COMMAND [ARG ...]",
        description="Start any Python program (script, python -m, gunicorn, uvicorn) with the agent inside; "
                    "each process (each pre-fork worker too) serves the control API and records where in "
                    "--port-file.")
    run.add_argument("--name", help="service name (default: derived from COMMAND)")
    run.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="port (default 0: a free one, see --port-file)")
    run.add_argument("--token-file", help="file of name:secret lines (default: a fresh token, path on stderr)")
    run.add_argument("--broker", help="redis://HOST:PORT to register with and take commands from")
    run.add_argument("--port-file", help="where to record the URL; a directory gets one <pid>.json per process")
    run.add_argument("--audit", help="audit log file (default: in the temp directory)")
    run.add_argument("--tls-cert", help="PEM certificate: serve HTTPS (with --tls-key)")
    run.add_argument("--tls-key", help="PEM private key for --tls-cert")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the program to run, after --")
    run.set_defaults(handler=_agent_run)


def _agent_run(args: argparse.Namespace) -> int:
    prog = "probebook agent run"
    command: List[str] = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        _usage(prog, "no command given; put it after --, e.g. probebook agent run -- python app.py")
    if bool(args.tls_cert) != bool(args.tls_key):
        _usage(prog, "give --tls-cert and --tls-key together")
    if args.port is not None and not 0 <= args.port <= 65535:
        _usage(prog, f"--port must be from 0 to 65535, got {args.port}")
    for flag in ("token_file", "tls_cert", "tls_key"):
        path = getattr(args, flag)
        if path and not os.path.isfile(path):
            _usage(prog, f"--{flag.replace('_', '-')} {path}: no such file")

    from probebook.agent.control.auth import TokenFileError, Tokens, write_token_file

    env = dict(os.environ)
    token_file = args.token_file
    if token_file:
        try:
            Tokens.from_file(token_file)
        except TokenFileError as exc:
            _usage(prog, str(exc))
    elif not (env.get("PROBEBOOK_TOKEN") or env.get("PROBEBOOK_TOKEN_FILE")):
        token_file, _ = write_token_file()
        print(f"probebook: no --token-file; generated a token in {token_file}", file=sys.stderr)

    boot = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent", "_boot")
    env["PYTHONPATH"] = os.pathsep.join([boot] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    settings = {
        "PROBEBOOK_NAME": args.name or _service_name(command),
        "PROBEBOOK_HOST": args.host,
        "PROBEBOOK_PORT": None if args.port is None else str(args.port),
        "PROBEBOOK_TOKEN_FILE": _abs(token_file),
        "PROBEBOOK_BROKER": args.broker,
        "PROBEBOOK_PORT_FILE": _abs(args.port_file, keep_slash=True),
        "PROBEBOOK_AUDIT": _abs(args.audit),
        "PROBEBOOK_TLS_CERT": _abs(args.tls_cert),
        "PROBEBOOK_TLS_KEY": _abs(args.tls_key),
    }
    env.update({k: v for k, v in settings.items() if v is not None})
    if args.port_file and args.port_file.endswith(("/", os.sep)):
        os.makedirs(args.port_file, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"{prog}: error: cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process


def _abs(path: Optional[str], keep_slash: bool = False) -> Optional[str]:
    # the program may change directory (gunicorn --chdir): pass absolute paths
    if not path:
        return None
    slash = os.sep if keep_slash and path.endswith(("/", os.sep)) else ""
    return os.path.abspath(path) + slash


def _service_name(command: Sequence[str]) -> str:
    """``python app.py`` -> app, ``python -m shop.api`` -> shop, ``gunicorn app:wsgi`` -> gunicorn."""
    exe = os.path.basename(command[0])
    if exe.startswith("python"):
        rest = list(command[1:])
        for i, arg in enumerate(rest):
            if arg == "-m" and i + 1 < len(rest):
                return rest[i + 1].split(".")[0]
            if not arg.startswith("-"):
                return os.path.splitext(os.path.basename(arg))[0] or "python"
        return "python"
    return exe


# ---------------------------------------------------------------- probebook audit
def _add_audit(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    audit = sub.add_parser("audit", help="check an agent's audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="{verify}", parser_class=_Parser)
    audit_sub.required = True
    verify = audit_sub.add_parser("verify", help="check the hash chain; name the first edited, removed or "
                                                 "reordered entry")
    verify.add_argument("file")
    verify.set_defaults(handler=_audit_verify)


def _audit_verify(args: argparse.Namespace) -> int:
    from probebook.agent.control.audit import verify

    if not os.path.isfile(args.file):
        _usage("probebook audit verify", f"{args.file}: no such file")
    result = verify(args.file)
    if result.ok:
        print(f"ok: {args.file}: {result.reason}")
        return 0
    print(f"FAILED: {args.file}: first bad entry seq {result.first_bad_seq}: {result.reason}")
    return 1


# ---------------------------------------------------------------- the registry
from probebook.connectors.cli_alerts import register as _add_alerts  # noqa: E402
from probebook.lab.cli import register as _add_lab  # noqa: E402  (its heavy imports happen when it runs)

COMMANDS: List[Register] = [_add_agent, _add_audit, _add_lab, _add_alerts]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="probebook", description="probebook: live, read-only probes in running Python services")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; return its exit status (also used as the console script's)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except UsageExit as exc:
        return int(exc.code or 2)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
