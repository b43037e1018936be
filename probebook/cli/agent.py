"""`probebook agent run`: start any Python program with the agent inside.

    probebook agent run [--name SERVICE] [--port 0] [--token-file F] [--port-file F] [--broker URL] -- python app.py

The agent starts at interpreter start (a ``sitecustomize`` on ``PYTHONPATH``), in every process the
program runs, pre-fork workers too; the program is exec'd, so it keeps this process's id and signals.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

from .usage import Subparsers, add_group, usage_error

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    commands = add_group(sub, "agent", "run a Python program with the agent inside", "{run}")
    run = commands.add_parser(
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
    run.add_argument("--audit-key-file", help="a key (16 bytes or more) that makes the audit chain an HMAC: "
                                              "a log edited and hashed again without it fails `audit verify --key-file`")
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
        usage_error(prog, "no command given; put it after --, e.g. probebook agent run -- python app.py")
    if bool(args.tls_cert) != bool(args.tls_key):
        usage_error(prog, "give --tls-cert and --tls-key together")
    if args.port is not None and not 0 <= args.port <= 65535:
        usage_error(prog, f"--port must be from 0 to 65535, got {args.port}")
    for flag in ("token_file", "tls_cert", "tls_key", "audit_key_file"):
        path = getattr(args, flag)
        if path and not os.path.isfile(path):
            usage_error(prog, f"--{flag.replace('_', '-')} {path}: no such file")

    from probebook.errors import TokenFileError
    from probebook.protocol.tokens import Tokens, write_token_file

    env = dict(os.environ)
    token_file = args.token_file
    if token_file:
        try:
            Tokens.from_file(token_file)
        except TokenFileError as exc:
            usage_error(prog, str(exc))
    elif not (env.get("PROBEBOOK_TOKEN") or env.get("PROBEBOOK_TOKEN_FILE")):
        token_file, _ = write_token_file()
        print(f"probebook: no --token-file; generated a token in {token_file}", file=sys.stderr)

    boot = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "agent", "_boot")
    env["PYTHONPATH"] = os.pathsep.join([boot] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    settings = {
        "PROBEBOOK_NAME": args.name or _service_name(command),
        "PROBEBOOK_HOST": args.host,
        "PROBEBOOK_PORT": None if args.port is None else str(args.port),
        "PROBEBOOK_TOKEN_FILE": _abs(token_file),
        "PROBEBOOK_BROKER": args.broker,
        "PROBEBOOK_PORT_FILE": _abs(args.port_file, keep_slash=True),
        "PROBEBOOK_AUDIT": _abs(args.audit),
        "PROBEBOOK_AUDIT_KEY_FILE": _abs(args.audit_key_file),
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
