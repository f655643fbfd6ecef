"""Hashes, sets and lists through redis-py: the same code against redis-server and
``blinkstore serve``, in RESP2 and RESP3; both servers must give the same answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess, resp_command
from tests.support.processes import resp_server_process


@pytest.fixture(scope="module", params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    with resp_server_process(request.param) as process:
        yield process


@pytest.fixture(params=[2, 3])
def client(
    server: StoreProcess | RedisProcess, request: pytest.FixtureRequest
) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(server.url, protocol=request.param, socket_timeout=10) as connection:
        connection.flushdb()
        yield connection


def test_hash_commands(client: redis.Redis) -> None:
    assert client.hset("h", mapping={"a": "1", "b": "2"}) == 2
    assert client.hset("h", "a", "3") == 0
    assert client.hget("h", "a") == b"3" and client.hget("h", "x") is None
    assert client.hmget("h", ["a", "x", "b"]) == [b"3", None, b"2"]
    assert client.hgetall("h") == {b"a": b"3", b"b": b"2"}
    assert client.hgetall("missing") == {}
    assert sorted(client.hkeys("h")) == [b"a", b"b"]
    assert sorted(client.hvals("h")) == [b"2", b"3"]
    assert client.hlen("h") == 2 and client.hexists("h", "a") and not client.hexists("h", "x")
    assert client.hsetnx("h", "a", "9") == 0 and client.hsetnx("h", "c", "9") == 1
    assert client.hstrlen("h", "c") == 1
    assert client.hincrby("h", "n", 5) == 5 and client.hincrby("h", "n", -2) == 3
    assert client.hincrbyfloat("h", "f", 1.5) == 1.5
    assert client.hincrbyfloat("h", "f", 2.25) == 3.75
    assert client.hdel("h", "a", "x") == 1
    assert client.hrandfield("h") in (b"b", b"c", b"n", b"f")
    several = client.hrandfield("h", 10)
    assert isinstance(several, list) and sorted(several) == [b"b", b"c", b"f", b"n"]
    repeated = client.hrandfield("h", -6)
    assert isinstance(repeated, list) and len(repeated) == 6
    cursor, found = client.hscan("h", 0, match="[bc]")
    assert cursor == 0 and found == {b"b": b"2", b"c": b"9"}
    assert dict(client.hscan_iter("h")) == client.hgetall("h")
    assert client.type("h") == b"hash"
    assert client.hdel("h", "b", "c", "n", "f") == 4
    assert client.exists("h") == 0


def test_hash_errors(client: redis.Redis) -> None:
    client.set("s", "v")
    client.hset("h", "f", "text")
    for call in (
        lambda: client.hset("s", "f", "v"),
        lambda: client.hget("s", "f"),
        lambda: client.get("h"),
        lambda: client.incr("h"),
    ):
        with pytest.raises(redis.ResponseError, match=r"^WRONGTYPE Operation against a key"):
            call()
    assert client.mget("s", "h") == [b"v", None]
    with pytest.raises(redis.ResponseError, match=r"^hash value is not an integer$"):
        client.hincrby("h", "f", 1)
    with pytest.raises(redis.ResponseError, match=r"^wrong number of arguments for 'hset'"):
        client.execute_command("HSET", "h", "f")  # type: ignore[no-untyped-call]
    # The connection stays usable after the errors.
    assert client.set("h", "now a string") and client.get("h") == b"now a string"


def test_every_type_expires_renames_and_scans(client: redis.Redis) -> None:
    client.hset("h", "f", "v")
    client.set("s", "v")
    assert client.pexpire("h", 60_000) and 0 < client.pttl("h") <= 60_000
    assert client.rename("h", "h2") and client.ttl("h2") > 0 and client.persist("h2")
    assert client.ttl("h2") == -1
    assert not client.renamenx("h2", "s")
    assert client.copy("h2", "h3") and client.hgetall("h3") == {b"f": b"v"}
    assert not client.copy("h2", "s") and client.copy("h2", "s", replace=True)
    assert client.type("s") == b"hash" and client.delete("h3", "s") == 2
    client.set("s", "v")
    assert list(client.scan_iter(_type="hash")) == [b"h2"]
    assert list(client.scan_iter(_type="string")) == [b"s"]
    assert client.dbsize() == 2 and client.delete("h2", "s") == 2
    client.hset("gone", "f", "v")
    assert client.pexpire("gone", 1)
    assert wait_until(lambda: client.exists("gone") == 0, timeout=10)


def test_set_commands(client: redis.Redis) -> None:
    assert client.sadd("s", "a", "b", "c") == 3 and client.sadd("s", "a") == 0
    assert client.sadd("t", "b", "c", "d") == 3
    assert client.smembers("s") == {b"a", b"b", b"c"}
    assert client.smembers("missing") == set()
    assert client.scard("s") == 3 and client.sismember("s", "a") and not client.sismember("s", "x")
    assert client.smismember("s", ["a", "x"]) == [1, 0]
    assert client.sinter(["s", "t"]) == {b"b", b"c"}
    assert client.sunion(["s", "t"]) == {b"a", b"b", b"c", b"d"}
    assert client.sdiff(["s", "t"]) == {b"a"}
    assert client.sintercard(2, ["s", "t"]) == 2 and client.sintercard(2, ["s", "t"], 1) == 1
    assert client.sinterstore("i", ["s", "t"]) == 2 and client.smembers("i") == {b"b", b"c"}
    assert client.sunionstore("u", ["s", "t"]) == 4
    assert client.sdiffstore("d", ["s", "t"]) == 1 and client.smembers("d") == {b"a"}
    assert client.smove("s", "d", "b") and client.smembers("d") == {b"a", b"b"}
    assert not client.smove("s", "d", "zz")
    assert client.srem("s", "a", "x") == 1
    assert client.srandmember("u") in {b"a", b"b", b"c", b"d"}
    several = client.srandmember("u", 10)
    assert isinstance(several, list) and sorted(several) == [b"a", b"b", b"c", b"d"]
    repeated = client.srandmember("u", -7)
    assert isinstance(repeated, list) and len(repeated) == 7
    popped = client.spop("u", 3)
    assert isinstance(popped, (list, set)) and len(popped) == 3 and client.scard("u") == 1
    assert client.spop("u") not in popped and client.exists("u") == 0
    assert client.spop("missing") is None
    cursor, found = client.sscan("t", 0, match="[bc]")
    assert cursor == 0 and sorted(found) == [b"b", b"c"]
    assert set(client.sscan_iter("t")) == {b"b", b"c", b"d"}
    assert client.type("t") == b"set"
    client.set("str", "v")
    with pytest.raises(redis.ResponseError, match=r"^WRONGTYPE Operation against a key"):
        client.sadd("str", "a")
    with pytest.raises(redis.ResponseError, match=r"^WRONGTYPE Operation against a key"):
        client.sinter(["t", "str"])
    assert client.srem("t", "b", "c", "d") == 3 and client.exists("t") == 0


def test_list_commands(client: redis.Redis) -> None:
    assert client.lpush("l", "a", "b") == 2 and client.rpush("l", "c", "d") == 4
    assert client.lpushx("missing", "a") == 0 and client.rpushx("l", "e") == 5
    assert client.lrange("l", 0, -1) == [b"b", b"a", b"c", b"d", b"e"]
    assert client.llen("l") == 5 and client.lindex("l", -1) == b"e"
    assert client.lset("l", 0, "B") and client.lindex("l", 0) == b"B"
    assert client.linsert("l", "BEFORE", "c", "X") == 6
    assert client.lpos("l", "X") == 2 and client.lpos("l", "zz") is None
    assert client.lrem("l", 0, "X") == 1
    assert client.ltrim("l", 1, -1) and client.lrange("l", 0, -1) == [b"a", b"c", b"d", b"e"]
    assert client.lpop("l") == b"a" and client.rpop("l") == b"e"
    assert client.lpop("l", 5) == [b"c", b"d"] and client.exists("l") == 0
    assert client.lpop("missing", 2) is None and client.rpop("missing") is None
    client.rpush("m", "a", "b", "c")
    assert client.lmove("m", "n", "LEFT", "RIGHT") == b"a"
    assert client.rpoplpush("m", "n") == b"c"
    assert client.lrange("n", 0, -1) == [b"c", b"a"]
    client.expire("m", 100)
    assert client.lmove("m", "m", "LEFT", "RIGHT") == b"b" and client.ttl("m") > 0
    assert client.type("n") == b"list"
    client.set("str", "v")
    with pytest.raises(redis.ResponseError, match=r"^WRONGTYPE Operation against a key"):
        client.lpush("str", "a")
    with pytest.raises(redis.ResponseError, match=r"^WRONGTYPE Operation against a key"):
        client.lmove("n", "str")
    assert client.lrange("n", 0, -1) == [b"c", b"a"]
    with pytest.raises(redis.ResponseError, match=r"^index out of range$"):
        client.lset("n", 9, "x")


def _blocked_clients(client: redis.Redis) -> int:
    info = client.info("clients")
    assert isinstance(info, dict)
    return int(info["blocked_clients"])


def _send(sock: socket.socket, *args: str) -> None:
    sock.sendall(resp_command(*args))


def _reply(sock: socket.socket) -> bytes:
    """One RESP2 reply of the shapes these commands answer (nil, bulk, flat array)."""
    data = b""
    while not _complete(data):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def _complete(data: bytes) -> bool:
    lines = data.split(b"\r\n")
    if len(lines) < 2:
        return False
    head = lines[0]
    if head[:1] == b"*" and int(head[1:]) > 0:
        return len(lines) >= 2 + 2 * int(head[1:])
    if head[:1] == b"$" and int(head[1:]) >= 0:
        return len(lines) >= 3
    return True


def test_blocking_pops_wait_in_order_for_a_push(
    server: StoreProcess | RedisProcess, client: redis.Redis
) -> None:
    with server.connect() as first, server.connect() as second, server.connect() as third:
        _send(first, "BLPOP", "queue", "other", "0")
        assert wait_until(lambda: _blocked_clients(client) == 1, timeout=10)
        _send(second, "BRPOP", "queue", "0")
        _send(third, "BLMOVE", "source", "dest", "LEFT", "RIGHT", "0")
        assert wait_until(lambda: _blocked_clients(client) == 3, timeout=10)
        assert client.rpush("queue", "a", "b", "c") == 3
        assert _reply(first) == b"*2\r\n$5\r\nqueue\r\n$1\r\na\r\n"
        assert _reply(second) == b"*2\r\n$5\r\nqueue\r\n$1\r\nc\r\n"
        assert client.lrange("queue", 0, -1) == [b"b"]
        assert client.lpush("source", "s") == 1
        assert _reply(third) == b"$1\r\ns\r\n"
        assert client.lrange("dest", 0, -1) == [b"s"] and client.exists("source") == 0
        assert _blocked_clients(client) == 0


def test_blocking_pop_times_out_and_a_closed_waiter_is_freed(
    server: StoreProcess | RedisProcess, client: redis.Redis
) -> None:
    assert client.blpop(["empty"], timeout=0.1) is None
    with server.connect() as waiter:
        _send(waiter, "BLPOP", "gone", "0")
        assert wait_until(lambda: _blocked_clients(client) == 1, timeout=10)
    assert wait_until(lambda: _blocked_clients(client) == 0, timeout=10)
    # The closed waiter took nothing: the element is there for the next caller.
    assert client.rpush("gone", "v") == 1
    assert client.blpop(["gone"], timeout=1) in ([b"gone", b"v"], (b"gone", b"v"))


def scored(reply: object) -> list[tuple[object, ...]]:
    """(member, score) pairs whatever the protocol: redis-py gives lists in RESP3, and
    ZPOPMIN without a count is one flat [member, score] there, as from redis-server."""
    assert isinstance(reply, list)
    if reply and not isinstance(reply[0], (list, tuple)):
        return [tuple(reply)]
    return [tuple(pair) for pair in reply]


def test_sorted_set_commands(client: redis.Redis) -> None:
    assert client.zadd("z", {"a": 1, "b": 2, "c": 3}) == 3
    assert client.zadd("z", {"a": 1.5, "d": 4}, ch=True) == 2
    assert client.zadd("z", {"a": 100}, nx=True) == 0
    assert client.zadd("z", {"e": 5}, xx=True) == 0
    assert client.zadd("z", {"a": 0.5}, gt=True) == 0 and client.zscore("z", "a") == 1.5
    assert client.zincrby("z", 2, "a") == 3.5
    assert client.zadd("z", {"b": 1}, incr=True) == 3.0
    assert client.zcard("z") == 4 and client.zscore("z", "nope") is None
    assert client.zmscore("z", ["a", "nope"]) == [3.5, None]
    assert client.zrank("z", "b") == 0 and client.zrevrank("z", "b") == 3
    assert client.zrange("z", 0, -1) == [b"b", b"c", b"a", b"d"]
    assert scored(client.zrange("z", 0, 1, withscores=True)) == [(b"b", 3.0), (b"c", 3.0)]
    assert client.zrange("z", 0, 0, desc=True) == [b"d"]
    assert client.zrange("z", "(3", "+inf", byscore=True) == [b"a", b"d"]
    assert client.zrange("z", "+inf", "-inf", byscore=True, desc=True, offset=1, num=2) == [
        b"a",
        b"c",
    ]
    assert scored(client.zrangebyscore("z", 3, 3.5, withscores=True)) == [
        (b"b", 3.0),
        (b"c", 3.0),
        (b"a", 3.5),
    ]
    assert client.zrevrangebyscore("z", "+inf", 3.5) == [b"d", b"a"]
    assert scored(client.zrevrange("z", 0, 0, withscores=True)) == [(b"d", 4.0)]
    assert client.zcount("z", "-inf", "(3.5") == 2
    assert scored(client.zpopmin("z")) == [(b"b", 3.0)]
    assert scored(client.zpopmax("z", 2)) == [(b"d", 4.0), (b"a", 3.5)]
    client.zadd("z", {"x": 10, "y": 20, "w": 30})
    assert client.zremrangebyscore("z", 15, "+inf") == 2
    assert client.zremrangebyrank("z", 0, 0) == 1
    assert client.zrem("z", "x", "nope") == 1 and client.exists("z") == 0
    client.zadd("lex", {"a": 0, "b": 0, "c": 0, "d": 0})
    assert client.zrangebylex("lex", "[b", "(d") == [b"b", b"c"]
    assert client.zrevrangebylex("lex", "+", "(b") == [b"d", b"c"]
    assert client.zlexcount("lex", "-", "+") == 4
    assert client.zremrangebylex("lex", "-", "[c") == 3 and client.zcard("lex") == 1
    client.zadd("s", {"m1": 1, "m2": 2.5})
    cursor, found = client.zscan("s", 0)
    assert cursor == 0 and sorted(scored(found)) == [(b"m1", 1.0), (b"m2", 2.5)]
    assert client.type("s") == b"zset"
    client.set("str", "v")
    with pytest.raises(redis.ResponseError, match=r"^WRONGTYPE Operation against a key"):
        client.zadd("str", {"a": 1})


def test_bzpopmin_waits_for_zadd(server: StoreProcess | RedisProcess, client: redis.Redis) -> None:
    with server.connect() as waiter:
        _send(waiter, "BZPOPMIN", "jobs", "0")
        assert wait_until(lambda: _blocked_clients(client) == 1, timeout=10)
        assert client.zadd("jobs", {"late": 2, "early": 1}) == 2
        assert _reply(waiter) == b"*3\r\n$4\r\njobs\r\n$5\r\nearly\r\n$1\r\n1\r\n"
    assert client.zrange("jobs", 0, -1) == [b"late"]
    assert client.bzpopmax(["jobs"], timeout=1) in (
        (b"jobs", b"late", 2.0),
        [b"jobs", b"late", 2.0],
    )
    assert client.bzpopmin(["jobs"], timeout=0.1) is None
