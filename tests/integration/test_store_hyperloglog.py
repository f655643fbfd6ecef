"""PFADD, PFCOUNT, PFMERGE and PFDEBUG against redis-server 7.0: every reply, and every HLL string
(GET, DUMP) byte for byte, through the sparse encoding, its promotion to dense, merges of both,
corrupted HLLs and the wrong types, in RESP2 and RESP3."""

from __future__ import annotations

import pytest
import redis

from harness.processes import RedisProcess, StoreProcess
from tests.support.differential import compare

Servers = tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]

pytestmark = pytest.mark.redis


def _growing(key: str, batches: int, size: int) -> list[list[str | bytes]]:
    """Batches of new elements, the HLL's bytes and count read after each."""
    script: list[list[str | bytes]] = []
    for batch in range(batches):
        script.append(["PFADD", key, *(f"{key}-{batch}-{n}" for n in range(size))])
        script += [["GET", key], ["PFCOUNT", key], ["GET", key]]
    return script


SPARSE_TO_DENSE = [
    ["PFADD", "h", "a", "b", "c", "d", "e"],
    ["GET", "h"],
    ["PFCOUNT", "h"],
    ["GET", "h"],
    ["PFADD", "h", "a"],
    ["PFADD", "fresh"],
    ["GET", "fresh"],
    ["PFCOUNT", "fresh"],
    ["PFCOUNT", "nosuch"],
    *_growing("big", 30, 40),
    ["DUMP", "big"],
    ["PFADD", "small", "x", "y", "z"],
    ["PFMERGE", "sparse", "small", "h"],
    ["GET", "sparse"],
    ["PFMERGE", "dense", "small", "big"],
    ["GET", "dense"],
    ["PFCOUNT", "dense"],
    ["PFCOUNT", "small", "h", "big"],
    ["PFCOUNT", "small", "h", "nosuch"],
    ["PFMERGE", "h", "small"],
    ["GET", "h"],
    ["PFMERGE", "empty"],
    ["GET", "empty"],
    ["EXPIRE", "h", "1000"],
    ["PFADD", "h", "new-one"],
    ["TTL", "h"],
    ["PFDEBUG", "ENCODING", "h"],
    ["PFDEBUG", "DECODE", "h"],
    ["PFDEBUG", "ENCODING", "big"],
    ["PFDEBUG", "DECODE", "big"],
    ["PFDEBUG", "TODENSE", "big"],
    ["PFDEBUG", "GETREG", "small"],
    ["GET", "small"],
    ["PFDEBUG", "TODENSE", "h"],
    ["GET", "h"],
    ["PFDEBUG", "TODENSE", "h"],
    ["PFCOUNT", "h"],
]

# Headers Redis accepts whose registers do not add up, and strings it does not take for HLLs.
_SHORT_SPARSE = b"HYLL\x01\x00\x00\x00" + bytes(8) + b"\x7f\xfe"
_LONG_SPARSE = b"HYLL\x01\x00\x00\x00" + bytes(8) + b"\x7f\xff\x80"
WRONG = [
    ["SET", "short", _SHORT_SPARSE],
    ["PFADD", "short", "a", "b", "c"],
    ["PFCOUNT", "short"],
    ["SET", "long", _LONG_SPARSE],
    ["PFCOUNT", "long"],
    ["PFCOUNT", "long", "short"],
    ["PFMERGE", "out", "long"],
    ["SET", "dense-size", b"HYLL\x00\x00\x00\x00" + bytes(8) + bytes(100)],
    ["PFADD", "dense-size", "a"],
    ["SET", "encoding", b"HYLL\x02\x00\x00\x00" + bytes(8) + b"\x7f\xff"],
    ["PFCOUNT", "encoding"],
    ["SET", "str", "hello"],
    ["PFADD", "str", "a"],
    ["PFCOUNT", "str"],
    ["PFMERGE", "str", "nosuch"],
    ["PFADD", "ok", "a"],
    ["PFCOUNT", "ok", "str"],
    ["PFMERGE", "ok", "str"],
    ["RPUSH", "list", "a"],
    ["PFADD", "list", "a"],
    ["PFCOUNT", "list"],
    ["PFCOUNT", "ok", "list"],
    ["PFMERGE", "list", "ok"],
    ["PFADD"],
    ["PFCOUNT"],
    ["PFMERGE"],
    ["PFDEBUG", "ENCODING", "nosuch"],
    ["PFDEBUG", "ENCODING", "str"],
    ["PFDEBUG", "ENCODING", "list"],
    ["PFDEBUG", "BOGUS", "ok"],
    ["PFDEBUG", "ENCODING", "ok", "extra"],
    ["PFDEBUG", "GETREG", "long"],
    ["PFDEBUG", "ENCODING"],
]


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("script", [SPARSE_TO_DENSE, WRONG], ids=["sparse-dense", "wrong"])
def test_replies_and_bytes_match_redis(
    redis_and_store: Servers, script: list[list[str | bytes]], protocol: int
) -> None:
    assert compare(redis_and_store, script, protocol) == []


def test_large_counts_match_redis(redis_and_store: Servers) -> None:
    """100,000 elements in one HLL and spread over three, counted and merged on both."""
    results = []
    for server in redis_and_store:
        client = redis.Redis(unix_socket_path=server.unix_path, socket_timeout=60)
        client.flushall()
        for start in range(0, 100_000, 10_000):
            chunk = [f"user:{n}" for n in range(start, start + 10_000)]
            client.pfadd("all", *chunk)
            client.pfadd(f"part{start % 3}", *chunk)
        client.pfmerge("merged", "part0", "part1", "part2")
        counts = [client.pfcount(key) for key in ("all", "part0", "part1", "part2", "merged")]
        results.append((counts, client.pfcount("part0", "part1"), client.get("merged")))
    assert results[0] == results[1]
