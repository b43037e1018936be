"""The agent's Redis client against a real redis-server on a free loopback port."""

import socket
import threading
import time

import pytest

from probebook.protocol.resp import (
    RedisClient,
    RedisConnectionError,
    RedisReplyError,
    RespConnection,
    Subscriber,
    _Incomplete,
    _parse,
    parse_redis_url,
)
from probebook.lab.procs import free_port


def test_commands_pipelines_and_error_replies(redis):
    r = RedisClient(redis.url)
    assert r.execute("PING") == "PONG"
    assert r.execute("SET", "k", "välue") == "OK"
    assert r.execute("GET", "k") == "välue"
    assert r.execute("GET", "missing") is None
    replies = r.pipeline([("INCR", "n"), ("LPUSH", "k", "x"), ("INCR", "n")])
    assert replies[0] == 1 and replies[2] == 2
    assert isinstance(replies[1], RedisReplyError) and "WRONGTYPE" in str(replies[1])
    with pytest.raises(RedisReplyError, match="unknown command"):
        r.execute("NOSUCHCOMMAND")
    assert r.execute("PING") == "PONG"  # the connection is still in step after errors


def test_streams_and_hashes(redis):
    r = RedisClient(redis.url)
    for i in range(300):
        r.execute("XADD", "s", "MAXLEN", "~", 10, "*", "i", i)
    assert r.execute("XLEN", "s") < 300  # capped, approximately (whole nodes of 100)
    entries = r.execute("XRANGE", "s", "-", "+")
    assert entries[-1][1] == ["i", "299"]
    r.execute("HSET", "h", "a", "1")
    assert r.execute("EXPIRE", "h", 60) == 1
    assert r.execute("HGETALL", "h") == ["a", "1"]


def test_unreachable_server_is_a_one_line_error_and_try_execute_never_raises():
    r = RedisClient(f"redis://127.0.0.1:{free_port()}", attempts=2, connect_timeout=0.2)
    with pytest.raises(RedisConnectionError, match="unreachable") as info:
        r.execute("PING")
    assert "\n" not in str(info.value) and isinstance(info.value, ConnectionError)
    ok, why = r.try_execute("PING")
    assert not ok and "unreachable" in why


def test_a_read_that_times_out_leaves_the_connection_usable(redis):
    conn = RespConnection(parse_redis_url(redis.url))
    conn.connect()
    conn.send(("BLPOP", "never", 0.3))
    with pytest.raises(socket.timeout):
        conn.read_reply(timeout=0.05)
    assert conn.read_reply(timeout=2) is None  # BLPOP's own timeout answer, read after ours expired
    assert conn.execute("PING") == "PONG"


def test_partial_replies_are_kept_until_complete():
    whole = b"*2\r\n$5\r\nhello\r\n:42\r\n"
    for cut in range(1, len(whole)):
        with pytest.raises(_Incomplete):
            _parse(bytearray(whole[:cut]), 0)
    assert _parse(bytearray(whole), 0) == (["hello", 42], len(whole))


def test_client_reconnects_after_a_server_restart(redis):
    r = RedisClient(redis.url, attempts=5)
    assert r.execute("PING") == "PONG"
    redis.restart()
    assert r.execute("PING") == "PONG"


def test_subscriber_survives_a_server_restart(redis):
    got, lock = [], threading.Lock()

    def on_message(channel, data):
        with lock:
            got.append((channel, data))

    sub = Subscriber(redis.url, ["ch"], on_message).start()
    try:
        assert sub.subscribed.wait(5)
        r = RedisClient(redis.url, attempts=5)
        assert r.execute("PUBLISH", "ch", "one") == 1
        redis.restart()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and r.execute("PUBLISH", "ch", "two") == 0:
            time.sleep(0.05)  # nobody subscribed yet: the subscriber is reconnecting
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(got) < 2:
            time.sleep(0.02)
        assert got == [("ch", "one"), ("ch", "two")]
        assert sub.connects == 2
    finally:
        sub.stop()
    assert not sub.subscribed.is_set()


def test_bad_urls_say_what_to_write():
    with pytest.raises(ValueError, match="redis://127.0.0.1:6379/0"):
        parse_redis_url("http://localhost")
    with pytest.raises(ValueError, match="must be numbers"):
        parse_redis_url("redis://localhost:6379/zero")
    assert parse_redis_url("rediss://u:p%40ss@h").password == "p@ss"
