"""Unit tests of typed values in the engine: one keyspace, one account, one eviction, one TTL
table for strings and containers; WRONGTYPE; the region's "ask the store" entry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blinkstore_gunicorn.engine import (
    ENTRY_OVERHEAD,
    TTL_OVERHEAD,
    EntryTooLarge,
    MemoryEngine,
    WrongType,
)
from blinkstore_gunicorn.engine.hashes import Hash, hdel, hset
from blinkstore_gunicorn.engine.lists import push
from blinkstore_gunicorn.engine.sets import sadd
from blinkstore_gunicorn.engine.streams import Stream, Trim, append, remove, trim
from blinkstore_gunicorn.engine.typed import (
    CONTAINER_OVERHEAD,
    HASH_FIELD_OVERHEAD,
    STREAM_ENTRY_OVERHEAD,
    STREAM_OVERHEAD,
)
from blinkstore_gunicorn.engine.zsets import zadd
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def hash_cost(key: bytes, fields: dict[bytes, bytes]) -> int:
    content = sum(len(f) + len(v) + HASH_FIELD_OVERHEAD for f, v in fields.items())
    return len(key) + ENTRY_OVERHEAD + CONTAINER_OVERHEAD + content


def test_cost_is_kept_as_the_hash_changes_and_returns_to_zero() -> None:
    engine = MemoryEngine(memory_limit=0)
    assert hset(engine, b"h", [(b"a", b"1"), (b"bb", b"22")]) == 2
    assert engine.used_bytes == hash_cost(b"h", {b"a": b"1", b"bb": b"22"})
    assert hset(engine, b"h", [(b"a", b"12345")]) == 0
    assert engine.used_bytes == hash_cost(b"h", {b"a": b"12345", b"bb": b"22"})
    assert hdel(engine, b"h", [b"a", b"missing"]) == 1
    assert engine.used_bytes == hash_cost(b"h", {b"bb": b"22"})
    engine.set(b"s", b"v")
    assert hdel(engine, b"h", [b"bb"]) == 1
    # The last field took the key with it (Redis keeps no empty container).
    assert engine.kind(b"h") is None and not engine.contains(b"h") and len(engine) == 1
    engine.delete(b"s")
    assert engine.used_bytes == 0


def test_a_stream_is_counted_and_outlives_its_last_entry() -> None:
    engine = MemoryEngine(memory_limit=0)
    empty = len(b"s") + ENTRY_OVERHEAD + STREAM_OVERHEAD
    body = b"f=val"  # the engine keeps an entry's body as given, unread
    one_entry = STREAM_ENTRY_OVERHEAD + len(body)
    append(engine, b"s", (1, 0), body, [b"f", b"val"], rule=None)
    append(engine, b"s", (2, 0), body, [b"f", b"val"], rule=None)
    assert engine.used_bytes == empty + 2 * one_entry
    assert remove(engine, b"s", [(1, 0), (9, 9)]) == 1
    assert engine.used_bytes == empty + one_entry
    exact = Trim(maxlen=0, minid=None, approx=False, limit=0)
    assert trim(engine, b"s", exact) == 1
    # Emptied, the stream stays with its last ID (Redis keeps it): only DEL takes it.
    stream = engine.lookup(b"s", Stream)
    assert stream is not None and len(stream) == 0 and stream.last_id == (2, 0)
    assert engine.kind(b"s") == b"stream" and engine.used_bytes == empty
    engine.delete(b"s")
    assert engine.used_bytes == 0


def test_wrong_type_both_ways_and_set_replaces_any_type() -> None:
    engine = MemoryEngine(memory_limit=0)
    hset(engine, b"h", [(b"f", b"v")])
    engine.set(b"s", b"v")
    with pytest.raises(WrongType) as raised:
        engine.get(b"h")
    assert str(raised.value) == "WRONGTYPE Operation against a key holding the wrong kind of value"
    with pytest.raises(WrongType):
        engine.peek(b"h")
    with pytest.raises(WrongType):
        hset(engine, b"s", [(b"f", b"v")])
    with pytest.raises(WrongType):
        hdel(engine, b"s", [b"f"])
    assert engine.kind(b"h") == b"hash" and engine.kind(b"s") == b"string"
    assert engine.contains(b"h")
    engine.set(b"h", b"now a string")
    assert engine.get(b"h") == b"now a string"
    assert engine.used_bytes == 2 * ENTRY_OVERHEAD + len(b"hnow a string") + len(b"sv")


def test_ttl_on_a_hash_lazily_and_actively() -> None:
    clock = Clock()
    engine = MemoryEngine(memory_limit=0, clock_ms=clock)
    hset(engine, b"h", [(b"f", b"v")])
    hset(engine, b"g", [(b"f", b"v")])
    assert engine.set_expire_at(b"h", clock.now + 1000)
    assert engine.set_expire_at(b"g", clock.now + 1000)
    assert engine.used_bytes == 2 * (hash_cost(b"h", {b"f": b"v"}) + TTL_OVERHEAD)
    assert engine.expire_at(b"h") == clock.now + 1000
    clock.now += 1000
    assert engine.lookup(b"h", Hash) is None
    assert engine.expire_due() == 1
    assert len(engine) == 0 and engine.used_bytes == 0
    assert engine.stats().expirations == 2


def test_rename_moves_value_and_ttl() -> None:
    clock = Clock()
    engine = MemoryEngine(memory_limit=0, clock_ms=clock)
    hset(engine, b"h", [(b"f", b"v")])
    engine.set_expire_at(b"h", clock.now + 5000)
    engine.set(b"dst", b"old string")
    assert engine.rename(b"h", b"dst")
    assert engine.kind(b"h") is None and engine.kind(b"dst") == b"hash"
    assert engine.expire_at(b"dst") == clock.now + 5000
    assert engine.used_bytes == hash_cost(b"dst", {b"f": b"v"}) + TTL_OVERHEAD
    engine.set(b"s", b"v")
    assert engine.rename(b"s", b"t") and engine.get(b"t") == b"v"
    assert not engine.rename(b"missing", b"x")


def test_sieve_evicts_hashes_and_strings_alike() -> None:
    one = hash_cost(b"h00", {b"f": b"v" * 100})
    engine = MemoryEngine(memory_limit=one * 10)
    for i in range(30):
        hset(engine, b"h%02d" % i, [(b"f", b"v" * 100)])
        assert engine.used_bytes <= engine.memory_limit
    assert len(engine) == 10 and engine.stats().evictions == 20
    for i in range(30):
        engine.set(b"s%02d" % i, b"x" * 300)
        assert engine.used_bytes <= engine.memory_limit
    assert all(engine.kind(b"h%02d" % i) is None for i in range(30))
    engine.flush()
    assert engine.used_bytes == 0


def test_a_hash_growing_past_the_limit_alone_is_refused_unchanged() -> None:
    engine = MemoryEngine(memory_limit=4096)
    hset(engine, b"h", [(b"f", b"v")])
    before = engine.used_bytes
    with pytest.raises(EntryTooLarge):
        hset(engine, b"h", [(b"g", b"x" * 4096)])
    assert engine.used_bytes == before
    found = engine.lookup(b"h", Hash)
    assert found is not None and found.fields == {b"f": b"v"}


def test_a_growing_hash_evicts_others_and_stays() -> None:
    engine = MemoryEngine(memory_limit=8192)
    for i in range(10):
        engine.set(b"s%d" % i, b"x" * 200)
    for i in range(20):
        hset(engine, b"h", [(b"f%d" % i, b"y" * 100)])
        assert engine.used_bytes <= engine.memory_limit
    found = engine.lookup(b"h", Hash)
    assert found is not None and len(found) == 20


def test_scan_lists_every_type() -> None:
    engine = MemoryEngine(memory_limit=0)
    hset(engine, b"h", [(b"f", b"v")])
    engine.set(b"s", b"v")
    assert sorted(engine.scan(0, 100)[1]) == [b"h", b"s"]


@pytest.fixture
def region() -> Iterator[RegionWriter]:
    writer = RegionWriter(8 * 2**20, max_value=4096)
    yield writer
    writer.close()


def test_a_hash_is_never_served_from_the_region(region: RegionWriter) -> None:
    clock = Clock()
    engine = MemoryEngine(memory_limit=8 * 2**20, clock_ms=clock)
    engine.attach_region(region)
    reader = RegionReader(*region.fds, region.assign_counter())
    try:
        engine.set(b"k", b"string")
        assert reader.get(b"k") == b"string"
        engine.delete(b"k")
        hset(engine, b"k", [(b"f", b"v")])
        # "Ask the store": a GET through the region reaches the store and its WRONGTYPE.
        assert reader.get(b"k") is FALLBACK
        assert engine.set_expire_at(b"k", clock.now + 5000)
        assert reader.get(b"k") is FALLBACK
        engine.set(b"k", b"a string again")
        assert reader.get(b"k") == b"a string again"
        engine.delete(b"k")
        hset(engine, b"k", [(b"f", b"v")])
        hdel(engine, b"k", [b"f"])
        assert reader.get(b"k") is None
        hset(engine, b"k", [(b"f", b"v")])
        assert engine.rename(b"k", b"k2")
        assert reader.get(b"k") is None and reader.get(b"k2") is FALLBACK
        engine.flush()
        assert reader.get(b"k2") is None and engine.used_bytes == 0
    finally:
        reader.close()


def _fill(engine: MemoryEngine, kind: str, key: bytes, i: int) -> None:
    """Give ``key`` one element of a ``kind`` value."""
    element = b"e%04d" % i + b"x" * 64
    if kind == "hash":
        hset(engine, key, [(element, b"v")])
    elif kind == "set":
        sadd(engine, key, [element])
    elif kind == "list":
        push(engine, key, [element], left=False)
    elif kind == "stream":
        append(engine, key, (i + 1, 0), element, [b"f", element], rule=None)
    else:
        zadd(engine, key, [(float(i), element)])


@pytest.mark.parametrize("kind", ["hash", "set", "list", "zset", "stream"])
def test_every_type_is_evicted_expires_and_is_accounted(kind: str) -> None:
    clock = Clock()
    engine = MemoryEngine(memory_limit=64 * 1024, clock_ms=clock)
    for i in range(200):
        _fill(engine, kind, b"k%03d" % i, i)
        assert engine.used_bytes <= engine.memory_limit
    assert engine.stats().evictions > 0
    assert {engine.kind(key) for key in engine.scan(0, 1000)[1]} == {kind.encode()}
    live = engine.scan(0, 1000)[1]
    for key in live:
        engine.set_expire_at(key, clock.now + 10)  # a TTL costs memory: may evict others
    with_ttl = len(engine)
    assert engine.stats().expires == with_ttl
    clock.now += 10
    assert engine.expire_due() == with_ttl
    assert len(engine) == 0 and engine.used_bytes == 0


@pytest.mark.parametrize("kind", ["hash", "set", "list", "zset", "stream"])
def test_copy_is_independent_and_counted(kind: str) -> None:
    clock = Clock()
    engine = MemoryEngine(memory_limit=0, clock_ms=clock)
    _fill(engine, kind, b"src", 1)
    engine.set_expire_at(b"src", clock.now + 5000)
    one = engine.used_bytes
    assert engine.copy(b"src", b"dst") and engine.used_bytes == 2 * one
    assert engine.kind(b"dst") == kind.encode() and engine.expire_at(b"dst") == clock.now + 5000
    _fill(engine, kind, b"dst", 2)
    assert engine.used_bytes > 2 * one
    engine.delete(b"dst")
    assert engine.used_bytes == one
    assert not engine.copy(b"missing", b"x")
