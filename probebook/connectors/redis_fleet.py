"""A service's fleet of agents, addressed through Redis (docs/protocol.md, "Fleets through Redis").

>>> fleet = RedisFleet("redis://127.0.0.1:6379", "shop", "ops", "s3cret-token")            # doctest: +SKIP
>>> [i.instance_id for i in fleet.instances() if not i.stale]                            # doctest: +SKIP
['shop-4121-1f2e', 'shop-4122-9a0b']
>>> fleet.add_probe({"kind": "log", "where": "shop/cart.py:42", "template": "hit"}).summary()  # doctest: +SKIP
'probe f-77c1d2e3: installed on 2 of 2 instances'
>>> fleet.events(timeout=5)                                                                # doctest: +SKIP
[AgentEvent(instance_id='shop-4121-1f2e', seq=2, kind='log', ...), ...]

Commands are signed with the token's secret and sent to every live instance at once; each
answers on the replies stream, signed with the same token's secret, and the result says, per
instance, what happened (or that it did not answer in time). A reply in an instance's name that is
not signed so (anyone who can write to Redis could write one) is ignored and counted in that
instance's "did not answer"; only a refusal of a command's own signature (401) comes unsigned.
Until every expected instance has answered the same signed command is published again, so an
instance that was reconnecting still gets it; agents run a command id once. Events come from one
stream with a cursor; a repeat of an event (an agent re-sending after a lost connection) is dropped
by its (instance, sequence number).
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Set, Tuple, TypeVar, Union

from probebook.errors import (AgentRequestError, AgentUnreachable, ConnectorError, FleetEmpty, RedisConnectionError,
                              RedisReplyError)
from probebook.protocol.fleet import STALE_AFTER_S, FleetKeys, new_command_id, sign_command, sign_reply
from probebook.protocol.kinds import ENDED
from probebook.protocol.records import AgentHealth, ProbeInfo, from_mapping
from probebook.protocol.resp import Backoff, RedisClient
from probebook.protocol.spec import ProbeSpec, parse_where

from .agent_records import AgentEvent, FleetInstance, FleetProbe, InstanceResult
from .following import LiveProbes, supervisors

__all__ = ["RedisFleet", "fleet_probe_spec"]

T = TypeVar("T")


def fleet_probe_spec(spec: Union[ProbeSpec, Mapping[str, Any]]) -> Dict[str, Any]:
    """The spec to send to every instance: checked here once (one clear error instead of N), and
    given a fleet id when it has none, so the probe has the same id on each instance."""
    checked = ProbeSpec.from_dict(spec)
    parse_where(checked.where)
    body = checked.to_dict()
    if not body.get("id"):
        body["id"] = f"f-{os.urandom(4).hex()}"
    return body


def _pairs(flat: List[Any]) -> Dict[str, Any]:
    return dict(zip(flat[0::2], flat[1::2]))


class RedisFleet:
    """Every instance of `service` that registered in Redis with ``--broker``.

    `since` is where reading events starts: ``"0-0"`` (default) everything the stream still holds,
    ``"now"`` only what comes after this client was made, or a stream id kept from an earlier
    client (`cursor`).
    """

    def __init__(self, redis_url: str, service: str, token_name: str, token_secret: str, timeout: float = 5.0,
                 since: str = "0-0", resend_every: float = 1.0, follow_every: float = 1.0) -> None:
        self.url, self.service, self.timeout, self.resend_every = redis_url, service, timeout, resend_every
        self.follow_every = follow_every  # `events` looks at the registry this often (see `follow`)
        self.changes: Deque[str] = deque(maxlen=200)  # instances that registered or went stale, for a timeline
        self._live = LiveProbes()
        self._known: Optional[Set[str]] = None  # the live instances at the last look
        self._bosses: Set[str] = set()
        self._followed = time.monotonic()
        self._follow_lock = threading.Lock()
        self.keys = FleetKeys.for_service(service)
        self._who, self._secret = token_name, token_secret
        try:
            self._commands = RedisClient(redis_url, timeout=timeout, attempts=4)
            self._events = RedisClient(redis_url, timeout=timeout, attempts=4)  # blocking reads wait here
        except ValueError as exc:
            raise ConnectorError(str(exc)) from None
        self.cursor = self._last_id(self.keys.events) if since in ("$", "now") else since  # last entry read
        self.last_seq: Dict[str, int] = {}  # instance -> seq of the last event delivered
        self.missed: Dict[str, int] = {}  # instance -> events its agent evicted before forwarding
        self.duplicates = 0  # repeated events dropped
        self.probe_ids: Dict[str, Dict[str, str]] = {}
        try:  # who is there now: an instance that registers after this joins (`follow`)
            self._known = {i.instance_id for i in self.instances() if not i.stale}
        except ConnectorError:
            self._known = None

    def _redis(self, client: RedisClient, *args: Any, timeout: Optional[float] = None) -> Any:
        try:
            return client.execute(*args, timeout=timeout)
        except RedisConnectionError as exc:
            raise AgentUnreachable(f"fleet {self.service}: {exc}") from None
        except RedisReplyError as exc:
            raise ConnectorError(f"fleet {self.service}: redis refused {args[0]}: {exc}") from None

    def _last_id(self, stream: str) -> str:
        last = self._redis(self._commands, "XREVRANGE", stream, "+", "-", "COUNT", 1)
        return str(last[0][0]) if last else "0-0"

    # ------------------------------------------------------------------ registry
    def instances(self) -> List[FleetInstance]:
        """Registered instances, stale ones (no heartbeat for 10 s) marked, sorted by id."""
        now = time.time()
        out = []
        for iid, raw in _pairs(self._redis(self._commands, "HGETALL", self.keys.instances) or []).items():
            try:
                health = json.loads(raw)
                seen = float(health.get("seen", 0))
            except (ValueError, AttributeError, TypeError):
                continue  # not an entry an agent wrote
            out.append(FleetInstance(iid, from_mapping(AgentHealth, health), seen, round(now - seen, 3),
                                     now - seen > STALE_AFTER_S))
        return sorted(out, key=lambda i: i.instance_id)

    # ------------------------------------------------------------------ commands
    def command(self, op: str, args: Optional[Mapping[str, Any]] = None, instance: Optional[str] = None,
                timeout: Optional[float] = None) -> Dict[str, InstanceResult]:
        """Run `op` on one instance or every live one; instance id -> its answer (status 0: none)."""
        args = dict(args or {})
        timeout = self.timeout if timeout is None else timeout
        expected = {instance} if instance else {i.instance_id for i in self.instances() if not i.stale}
        if not expected:
            raise FleetEmpty(f"fleet {self.service}: no live instance registered in {self.keys.instances}; "
                             f"start agents with --broker {self.url}")
        cmd_id = new_command_id()
        message = json.dumps({"id": cmd_id, "op": op, "args": args, "who": self._who, "instance": instance,
                              "sig": sign_command(self._secret, cmd_id, op, args)})
        cursor = self._last_id(self.keys.replies)
        results: Dict[str, InstanceResult] = {}
        forged: Dict[str, int] = {}  # replies in an instance's name not signed by it, ignored
        deadline = time.monotonic() + timeout
        sent_at, backoff = 0.0, Backoff(maximum=0.5)
        while not expected <= set(results) and time.monotonic() < deadline:
            try:
                if time.monotonic() - sent_at >= self.resend_every:  # again for whoever was reconnecting
                    self._redis(self._commands, "PUBLISH", self.keys.commands, message)
                    sent_at = time.monotonic()
                wait = max(0.001, min(deadline - time.monotonic(), sent_at + self.resend_every - time.monotonic()))
                cursor = self._collect(cmd_id, cursor, wait, results, forged)
            except AgentUnreachable:
                time.sleep(min(backoff.next(), max(0.0, deadline - time.monotonic())))
        for iid in expected - set(results):
            n = forged.get(iid, 0)
            results[iid] = InstanceResult(iid, 0, {}, f"instance {iid} did not answer {op} within {timeout:g}s "
                                                       f"(stopped, or not connected to the broker)" + (
                f"; {n} repl{'y' if n == 1 else 'ies'} in its name not signed with token "
                f"{self._who!r}'s secret ignored" if n else ""))
        return dict(sorted(results.items()))

    def _signed(self, cmd_id: str, iid: str, fields: Mapping[str, Any]) -> bool:
        """A reply the instance made: signed with this token's secret (`sign_reply`), or an unsigned
        refusal of the command's signature (401: the instance could not sign with a secret it did not
        know; a forged one could only say no). Anything else in Redis is someone else's writing."""
        sig = str(fields.get("sig") or "")
        if not sig:
            return str(fields.get("status")) == "401"
        try:
            want = sign_reply(self._secret, cmd_id, iid, int(fields.get("status", 0)), str(fields.get("body") or ""))
        except ValueError:
            return False
        return hmac.compare_digest(want, sig)

    def _collect(self, cmd_id: str, cursor: str, wait: float, results: Dict[str, InstanceResult],
                 forged: Dict[str, int]) -> str:
        reply = self._redis(self._commands, "XREAD", "COUNT", 1000, "BLOCK", max(1, int(wait * 1000)),
                            "STREAMS", self.keys.replies, cursor, timeout=wait + self.timeout)
        for _stream, entries in reply or []:
            for entry_id, flat in entries:
                cursor = entry_id
                fields = _pairs(flat)
                if fields.get("id") != cmd_id:
                    continue
                iid = str(fields.get("instance_id", ""))
                if not self._signed(cmd_id, iid, fields):
                    forged[iid] = forged.get(iid, 0) + 1
                    continue
                try:
                    body = json.loads(fields.get("body") or "{}")
                    results[iid] = InstanceResult(iid, int(fields.get("status", 0)), body if isinstance(body, dict)
                                                  else {"value": body})
                except ValueError:
                    results[iid] = InstanceResult(iid, 0, {}, f"instance {iid} sent an unreadable reply")
        return cursor

    def add_probe(self, spec: Union[ProbeSpec, Mapping[str, Any]], timeout: Optional[float] = None) -> FleetProbe:
        """Place the probe on every live instance (and on those that register later, until it ends or
        is removed); `FleetProbe.summary()` says where it is."""
        body = fleet_probe_spec(spec)
        with self._follow_lock:  # an instance registering meanwhile gets it once
            results = self.command("add_probe", body, timeout=timeout)
            probe = FleetProbe(body["id"], results, tuple(sorted(self._bosses & set(results))))
            self.probe_ids[probe.id] = probe.probe_ids
            self._live.placed(probe, body)
        return probe

    def remove_probe(self, fleet_id: str, timeout: Optional[float] = None) -> Dict[str, InstanceResult]:
        self._live.drop(fleet_id)
        return self.command("remove_probe", {"id": fleet_id}, timeout=timeout)

    def remove_all(self, timeout: Optional[float] = None) -> Dict[str, InstanceResult]:
        self._live.drop()
        return self.command("remove_all", {}, timeout=timeout)

    # ------------------------------------------------------------------ following the registry
    def follow(self) -> List[str]:
        """An instance that registered since the last look gets the live probes it does not hold; one
        whose heartbeat stopped leaves. What changed, in words (also kept in `changes`)."""
        with self._follow_lock:
            self._followed = time.monotonic()
            try:
                live = {i.instance_id: i for i in self.instances() if not i.stale}
            except ConnectorError:
                return []
            self._bosses = supervisors([{"id": iid, "pid": i.health.pid, "ppid": i.health.ppid}
                                        for iid, i in live.items()], key="id")
            if self._known is None:
                self._known = set(live)
                return []
            said = [f"instance {iid} left (no heartbeat for {STALE_AFTER_S:g} s)"
                    for iid in sorted(self._known - set(live))]
            said += [self._join(iid) for iid in sorted(set(live) - self._known)]
            self._known = set(live)
            self.changes.extend(said)
            return said

    def _join(self, iid: str) -> str:
        listed = self.command("list_probes", {}, instance=iid)[iid]
        if not listed.ok:
            return f"instance {iid} joined but did not list its probes: {listed.message}"
        held = {str(p.get("id")) for p in listed.body.get("probes", []) if p.get("status") not in ENDED}
        for fid in held & self._live.ids():
            self.probe_ids.setdefault(fid, {})[iid] = fid

        def place(body: Dict[str, Any]) -> None:
            answer = self.command("add_probe", body, instance=iid)[iid]
            if not answer.ok:
                raise ConnectorError(answer.message)
            self.probe_ids.setdefault(body["id"], {})[iid] = body["id"]

        return self._live.join(iid, held, place)

    def is_supervisor(self, instance_id: str) -> bool:
        """Whether `instance_id` is the parent of another live instance (as of the last look)."""
        return instance_id in self._bosses

    def set_redaction(self, **changes: Any) -> Dict[str, InstanceResult]:
        return self.command("set_redaction", changes)

    def set_limits(self, **changes: Any) -> Dict[str, InstanceResult]:
        return self.command("set_limits", changes)

    def probes(self, timeout: Optional[float] = None) -> Dict[str, Union[List[ProbeInfo], ConnectorError]]:
        return _typed(self.command("list_probes", {}, timeout=timeout),
                      lambda body: [from_mapping(ProbeInfo, p) for p in body.get("probes", [])])

    def health(self, timeout: Optional[float] = None) -> Dict[str, Union[AgentHealth, ConnectorError]]:
        return _typed(self.command("health", {}, timeout=timeout), lambda body: from_mapping(AgentHealth, body))

    # ------------------------------------------------------------------ events
    def events(self, timeout: float = 0.0, limit: int = 1000) -> List[AgentEvent]:
        """Events after the cursor, in the order the instances sent them, each once; waits up to
        `timeout` s when there are none yet. At most `limit` stream entries a read. The registry is
        followed first (`follow`), at most every `follow_every` seconds."""
        if time.monotonic() - self._followed >= self.follow_every:
            self.follow()
        args: Tuple[Any, ...] = ("XREAD", "COUNT", limit)
        if timeout > 0:
            args += ("BLOCK", max(1, int(timeout * 1000)))
        reply = self._redis(self._events, *args, "STREAMS", self.keys.events, self.cursor,
                            timeout=timeout + self.timeout)
        out: List[AgentEvent] = []
        for _stream, entries in reply or []:
            for entry_id, flat in entries:
                self.cursor = entry_id
                event = self._event(_pairs(flat))
                if event is not None:
                    out.append(event)
        return out

    def _event(self, fields: Dict[str, Any]) -> Optional[AgentEvent]:
        iid = str(fields.get("instance_id", ""))
        try:
            data = json.loads(fields.get("event") or "")
            seq = int(data["seq"])
        except (ValueError, TypeError, KeyError):
            return None
        if seq <= self.last_seq.get(iid, 0):
            self.duplicates += 1
            return None
        self.last_seq[iid] = seq
        if str(fields.get("missed", "0")).isdigit() and int(fields.get("missed", 0)):
            self.missed[iid] = self.missed.get(iid, 0) + int(fields["missed"])
        return AgentEvent.from_dict(data, iid, self.service)

    def close(self) -> None:
        self._commands.close()
        self._events.close()


def _typed(results: Dict[str, InstanceResult], convert: Callable[[Dict[str, Any]], T]
           ) -> Dict[str, Union[T, ConnectorError]]:
    out: Dict[str, Union[T, ConnectorError]] = {}
    for iid, r in results.items():
        if r.ok:
            out[iid] = convert(r.body)
        elif r.status:
            out[iid] = AgentRequestError(f"instance {iid}: {r.status} {r.message}", r.status,
                                         str(r.body.get("field", "")))
        else:
            out[iid] = AgentUnreachable(r.message)
    return out
