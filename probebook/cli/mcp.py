"""`probebook mcp`: the assistant's tools for MCP clients (coding agents, chat clients).

    probebook mcp --stdio --lab
    probebook mcp --http 127.0.0.1:8765 --clients-file mcp-tokens.txt --connect orders=/run/orders/ \\
        --token-file agent-tokens.txt --prometheus http://127.0.0.1:9090 --out incident.duckdb

stdio serves the one client that started it; HTTP serves any client presenting one of the bearer tokens
in `--clients-file` (`name:secret` lines; the name is who the audit log records). Every call is one line
of the audit log (`--audit`, hash-chained: `probebook audit verify FILE`).
"""

from __future__ import annotations

import argparse
import sys

from probebook.errors import ProbebookError, one_line

from .investigate import add_sources, open_investigation
from .usage import Subparsers, usage_error

__all__ = ["register"]

PROG = "probebook mcp"


def register(sub: Subparsers) -> None:
    p = sub.add_parser("mcp", help="serve the assistant's tools to MCP clients (stdio or streamable HTTP)",
                       description="Serve live read-only probes and the assistant to MCP clients. Conclusions "
                                   "pass the proof gate; every call is audited with the client's identity.")
    p.set_defaults(handler=_run)
    how = p.add_mutually_exclusive_group()
    how.add_argument("--stdio", action="store_true", help="serve the client that started this process (default)")
    how.add_argument("--http", metavar="HOST:PORT", help="serve streamable HTTP at http://HOST:PORT/mcp")
    p.add_argument("--clients-file", default=None, metavar="FILE",
                   help="with --http: the clients' bearer tokens, name:secret lines (required)")
    add_sources(p)
    p.add_argument("--out", default=":memory:", metavar="FILE.duckdb", help="keep the evidence in this file")
    p.add_argument("--audit", default=None, metavar="FILE",
                   help="the audit log of MCP calls (default: mcp-audit.log beside --out, else in "
                        "~/.local/state/probebook/)")


def _run(args: argparse.Namespace) -> int:
    tokens = None
    host, port = "", 0
    if args.http:
        host, sep, raw_port = args.http.rpartition(":")
        if not sep or not host or not raw_port.isdigit() or int(raw_port) > 65535:
            usage_error(PROG, f"--http {args.http!r}: write HOST:PORT, e.g. 127.0.0.1:8765 (port 0: any free one)")
        port = int(raw_port)
        if not args.clients_file:
            usage_error(PROG, "--http needs --clients-file FILE with the clients' name:secret bearer tokens")
        from probebook.protocol.tokens import Tokens

        try:
            tokens = Tokens.from_file(args.clients_file)
        except ProbebookError as exc:
            print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
            return 1
    try:
        from probebook.mcp import Bridge, serve_http, serve_stdio
        from probebook.assistant.containment import default_audit_path
    except ImportError as exc:
        print(f"{PROG}: error: {one_line(exc)}; install the notebook side: pip install 'probebook[lab]'",
              file=sys.stderr)
        return 1
    inv = open_investigation(args, PROG)
    if inv is None:
        return 1
    audit = args.audit or default_audit_path(args.out, "mcp-audit.log")
    try:
        bridge = Bridge(inv, audit)
        if tokens is not None:
            def ready(bound: int) -> None:
                print(f"probebook mcp: serving http://{host}:{bound}/mcp (audit: {audit})", file=sys.stderr,
                      flush=True)
            serve_http(bridge, host, port, tokens, ready)
        else:
            import anyio

            print(f"probebook mcp: serving stdio (audit: {audit})", file=sys.stderr, flush=True)
            anyio.run(serve_stdio, bridge)
    except (ProbebookError, OSError) as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        inv.close()
    return 0
