"""A small Redis client (RESP2 over a socket), the wire of a fleet: the agent's broker link and the
notebook's `RedisFleet` both speak through it; stdlib only.

Only what a fleet needs: commands and pipelines on a reconnecting `RedisClient`, and a
`Subscriber` thread that keeps a pub/sub subscription alive across server restarts.

>>> parse_redis_url("redis://:pw@10.0.0.5:6380/2")
RedisAddress(host='10.0.0.5', port=6380, username=None, password='pw', db=2, tls=False)
>>> encode_command("SET", "k", 1)
b'*3\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$1\\r\\n1\\r\\n'

Timeouts are safe: a reply that arrives in pieces is kept in the buffer until it is complete, so
a read that times out never leaves the connection out of step.
"""

from __future__ import annotations

import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union
from urllib.parse import unquote, urlsplit

from probebook.errors import RedisConnectionError, RedisReplyError

__all__ = [
    "Backoff",
    "RedisAddress",
    "RedisClient",
    "RespConnection",
    "Subscriber",
    "encode_command",
    "parse_redis_url",
]

Arg = Union[str, bytes, int, float]


class _Incomplete(Exception):
    """The buffer does not hold a whole reply yet."""


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int
    username: Optional[str]
    password: Optional[str]
    db: int
    tls: bool


def parse_redis_url(url: str) -> RedisAddress:
    """``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` for TLS."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"broker: expected a URL like redis://127.0.0.1:6379/0, got {url!r}")
    try:
        port = parts.port or 6379
        path = parts.path.strip("/")
        db = int(path) if path else 0
    except ValueError:
        raise ValueError(f"broker: port and database in {url!r} must be numbers, e.g. redis://host:6379/0") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return RedisAddress(parts.hostname, port, user, password, db, parts.scheme == "rediss")


class Backoff:
    """Exponential delays with jitter: 0.05 s doubling up to `maximum`; `reset` after a success.

    >>> b = Backoff(initial=0.1, maximum=0.4, jitter=0.0)
    >>> [b.next() for _ in range(4)]
    [0.1, 0.2, 0.4, 0.4]
    """

    def __init__(self, initial: float = 0.05, maximum: float = 2.0, jitter: float = 0.2) -> None:
        self.initial, self.maximum, self.jitter = initial, maximum, jitter
        self._delay = initial

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self.maximum, self._delay * 2)
        return delay * (1.0 + random.uniform(-self.jitter, self.jitter)) if self.jitter else delay

    def reset(self) -> None:
        self._delay = self.initial


def _bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode("utf-8")
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return repr(arg).encode("ascii")
    raise TypeError(f"redis arguments are str, bytes or numbers, got {type(arg).__name__}")


def encode_command(*args: Arg) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _bytes(arg)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _parse(buf: bytearray, pos: int) -> Tuple[Any, int]:
    """One reply from `buf` at `pos`: (value, position after it). Error replies come back as
    `RedisReplyError` values so that a pipeline keeps its other answers."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, after = buf[pos:pos + 1], bytes(buf[pos + 1:end]), end + 2
    if kind == b"+":
        return line.decode("utf-8", "replace"), after
    if kind == b"-":
        return RedisReplyError(line.decode("utf-8", "replace")), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, after
        if len(buf) < after + n + 2:
            raise _Incomplete
        return bytes(buf[after:after + n]).decode("utf-8", "replace"), after + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, after
        items = []
        for _ in range(n):
            item, after = _parse(buf, after)
            items.append(item)
        return items, after
    raise RedisConnectionError(f"redis: unexpected reply type {kind!r}; is this a Redis server?")


class _OneCommand:
    """`execute`: one command of a `pipeline`, its error reply raised."""

    def pipeline(self, commands: Sequence[Sequence[Arg]], timeout: Optional[float] = None) -> List[Any]:
        raise NotImplementedError

    def execute(self, *args: Arg, timeout: Optional[float] = None) -> Any:
        """Run one command; an error reply raises `RedisReplyError`."""
        value = self.pipeline([args], timeout)[0]
        if isinstance(value, RedisReplyError):
            raise value
        return value


