"""`probebook audit verify FILE [--head HASH] [--key-file F]`: check an agent's hash-chained audit log.

Exit status 0 when the chain holds, 1 with the first edited, removed or reordered entry named.
"""

from __future__ import annotations

import argparse
import os

from .usage import Subparsers, add_group, usage_error

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    commands = add_group(sub, "audit", "check an agent's audit log", "{verify}")
    verify = commands.add_parser("verify", help="check the hash chain; name the first edited, removed or "
                                                 "reordered entry")
    verify.add_argument("file", help="the audit log: an agent's --audit file (audit-SERVICE.jsonl in its "
                                     "private directory by default)")
    verify.add_argument("--head", help="the audit head an agent reported in health (HASH or SEQ:HASH): "
                                       "entries removed from the end are found too")
    verify.add_argument("--key-file", help="the key the agent wrote the log with (its PROBEBOOK_AUDIT_KEY_FILE): "
                                           "a log edited and hashed again without the key fails")
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from probebook.agent.control.audit import read_key, verify

    if not os.path.isfile(args.file):
        usage_error("probebook audit verify", f"{args.file}: no such file")
    key = None
    if args.key_file:
        try:
            key = read_key(args.key_file)
        except ValueError as exc:
            usage_error("probebook audit verify", str(exc))
    result = verify(args.file, head=args.head, key=key)
    if result.ok:
        print(f"ok: {args.file}: {result.reason}")
        return 0
    print(f"FAILED: {args.file}: first bad entry seq {result.first_bad_seq}: {result.reason}")
    return 1
