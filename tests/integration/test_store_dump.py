"""DUMP and RESTORE against redis-server 7.0: payloads byte for byte where Redis's layout
depends on the value only, keys of every type moved from redis-server to the store and back,
and bad payloads refused with Redis's errors and nothing lost."""

from __future__ import annotations

import pytest
import redis

from blinkstore_gunicorn.storage.rdb import crc64
from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess
from tests.support.differential import RawConnection, compare

Servers = tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]

pytestmark = pytest.mark.redis


def _client(server: RedisProcess | StoreProcess) -> redis.Redis:
    return redis.Redis(unix_socket_path=server.unix_path, socket_timeout=30)


def _fill(client: redis.Redis) -> None:
    """Keys of every type, small (compact encodings) and large (plain types, several nodes)."""
    client.flushall()
    client.set("str:int", "12")
    client.set("str:wide", "-70000")
    client.set("str:text", "hello")
    client.set("str:zero-led", "0123")
    client.set("str:lzf", "abc" * 40)
    client.set("str:random", bytes(range(256)) * 3)
    client.rpush("list:small", "a", "1", "300", "-5", "70000", "x" * 70)
    client.rpush("list:big", *[f"item-{n}" * 5 for n in range(2000)])
    client.hset("hash:small", mapping={"f1": "v1", "f2": "2", "f3": "x" * 64})
    client.hset("hash:big", mapping={f"field{n}": f"value{n}" for n in range(600)})
    client.sadd("set:ints", 1, 2, 3, -7, 100000, 2**40)
    client.sadd("set:text", "a", "b", "c")
    client.zadd("zset:small", {"a": 1, "b": 2.5, "c": -3, "d": 0, "e": 1e20, "f": float("inf")})
    client.zadd("zset:big", {f"member{n}": n / 7 for n in range(300)})
    client.zadd("zset:longmember", {"m" * 65: 1, "n": 2})
    for n in range(250):  # three stream nodes of Redis's 100 entries
        client.xadd("stream", {"a": str(n), "b": "text"}, id=f"{n + 1}-1")
    client.xadd("stream", {"other": "field"}, id="9999-0")
    client.xgroup_create("stream", "readers", id="0")
    client.xgroup_create("stream", "a-consumer-group-with-a-long-name", id="$")


#: Keys whose payload depends on the value only (not on hash-table order or history).
DETERMINISTIC = [
    "str:int",
    "str:wide",
    "str:text",
    "str:zero-led",
    "str:lzf",
    "str:random",
    "list:small",
    "list:big",
    "hash:small",
    "set:ints",
    "zset:small",
    "zset:big",
    "zset:longmember",
    "stream",
]


def _dump(client: redis.Redis, key: str) -> bytes:
    payload = client.dump(key)
    assert isinstance(payload, bytes), key
    return payload


def _contents(client: redis.Redis, key: str) -> object:
    """A key's type and value, read back in an order-free form."""
    kind = client.type(key)
    if kind == b"string":
        return kind, client.get(key)
    if kind == b"list":
        return kind, client.lrange(key, 0, -1)
    if kind == b"hash":
        return kind, client.hgetall(key)
    if kind == b"set":
        return kind, client.smembers(key)
    if kind == b"zset":
        return kind, client.zrange(key, 0, -1, withscores=True)
    return kind, client.xrange(key), client.xinfo_groups(key)


def test_payloads_equal_redis_bytes(redis_and_store: Servers) -> None:
    redis_client, store_client = (_client(server) for server in redis_and_store)
    for client in (redis_client, store_client):
        _fill(client)
    for key in DETERMINISTIC:
        assert store_client.dump(key) == redis_client.dump(key), key


def test_every_type_moves_to_the_store_and_back(redis_and_store: Servers) -> None:
    redis_client, store_client = (_client(server) for server in redis_and_store)
    _fill(redis_client)
    store_client.flushall()
    keys = sorted(key.decode() for key in redis_client.keys("*") if isinstance(key, bytes))
    assert len(keys) == 16
    expected = {key: _contents(redis_client, key) for key in keys}
    for key in keys:
        store_client.restore(key, 0, _dump(redis_client, key))
        assert _contents(store_client, key) == expected[key], key
    redis_client.flushall()
    for key in keys:
        redis_client.restore(key, 0, _dump(store_client, key))
        assert _contents(redis_client, key) == expected[key], key