class RespConnection(_OneCommand):
    """One connection. Every failure raises `RedisConnectionError` and leaves it closed."""

    def __init__(self, address: RedisAddress, timeout: float = 5.0, connect_timeout: float = 2.0) -> None:
        self.address, self.timeout, self.connect_timeout = address, timeout, connect_timeout
        self._sock: Optional[socket.socket] = None
        self._buf = bytearray()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        a = self.address
        try:
            sock = socket.create_connection((a.host, a.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if a.tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=a.host)
        except OSError as exc:
            raise RedisConnectionError(f"redis at {a.host}:{a.port} unreachable: {exc}") from None
        self._sock, self._buf = sock, bytearray()
        try:
            if a.password:
                self.execute(*(("AUTH", a.username, a.password) if a.username else ("AUTH", a.password)))
            if a.db:
                self.execute("SELECT", a.db)
        except RedisReplyError as exc:
            self.close()
            raise RedisConnectionError(f"redis at {a.host}:{a.port} refused the login or database: {exc}") from None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def send(self, *commands: Sequence[Arg]) -> None:
        if self._sock is None:
            self.connect()
        try:
            self._sock.sendall(b"".join(encode_command(*c) for c in commands))  # type: ignore[union-attr]
        except OSError as exc:
            self.close()
            raise RedisConnectionError(f"redis: sending failed: {exc}") from None

    def read_reply(self, timeout: Optional[float] = None) -> Any:
        """The next reply; `socket.timeout` (a `TimeoutError`) when none came within `timeout`,
        with the connection still usable."""
        while True:
            try:
                value, used = _parse(self._buf, 0)
                del self._buf[:used]
                return value
            except _Incomplete:
                pass
            except (ValueError, IndexError) as exc:
                self.close()
                raise RedisConnectionError(f"redis: malformed reply: {exc}") from None
            self._fill(self.timeout if timeout is None else timeout)

    def _fill(self, timeout: float) -> None:
        if self._sock is None:
            raise RedisConnectionError("redis: not connected")
        try:
            self._sock.settimeout(timeout)
            chunk = self._sock.recv(65536)
        except socket.timeout:
            raise
        except OSError as exc:
            self.close()
            raise RedisConnectionError(f"redis: connection lost: {exc}") from None
        if not chunk:
            self.close()
            raise RedisConnectionError("redis: the server closed the connection")
        self._buf += chunk

    def pipeline(self, commands: Sequence[Sequence[Arg]], timeout: Optional[float] = None) -> List[Any]:
        """Send all commands at once and read their replies in order (errors as values)."""
        self.send(*commands)
        try:
            return [self.read_reply(timeout) for _ in commands]
        except socket.timeout:
            self.close()  # replies still owed would be read by the next command
            raise RedisConnectionError(f"redis: no reply within {self.timeout if timeout is None else timeout:g}s")


class RedisClient(_OneCommand):
    """A thread-safe connection that reconnects: each call makes up to `attempts` tries, waiting
    with `Backoff` in between, and raises `RedisConnectionError` when all fail.

    >>> r = RedisClient("redis://127.0.0.1:1", attempts=1, connect_timeout=0.2)
    >>> r.try_execute("PING")
    (False, 'redis at 127.0.0.1:1 unreachable: [Errno 111] Connection refused')
    """

    def __init__(self, url: str, timeout: float = 5.0, connect_timeout: float = 2.0, attempts: int = 1) -> None:
        self.address = parse_redis_url(url)
        self.attempts = max(1, attempts)
        self.last_error = ""
        self._conn = RespConnection(self.address, timeout, connect_timeout)
        self._lock = threading.Lock()
        self._backoff = Backoff()

    @property
    def connected(self) -> bool:
        return self._conn.connected

    def pipeline(self, commands: Sequence[Sequence[Arg]], timeout: Optional[float] = None) -> List[Any]:
        for attempt in range(self.attempts):
            with self._lock:
                try:
                    replies = self._conn.pipeline(commands, timeout)
                    self._backoff.reset()
                    return replies
                except RedisConnectionError as exc:
                    self.last_error = str(exc)
                    if attempt + 1 >= self.attempts:
                        raise
                    delay = self._backoff.next()
            time.sleep(delay)
        raise AssertionError("unreachable")

    def try_execute(self, *args: Arg, timeout: Optional[float] = None) -> Tuple[bool, Any]:
        """(True, reply) or (False, one-line reason); never raises."""
        try:
            return True, self.execute(*args, timeout=timeout)
        except Exception as exc:  # the agent must not raise into its host
            self.last_error = str(exc)
            return False, str(exc)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class Subscriber:
    """Keeps a SUBSCRIBE alive in a daemon thread and calls ``on_message(channel, data)``.

    After a lost connection it reconnects with backoff and subscribes again; `subscribed` is set
    while the subscription is live and `on_subscribe()` runs after each (re)subscription.
    Exceptions from the callbacks are counted or retried, never propagated.
    """

    def __init__(self, url: str, channels: Sequence[str], on_message: Callable[[str, str], None],
                 on_subscribe: Optional[Callable[[], None]] = None, ping_every: float = 5.0,
                 timeout: float = 5.0, name: str = "probebook-subscriber") -> None:
        self.address = parse_redis_url(url)
        self.channels = list(channels)
        self.on_message, self.on_subscribe = on_message, on_subscribe
        self.ping_every, self.timeout, self.name = ping_every, timeout, name
        self.subscribed = threading.Event()
        self.last_error = ""
        self.callback_errors = 0
        self.connects = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._conn: Optional[RespConnection] = None

    def start(self) -> "Subscriber":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self, wait: float = 2.0) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            conn.close()  # wakes the reader
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait)

    def _run(self) -> None:
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                self._listen(backoff)
            except Exception as exc:  # lost connection, or anything else: try again later
                self.last_error = str(exc) or type(exc).__name__
            self.subscribed.clear()
            if self._conn is not None:
                self._conn.close()
            self._stop.wait(backoff.next())

    def _listen(self, backoff: Backoff) -> None:
        conn = self._conn = RespConnection(self.address, self.timeout)
        conn.connect()
        conn.send(("SUBSCRIBE", *self.channels))
        for _ in self.channels:
            reply = conn.read_reply()
            if isinstance(reply, RedisReplyError):
                raise reply
        self.connects += 1
        self.subscribed.set()
        backoff.reset()
        if self.on_subscribe is not None:
            self.on_subscribe()
        quiet_since, pinged = time.monotonic(), False
        while not self._stop.is_set():
            try:
                reply = conn.read_reply(timeout=min(1.0, self.ping_every))
            except socket.timeout:
                idle = time.monotonic() - quiet_since
                if pinged and idle > self.timeout:
                    raise RedisConnectionError("redis: subscription went silent (no answer to PING)") from None
                if not pinged and idle > self.ping_every:
                    conn.send(("PING",))  # finds a half-open connection that would otherwise block forever
                    pinged, quiet_since = True, time.monotonic()
                continue
            quiet_since, pinged = time.monotonic(), False
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == "message":
                try:
                    self.on_message(reply[1], reply[2])
                except Exception:
                    self.callback_errors += 1
