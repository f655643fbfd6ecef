"""The issue-20 commands through the dispatcher, where a process cannot show it: every write
takes SET's path (the shared-memory region, the memory account, eviction), size limits refuse
before anything is built, and RANDOMKEY/MEMORY USAGE read the engine's own state. Replies are
compared with redis-server in ``tests/integration/test_store_redis_commands.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blinkstore_gunicorn.engine import TTL_OVERHEAD
from blinkstore_gunicorn.server.commands.lcs import MAX_CELLS
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter
from tests.unit.test_commands import Harness, err


@pytest.fixture
def r() -> Harness:
    return Harness()


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def used_after(*commands: list[str | bytes]) -> int:
    """The memory account of a fresh store after ``commands``."""
    fresh = Harness()
    for command in commands:
        reply = fresh(*command)
        assert not reply.startswith(b"-"), reply
    return fresh.engine.used_bytes


@pytest.mark.parametrize(
    ("commands", "same_as"),
    [
        ([["SET", "k", "abc"], ["SETRANGE", "k", "5", "xy"]], ["SET", "k", "abc\0\0xy"]),
        ([["SETBIT", "k", "9", "1"]], ["SET", "k", "\0@"]),
        ([["SET", "k", "a"], ["GETSET", "k", "longer"]], ["SET", "k", "longer"]),
        ([["SET", "a", b"\x0f"], ["BITOP", "NOT", "k", "a"], ["DEL", "a"]], ["SET", "k", b"\xf0"]),
        (
            [["ZADD", "a", "1", "x", "2", "y"], ["ZUNIONSTORE", "k", "1", "a"], ["DEL", "a"]],
            ["ZADD", "k", "1", "x", "2", "y"],
        ),
        (
            [["ZADD", "a", "1", "x", "2", "y"], ["ZRANGESTORE", "k", "a", "1", "1"], ["DEL", "a"]],
            ["ZADD", "k", "2", "y"],
        ),
        (
            [["RPUSH", "a", "3", "1", "2"], ["SORT", "a", "STORE", "k"], ["DEL", "a"]],
            ["RPUSH", "k", "1", "2", "3"],
        ),
        (
            [["RPUSH", "k", "a", "b", "c"], ["LMPOP", "1", "k", "LEFT", "COUNT", "2"]],
            ["RPUSH", "k", "c"],
        ),
    ],
)
def test_writes_are_accounted_as_the_equivalent_write(
    commands: list[list[str | bytes]], same_as: list[str | bytes]
) -> None:
    assert used_after(*commands) == used_after(same_as)


def test_memory_usage_is_the_account_of_the_key(r: Harness) -> None:
    r("SET", "k", "value")
    alone = r.engine.used_bytes
    assert r("MEMORY", "USAGE", "k") == b":%d\r\n" % alone
    r("EXPIRE", "k", "100")
    assert r("MEMORY", "USAGE", "k", "SAMPLES", "0") == b":%d\r\n" % (alone + TTL_OVERHEAD)
    r("HSET", "h", "f", "v")
    assert r("MEMORY", "USAGE", "h") == b":%d\r\n" % (r.engine.used_bytes - alone - TTL_OVERHEAD)
    assert r("MEMORY", "USAGE", "absent") == b"$-1\r\n"


@pytest.fixture
def region() -> Iterator[RegionWriter]:
    writer = RegionWriter(8 * 2**20, max_value=4096)
    yield writer
    writer.close()


def test_string_writes_reach_the_shared_region(region: RegionWriter) -> None:
    r = Harness()
    r.engine.attach_region(region)
    reader = RegionReader(*region.fds, region.assign_counter())
    try:
        r("SET", "k", "abc")
        r("SETRANGE", "k", "1", "ZZ")
        assert reader.get(b"k") == b"aZZ"
        r("SETBIT", "k", "7", "0")
        assert reader.get(b"k") == b"`ZZ"
        assert r("GETSET", "k", "new") == bulk(b"`ZZ") and reader.get(b"k") == b"new"
        r("BITOP", "OR", "k", "k", "absent")
        assert reader.get(b"k") == b"new"
        r("RPUSH", "l", "2", "1")
        r("SORT", "l", "STORE", "k")  # a list now: clients must ask the store
        assert reader.get(b"k") is FALLBACK
        r("SETRANGE", "s", "2", "x")
        assert reader.get(b"s") == b"\0\0x"
        r("ZADD", "z", "1", "m")
        r("ZUNIONSTORE", "s", "1", "z")
        assert reader.get(b"s") is FALLBACK
        r("ZDIFFSTORE", "s", "2", "z", "z")  # empty: the key goes
        assert reader.get(b"s") is None
    finally:
        reader.close()


def test_size_limits_refuse_before_building() -> None:
    r = Harness(max_value_size=1024)
    too_large = err("ERR value too large: value of 2001 bytes exceeds max value size 1024")
    assert r("SETRANGE", "k", "2000", "x") == too_large
    assert r("SETBIT", "k", str(2000 * 8), "1") == too_large
    assert r("EXISTS", "k") == b":0\r\n"
    assert r("SETRANGE", "k", "536870912", "x") == err(
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    )
    unlimited = Harness()
    unlimited("SET", "a", "x" * 1000)
    unlimited("SET", "b", "y" * (MAX_CELLS // 1000))
    assert unlimited("LCS", "a", "b").startswith(b"-ERR LCS table exceeds the store's limit")
    assert unlimited("LCS", "a", "b", "LEN").startswith(b"-ERR LCS table exceeds")


def test_stores_evict_other_keys_within_the_limit() -> None:
    r = Harness(memory_limit=64 * 1024)
    for i in range(100):
        r("SET", f"s{i}", "x" * 300)
    r("ZADD", "src", *(part for i in range(100) for part in (str(i), f"member{i:04d}" * 4)))
    assert r("ZUNIONSTORE", "dst", "1", "src") == b":100\r\n"
    assert r("SORT", "src", "BY", "nosort", "STORE", "lst") == b":100\r\n"
    assert r.engine.used_bytes <= 64 * 1024
    # SIEVE made room for each store, evicting what was not used since (dst among them).
    assert r("EXISTS", "lst") == b":1\r\n" and r("LLEN", "lst") == b":100\r\n"
    assert r.engine.stats().evictions > 0


def test_randomkey_skips_expired_keys(r: Harness) -> None:
    assert r("RANDOMKEY") == b"$-1\r\n"
    for i in range(5):
        r("SET", f"gone{i}", "v", "PX", "10")
    r("HSET", "kept", "f", "v")
    r.clock.now += 11
    assert {r("RANDOMKEY") for _ in range(5)} == {bulk(b"kept")}
    r.client.use_resp3(True)
    r("DEL", "kept")
    assert r("RANDOMKEY") == b"_\r\n"


def test_touch_marks_keys_used_for_sieve(r: Harness) -> None:
    r("SET", "a", "1")
    r("ZADD", "z", "1", "m")
    r.engine._visited.clear()  # what a SIEVE hand pass leaves
    assert r("TOUCH", "a", "z", "absent", "a") == b":3\r\n"
    assert r.engine._visited == {b"a", b"z"}


def test_lcs_matches_redis_walk_on_repeats(r: Harness) -> None:
    r("SET", "a", "abcabcabc")
    r("SET", "b", "bcaxbcaba")
    assert r("LCS", "a", "b") == bulk(b"bcabcab")
    assert r("LCS", "a", "b", "LEN") == b":7\r\n"
