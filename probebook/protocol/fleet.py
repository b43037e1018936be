"""The fleet's contract in Redis: key names, how a command is signed, and the timing both sides
keep (docs/protocol.md, "Fleets through Redis"). The agent's `BrokerLink` registers, listens and
answers by it; the notebook's `RedisFleet` sends commands by it.

Redis is transport, not the trust boundary: a command runs only when its ``sig`` is an HMAC made
with the secret of the token it names.

>>> args = {"where": "shop/cart.py:42", "kind": "log", "template": "hit"}
>>> sign_command("s3cret", "1700000000000-ab", "add_probe", args)[:16]
'e7f0e5e254e9294d'
>>> FleetKeys.for_service("shop").events
'probebook:shop:events'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = [
    "BROKER_OPS",
    "COMMAND_MAX_AGE_S",
    "FleetKeys",
    "HEARTBEAT_S",
    "STALE_AFTER_S",
    "canonical_json",
    "new_command_id",
    "sign_command",
    "sign_reply",
]

BROKER_OPS = ("add_probe", "remove_probe", "remove_all", "list_probes", "health", "set_redaction", "set_limits")
HEARTBEAT_S = 2.0  # an instance refreshes its registry entry this often
STALE_AFTER_S = 10.0  # an entry older than this is a dead (or partitioned) instance
COMMAND_MAX_AGE_S = 300.0  # a signed command older than this (or as far in the future) is a replay


@dataclass(frozen=True)
class FleetKeys:
    """The Redis keys of one service (docs/protocol.md, "Fleets through Redis")."""

    instances: str
    commands: str
    replies: str
    events: str

    @classmethod
    def for_service(cls, service: str) -> "FleetKeys":
        base = f"probebook:{service}"
        return cls(f"{base}:instances", f"{base}:commands", f"{base}:replies", f"{base}:events")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the bytes fleet commands sign and the audit chain hashes.

    >>> canonical_json({"b": 1, "a": "é"})
    '{"a":"é","b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sign_command(secret: str, command_id: str, op: str, args: Mapping[str, Any]) -> str:
    """hex(hmac_sha256(secret, id + "\\n" + op + "\\n" + canonical JSON of args))."""
    return _hmac(secret, f"{command_id}\n{op}\n{canonical_json(args)}")


def sign_reply(secret: str, command_id: str, instance_id: str, status: int, body: str) -> str:
    """hex(hmac_sha256(secret, "reply" + id + instance + status + body)), `body` the JSON text as sent: an
    instance answers a command with the secret of the token that signed it, so a reply written to Redis
    by anyone else (a forged "placed", a forged probe list) is told apart from the instance's own.

    >>> len(sign_reply("s3cret", "1-ab", "w-1", 201, "{}"))
    64
    """
    return _hmac(secret, f"reply\n{command_id}\n{instance_id}\n{int(status)}\n{body}")


def _hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def new_command_id() -> str:
    """``<unix ms>-<random hex>``: the time lets agents refuse old commands replayed later."""
    return f"{int(time.time() * 1000)}-{os.urandom(8).hex()}"
