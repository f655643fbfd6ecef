"""WATCH / UNWATCH with MULTI / EXEC through the dispatcher: EXEC answers a null array when a
watched key was written, deleted, given a TTL, expired, evicted or flushed since WATCH, and
runs the queue otherwise. Replies checked against redis-server 7.0."""

from __future__ import annotations

import pytest

from tests.unit.test_commands import Harness, err

NULL_ARRAY = b"*-1\r\n"


@pytest.fixture
def r() -> Harness:
    return Harness()


def transaction(r: Harness, *commands: tuple[str, ...]) -> bytes:
    assert r("MULTI") == b"+OK\r\n"
    for command in commands:
        assert r(*command) == b"+QUEUED\r\n"
    return r("EXEC")


def test_exec_runs_when_nothing_changed(r: Harness) -> None:
    r("SET", "k", "1")
    assert r("WATCH", "k", "other") == b"+OK\r\n"
    r("SET", "unwatched", "x")
    assert transaction(r, ("INCR", "k")) == b"*1\r\n:2\r\n"
    # EXEC forgot the watches: a change now does not fail the next transaction.
    r("SET", "k", "5")
    assert transaction(r, ("GET", "k")) == b"*1\r\n$1\r\n5\r\n"
    assert r.engine.watched == {} and r.d.watchers == {}


@pytest.mark.parametrize(
    "change",
    [
        ("SET", "k", "same"),
        ("DEL", "k"),
        ("EXPIRE", "k", "100"),
        ("PERSIST", "k"),
        ("INCR", "n"),
        ("FLUSHALL",),
        ("EVAL", "return redis.call('set', 'k', 'x')", "0"),
    ],
)
def test_a_change_by_another_client_fails_exec(r: Harness, change: tuple[str, ...]) -> None:
    if change[0] == "EVAL":
        pytest.importorskip("lupa")
    r("SET", "k", "same", "PX", "100000")
    r("SET", "n", "1")
    assert r("WATCH", "k", "n") == b"+OK\r\n"
    other = r.d.new_client()
    r(*change, client=other)
    assert transaction(r, ("SET", "k", "mine")) == NULL_ARRAY
    assert r("GET", "k") != b"$4\r\nmine\r\n"


def test_the_connection_own_change_fails_exec_too(r: Harness) -> None:
    assert r("WATCH", "k") == b"+OK\r\n"
    r("SET", "k", "1")
    assert transaction(r, ("GET", "k")) == NULL_ARRAY


def test_expiry_after_watch_fails_exec(r: Harness) -> None:
    r("SET", "k", "v", "PX", "1000")
    assert r("WATCH", "k") == b"+OK\r\n"
    r.clock.now += 2000
    assert transaction(r, ("GET", "k")) == NULL_ARRAY
    # A key that had expired before WATCH is simply absent.
    r("SET", "gone", "v", "PX", "1000")
    r.clock.now += 2000
    assert r("WATCH", "gone") == b"+OK\r\n"
    assert transaction(r, ("GET", "gone")) == b"*1\r\n$-1\r\n"


def test_eviction_fails_exec() -> None:
    r = Harness(memory_limit=2000)
    r("SET", "k", "v")
    assert r("WATCH", "k") == b"+OK\r\n"
    for index in range(40):
        r("SET", f"filler{index}", "x" * 100)
    assert r("EXISTS", "k") == b":0\r\n"
    assert transaction(r, ("GET", "k")) == NULL_ARRAY


def test_unwatch_discard_and_errors(r: Harness) -> None:
    assert r("WATCH", "k") == b"+OK\r\n"
    assert r("UNWATCH") == b"+OK\r\n"
    r("SET", "k", "1")
    assert transaction(r, ("GET", "k")) == b"*1\r\n$1\r\n1\r\n"

    assert r("WATCH", "k") == b"+OK\r\n"
    assert r("MULTI") == b"+OK\r\n"
    assert r("WATCH", "k") == err("ERR WATCH inside MULTI is not allowed")
    assert r("DISCARD") == b"+OK\r\n"
    r("SET", "k", "2")
    assert transaction(r, ("GET", "k")) == b"*1\r\n$1\r\n2\r\n"
    assert r("WATCH") == err("ERR wrong number of arguments for 'watch' command")


def test_watches_of_several_clients_and_a_closed_connection(r: Harness) -> None:
    other = r.d.new_client()
    assert r("WATCH", "k") == b"+OK\r\n"
    assert r("WATCH", "k", client=other) == b"+OK\r\n"
    assert r.d.watchers == {b"k": 2}
    for callback in other.on_close:
        callback()
    assert r.d.watchers == {b"k": 1}
    r("SET", "k", "1", client=other)
    assert transaction(r, ("GET", "k")) == NULL_ARRAY
    assert r.engine.watched == {}


def test_resp3_null(r: Harness) -> None:
    r("HELLO", "3")
    assert r("WATCH", "k") == b"+OK\r\n"
    r("SET", "k", "1")
    assert transaction(r, ("GET", "k")) == b"_\r\n"


@pytest.mark.parametrize(
    "change",
    [
        ("HSET", "h", "f", "new"),
        ("HDEL", "h", "f"),
        ("SADD", "s", "m"),
        ("SPOP", "s"),
        ("RPUSH", "l", "x"),
        ("LPOP", "l"),
        ("ZADD", "z", "2", "m"),
        ("ZPOPMIN", "z"),
        ("RENAME", "h", "h2"),
        ("COPY", "s", "h", "REPLACE"),
        ("SUNIONSTORE", "l", "s"),
    ],
)
def test_a_change_to_any_type_fails_exec(r: Harness, change: tuple[str, ...]) -> None:
    r("HSET", "h", "f", "v")
    r("SADD", "s", "a")
    r("RPUSH", "l", "a")
    r("ZADD", "z", "1", "a")
    assert r("WATCH", "h", "s", "l", "z") == b"+OK\r\n"
    r(*change, client=r.d.new_client())
    assert transaction(r, ("HSET", "h", "f", "mine")) == NULL_ARRAY
    assert r("HGET", "h", "f") != b"$4\r\nmine\r\n"