def test_restore_ttl_options_and_replace(redis_and_store: Servers) -> None:
    for server in redis_and_store:
        client = _client(server)
        client.flushall()
        client.set("k", "v")
        payload = _dump(client, "k")
        assert client.restore("ttl", 100_000, payload)
        assert 0 < client.pttl("ttl") <= 100_000
        far = 4_000_000_000_000
        assert client.restore("abs", far, payload, absttl=True)
        assert client.pexpiretime("abs") == far
        client.set("gone", "old")
        assert client.restore("gone", 1, payload, replace=True, absttl=True)
        assert client.exists("gone") == 0  # already expired: the old value removed, no new one
        assert client.restore("k", 0, payload, replace=True, idletime=10)
        assert client.restore("k", 0, payload, replace=True, frequency=5)


@pytest.mark.parametrize("protocol", [2, 3])
def test_errors_match_redis(redis_and_store: Servers, protocol: int) -> None:
    valid = _client(redis_and_store[1])
    valid.set("source", "value")
    payload = _dump(valid, "source")
    flipped = payload[:-1] + bytes([payload[-1] ^ 1])
    later = payload[:-10] + b"\x0b\x00" + payload[-8:]
    script: list[list[str | bytes]] = [
        ["SET", "k", "v"],
        ["DUMP", "nosuch"],
        ["RESTORE", "k", "0", payload],
        ["RESTORE", "k", "0", flipped],
        ["RESTORE", "new", "0", flipped],
        ["RESTORE", "new", "0", later],
        ["RESTORE", "new", "0", b"short"],
        ["RESTORE", "new", "0", b""],
        ["RESTORE", "new", "x", payload],
        ["RESTORE", "new", "-1", payload],
        ["RESTORE", "new", "0", payload, "REPLACE", "BOGUS"],
        ["RESTORE", "new", "0", payload, "IDLETIME"],
        ["RESTORE", "new", "0", payload, "IDLETIME", "x"],
        ["RESTORE", "new", "0", payload, "IDLETIME", "-1"],
        ["RESTORE", "new", "0", payload, "FREQ", "256"],
        ["RESTORE", "new", "0", payload, "FREQ", "1", "IDLETIME", "1"],
        ["RESTORE", "new", "0", payload, "IDLETIME", "1", "FREQ", "1"],
        ["RESTORE", "k", "0", payload, "REPLACE", "FREQ", "1"],
        ["RESTORE", "new", "0", payload, "ABSTTL", "REPLACE"],
        ["GET", "new"],
        ["DUMP"],
        ["RESTORE", "k", "0"],
    ]
    assert compare(redis_and_store, script, protocol) == []


def _parked_then_restored(server: RedisProcess | StoreProcess) -> tuple[bytes, bytes]:
    """A BLPOP parked on an absent key, then RESTORE of a two-item list there: the BLPOP's
    reply and the list left."""
    waiter, other = RawConnection(server), RawConnection(server)
    try:
        other("FLUSHALL")
        other("RPUSH", "source", "a", "b")
        payload = _dump(_client(server), "source")
        waiter.send("BLPOP", "target", "30")
        parked = wait_until(
            lambda: b"blocked_clients:1\r\n" in other("INFO", "clients"), timeout=10
        )
        assert parked
        assert other("RESTORE", "target", "0", payload) == b"+OK\r\n"
        return waiter.reply(), other("LRANGE", "target", "0", "-1")
    finally:
        waiter.close()
        other.close()


def test_a_restored_list_serves_a_parked_blpop(redis_and_store: Servers) -> None:
    expected = (b"*2\r\n$6\r\ntarget\r\n$1\r\na\r\n", b"*1\r\n$1\r\nb\r\n")
    for server in redis_and_store:
        assert _parked_then_restored(server) == expected


def test_a_bad_payload_loses_nothing(redis_and_store: Servers) -> None:
    store = RawConnection(redis_and_store[1])
    try:
        store("FLUSHALL")
        store("RPUSH", "list", "a", "b")
        good = _dump(_client(redis_and_store[1]), "list")
        # A valid checksum over a value that does not parse: "Bad data format".
        body = b"\x12\x05\x02\x03abc" + good[-10:-8]
        broken = body + crc64(body).to_bytes(8, "little")
        assert store("RESTORE", "list", "0", broken, "REPLACE") == b"-ERR Bad data format\r\n"
        assert store("LRANGE", "list", "0", "-1") == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        assert store("PING") == b"+PONG\r\n"
    finally:
        store.close()
