"""The agent's fleet link: registry, signed commands and event forwarding through Redis.

With ``--broker redis://HOST:PORT`` every agent of a service registers in a hash, listens on one
command channel, answers on a replies stream and copies its events to an events stream (key
names in `probebook.protocol.fleet.FleetKeys`). Redis is transport, not the trust boundary: a command
runs only when its ``sig`` is an HMAC made with the secret of the token it names
(`probebook.protocol.fleet.sign_command`), so anyone who can write to Redis still cannot place a probe.

Nothing here raises into the host: each thread catches, records `last_error`, backs off and
goes on.
"""

from __future__ import annotations

import hmac
import json
import queue
import threading
import time
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

from probebook.errors import RedisReplyError
from probebook.protocol.fleet import (BROKER_OPS, COMMAND_MAX_AGE_S, HEARTBEAT_S, STALE_AFTER_S, FleetKeys,
                                      sign_command, sign_reply)
from probebook.protocol.resp import Backoff, RedisClient, Subscriber

from ..limits import RateLimiter

__all__ = ["BrokerLink"]

_SEEN_IDS = 50_000
_EVENT_BATCH = 500


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BrokerLink:
    """Connects one agent instance to its service's fleet in Redis.

    >>> link = BrokerLink(control, "redis://127.0.0.1:6379", "shop", "shop-1", {"ops": "s3cret"})  # doctest: +SKIP
    >>> link.start()                                                                               # doctest: +SKIP

    `control` is the agent's `ControlAPI`: commands run through ``control.handle(op, args, who)``
    exactly as HTTP requests do, so the answers and audit entries are the same.
    """

    def __init__(self, control: Any, url: str, service: str, instance_id: str, tokens: Mapping[str, str],
                 heartbeat: float = HEARTBEAT_S, events_maxlen: int = 100_000, replies_maxlen: int = 10_000) -> None:
        self.control, self.url = control, url
        self.service, self.instance_id = service, instance_id
        self.keys = FleetKeys.for_service(service)
        self.heartbeat, self.events_maxlen, self.replies_maxlen = heartbeat, events_maxlen, replies_maxlen
        self._tokens = {str(k): str(v) for k, v in dict(tokens or {}).items()}
        self.last_error = ""
        self.forwarded = 0  # events written to the events stream
        self.missed = 0  # events the agent's ring evicted before they could be forwarded
        self.dropped_commands = 0
        self.after = 0  # seq of the last event forwarded
        self._seen: "OrderedDict[str, float]" = OrderedDict()
        self._refused: "OrderedDict[str, float]" = OrderedDict()
        self._audit_rate = RateLimiter(rate=10.0, burst=50)
        self.unaudited_refusals = 0
        self._commands: "queue.Queue[str]" = queue.Queue(maxsize=1000)
        self._stop = threading.Event()
        self._beat = threading.Event()
        self._threads: List[threading.Thread] = []
        self._redis: Optional[RedisClient] = None
        self._subscriber: Optional[Subscriber] = None
        self._started = time.monotonic()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "BrokerLink":
        """Start the daemon threads; a bad URL is recorded in `last_error`, not raised."""
        if self._threads:
            return self
        self._started = time.monotonic()
        add_check = getattr(self.control, "add_health_check", None)
        if add_check is not None:
            add_check("broker", self._health_check)
        try:
            self._redis = RedisClient(self.url)
            events = RedisClient(self.url)  # its own connection: a long pipeline must not delay replies
            self._subscriber = Subscriber(self.url, [self.keys.commands], self._on_message,
                                          on_subscribe=self._beat.set, name="probebook-broker-sub")
        except Exception as exc:
            self.last_error = str(exc)
            return self
        self._stop.clear()
        self._subscriber.start()
        for target, name, args in ((self._heartbeats, "beat", ()), (self._run_commands, "cmd", ()),
                                   (self._forward_events, "events", (events,))):
            t = threading.Thread(target=self._guard, args=(target, *args), name=f"probebook-broker-{name}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, wait: float = 2.0) -> None:
        """Leave the registry and stop every thread."""
        self._stop.set()
        self._beat.set()
        if self._subscriber is not None:
            self._subscriber.stop(wait)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(wait)
        self._threads = []
        if self._redis is not None:
            self._redis.try_execute("HDEL", self.keys.instances, self.instance_id)
            self._redis.close()

    @property
    def connected(self) -> bool:
        return self._subscriber is not None and self._subscriber.subscribed.is_set()

    def _health_check(self) -> Dict[str, Any]:
        """Unhealthy once the link has been down past the first few seconds of connecting."""
        ok = self.connected or time.monotonic() - self._started < STALE_AFTER_S / 2
        why = self._subscriber.last_error if self._subscriber is not None else self.last_error
        error = "" if ok else f"not subscribed to {self.keys.commands}: {why or 'connecting'}"
        return {"ok": ok, "error": error, **self.status()}

    def status(self) -> Dict[str, Any]:
        return {"connected": self.connected, "forwarded": self.forwarded, "missed": self.missed,
                "after": self.after, "dropped_commands": self.dropped_commands, "last_error": self.last_error}

    def _guard(self, target: Any, *args: Any) -> None:
        """Keep a loop alive whatever goes wrong in it."""
        backoff = Backoff(maximum=5.0)
        while not self._stop.is_set():
            try:
                target(*args)
                return
            except Exception as exc:
                self.last_error = f"broker: {type(exc).__name__}: {exc}"
                self._stop.wait(backoff.next())

    # ------------------------------------------------------------------ registry
    def _heartbeats(self) -> None:
        while not self._stop.is_set():
            self._beat.wait(self.heartbeat)
            self._beat.clear()
            if self._stop.is_set() or not self.connected:
                continue  # only a subscribed instance claims to be reachable
            status, health = self.control.handle("health", {}, "broker")
            entry = dict(health) if isinstance(health, dict) else {"status": "unhealthy"}
            entry.update(instance_id=self.instance_id, service=self.service, seen=time.time())
            redis = self._redis
            if redis is None:
                return
            ok, err = redis.try_execute("HSET", self.keys.instances, self.instance_id, json.dumps(entry, default=str))
            if ok:  # the whole registry goes once every instance has been gone a while
                redis.try_execute("EXPIRE", self.keys.instances, int(STALE_AFTER_S * 6))
            else:
                self.last_error = err

    # ------------------------------------------------------------------ commands
    def _on_message(self, channel: str, data: str) -> None:
        try:
            self._commands.put_nowait(data)
        except queue.Full:
            self.dropped_commands += 1

    def _run_commands(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._commands.get(timeout=0.5)
            except queue.Empty:
                continue
            self._execute(data)

    def _execute(self, data: str) -> None:
        msg = _parse_command(data)
        if msg is None:
            self._audit("unknown", "broker_command", "(unreadable message)", "400 refused: malformed command message")
            return
        target = msg.get("instance")
        if target is not None and target != self.instance_id:
            return
        if not self._first_time(msg):
            return  # the same message again (a client re-sending it): already answered
        cmd_id, op, who = msg["id"], msg["op"], msg["who"]
        try:
            self._verify(msg)
        except _Refused as refusal:
            self._remember(msg, verified=False)
            self._audit(who, op, f"broker command {cmd_id}", f"{refusal.status} refused: {refusal}")
            self._reply(cmd_id, refusal.status, {"error": str(refusal)})
            return
        self._remember(msg, verified=True)
        secret = self._tokens.get(who)  # a verified command's: its reply is signed with it
        if op not in BROKER_OPS:
            self._reply(cmd_id, 400, {"error": f"op: {op!r} is not available through the broker; "
                                               f"use one of {', '.join(BROKER_OPS)}", "field": "op"}, secret)
            return
        try:
            status, body = self.control.handle(op, msg["args"], who)
        except Exception as exc:  # control answers errors itself; this is the last line of defence
            status, body = 500, {"error": f"{op} failed: {type(exc).__name__}: {exc}"}
        self._reply(cmd_id, status, body, secret)

    def _first_time(self, msg: Dict[str, Any]) -> bool:
        """False for a message seen before (same id and signature): it runs, or is refused, once."""
        key = f"{msg['id']}/{msg.get('sig')}"
        return key not in self._seen and key not in self._refused

    def _remember(self, msg: Dict[str, Any], verified: bool) -> None:
        """Verified ids are kept while a replay of them could still pass the age check; refused ones
        in a small separate memory, so that a flood of forgeries cannot push verified ids out."""
        key, now = f"{msg['id']}/{msg.get('sig')}", time.time()
        seen, cap = (self._seen, _SEEN_IDS) if verified else (self._refused, 1000)
        seen[key] = now
        while seen and (len(seen) > cap or next(iter(seen.values())) < now - 2 * COMMAND_MAX_AGE_S):
            seen.popitem(last=False)

    def _verify(self, msg: Dict[str, Any]) -> None:
        """Raise `_Refused` unless the command is signed with a known token and recent.
        (Known limitation: an instance started after a command was sent would still run a replay
        of it within the age window.)"""
        cmd_id, op, who = msg["id"], msg["op"], msg["who"]
        secret = self._tokens.get(who)
        expected = sign_command(secret or "", cmd_id, op, msg["args"])
        if not hmac.compare_digest(expected, str(msg.get("sig") or "")) or secret is None:
            raise _Refused(401, f"command {op} refused: not signed with the secret of token {who!r} known to "
                                f"instance {self.instance_id}; check the token name and secret")
        stamp, _, rest = cmd_id.partition("-")
        if not stamp.isdigit() or not rest:
            raise _Refused(400, "id: expected '<unix ms>-<random>' so that replays can be refused")
        if abs(time.time() - int(stamp) / 1000.0) > COMMAND_MAX_AGE_S:
            raise _Refused(401, f"command {op} refused: its id is more than {COMMAND_MAX_AGE_S:g}s away from "
                                f"this instance's clock (a replay, or clocks out of sync)")

    def _reply(self, cmd_id: str, status: int, body: Any, secret: Optional[str] = None) -> None:
        """Answer on the replies stream, signed with the secret of the token that signed the command
        (`sign_reply`); a refusal of a command not signed right goes unsigned (the client's secret is
        not known here, or not the one it used)."""
        text = json.dumps(body, default=str)
        fields: Tuple[Any, ...] = ("id", cmd_id, "instance_id", self.instance_id, "status", status, "body", text)
        if secret is not None:
            fields += ("sig", sign_reply(secret, cmd_id, self.instance_id, status, text))
        backoff = Backoff()
        deadline = time.monotonic() + 10.0  # a reply later than this is of no use to anyone waiting
        redis = self._redis
        while redis is not None and not self._stop.is_set():
            ok, err = redis.try_execute("XADD", self.keys.replies, "MAXLEN", "~", self.replies_maxlen, "*", *fields)
            if ok or time.monotonic() > deadline:
                if not ok:
                    self.last_error = f"broker: reply to {cmd_id} lost: {err}"
                return
            self._stop.wait(backoff.next())

    def _audit(self, who: str, action: str, target: str, result: str) -> None:
        """Record a refusal; a flood of them is summarised instead of filling the audit log."""
        record = getattr(self.control, "audit_event", None)
        if record is None:
            return
        if not self._audit_rate.allow():
            self.unaudited_refusals += 1
            return
        if self.unaudited_refusals:
            result += f" (and {self.unaudited_refusals} more refusals before this one, not logged one by one)"
            self.unaudited_refusals = 0
        try:
            record(who, action, target, result)
        except Exception as exc:
            self.last_error = f"broker: audit failed: {exc}"

    # ------------------------------------------------------------------ events
    def _read_events(self, after: int) -> Tuple[List[Dict[str, Any]], int, int]:
        agent = getattr(self.control, "agent", None)
        if agent is not None and hasattr(agent, "read_events"):
            batch = agent.read_events(after, _EVENT_BATCH, 1.0)
            return [e.to_dict() for e in batch.events], batch.next_seq, batch.missed
        status, body = self.control.handle("read_events", {"after": after, "limit": _EVENT_BATCH, "timeout": 1.0},
                                           "broker")
        if status != 200:
            raise RuntimeError(f"read_events answered {status}: {body.get('error', '')}")
        return list(body["events"]), int(body["next"]), int(body.get("missed", 0))

    def _forward_events(self, redis: RedisClient) -> None:
        """At-least-once copy of the agent's events: `after` advances only once Redis has taken the
        batch, and a client drops any repeat by (instance_id, seq)."""
        backoff = Backoff()
        while not self._stop.is_set():
            events, nxt, missed = self._read_events(self.after)
            if not events:
                self.after = max(self.after, nxt)
                continue
            commands = []
            for i, event in enumerate(events):
                fields = ["instance_id", self.instance_id, "event", json.dumps(event, default=str)]
                if i == 0 and missed:
                    fields += ["missed", missed]
                commands.append(("XADD", self.keys.events, "MAXLEN", "~", self.events_maxlen, "*", *fields))
            while not self._stop.is_set():
                try:
                    replies = redis.pipeline(commands)
                    failed = next((r for r in replies if isinstance(r, RedisReplyError)), None)
                    if failed is not None:
                        raise failed
                except Exception as exc:
                    self.last_error = f"broker: forwarding events: {exc}"
                    self._stop.wait(backoff.next())
                    continue
                backoff.reset()
                self.after, self.forwarded, self.missed = nxt, self.forwarded + len(events), self.missed + missed
                break


def _parse_command(data: str) -> Optional[Dict[str, Any]]:
    try:
        msg = json.loads(data)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    if not all(isinstance(msg.get(k), str) for k in ("id", "op", "who")) or not isinstance(msg.get("args"), dict):
        return None
    if msg.get("instance") is not None and not isinstance(msg["instance"], str):
        return None
    return msg
