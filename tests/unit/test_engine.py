"""Unit tests of the engine: accounting, SIEVE eviction, TTL, limits, SCAN and MATCH."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from blinkstore_gunicorn.engine import (
    ENTRY_OVERHEAD,
    TTL_OVERHEAD,
    Engine,
    EngineError,
    EngineStats,
    EntryTooLarge,
    KeyTooLarge,
    MemoryEngine,
    ValueTooLarge,
    match_pattern,
)
from blinkstore_gunicorn.engine.memory import MAX_SCAN_SNAPSHOTS

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A hand-driven wall clock in milliseconds."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def size(key: bytes, value: bytes, ttl: bool = False) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD + (TTL_OVERHEAD if ttl else 0)


def all_keys(engine: MemoryEngine, count: int = 10) -> list[bytes]:
    cursor, keys = engine.scan(0, count)
    while cursor:
        cursor, more = engine.scan(cursor, count)
        keys += more
    return keys


def recount(engine: MemoryEngine) -> int:
    """used_bytes recomputed from what the engine holds, through its public API."""
    total = 0
    for key in all_keys(engine):
        value = engine.peek(key)
        assert value is not None
        total += size(key, value, engine.expire_at(key) is not None)
    return total


def held_bytes(engine: MemoryEngine) -> int:
    """used_bytes recomputed from the internals, expired-but-not-yet-removed keys included."""
    entries = [*engine._ahead.items(), *engine._behind.items()]
    assert engine._deadlines.keys() <= {key for key, _ in entries}
    held = [(key, value) for key, value in entries if isinstance(value, bytes)]
    assert len(held) == len(entries), "no region attached: every value is in the heap"
    return sum(size(key, value, key in engine._deadlines) for key, value in held)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(clock: Clock) -> MemoryEngine:
    return MemoryEngine(memory_limit=0, clock_ms=clock)


def test_satisfies_engine_protocol() -> None:
    engine: Engine = MemoryEngine()
    assert engine.memory_limit == 64 * 2**20
    assert isinstance(engine.stats(), EngineStats)


# -- basics and accounting ---------------------------------------------------------------------


def test_get_set_delete_and_stats(engine: MemoryEngine) -> None:
    assert engine.get(b"k") is None
    engine.set(b"k", b"v")
    engine.set(b"empty", b"")
    assert engine.get(b"k") == b"v"
    assert engine.get(b"empty") == b""
    assert engine.peek(b"k") == b"v"
    assert engine.contains(b"empty")
    assert len(engine) == 2
    assert engine.delete(b"k") is True
    assert engine.delete(b"k") is False
    assert engine.get(b"k") is None
    stats = engine.stats()
    assert (stats.keys, stats.hits, stats.misses) == (1, 2, 2)
    assert stats.used_bytes == engine.used_bytes == size(b"empty", b"")


def test_used_bytes_follows_set_overwrite_delete_flush(engine: MemoryEngine) -> None:
    engine.set(b"a", b"x" * 10)
    assert engine.used_bytes == size(b"a", b"x" * 10)
    engine.set(b"a", b"y" * 1000)
    assert engine.used_bytes == size(b"a", b"y" * 1000)
    engine.set(b"b", b"z")
    assert engine.used_bytes == size(b"a", b"y" * 1000) + size(b"b", b"z")
    engine.delete(b"a")
    assert engine.used_bytes == size(b"b", b"z")
    engine.flush()
    assert engine.used_bytes == 0
    assert len(engine) == 0
    assert engine.get(b"b") is None


def test_used_bytes_counts_ttl_overhead(engine: MemoryEngine, clock: Clock) -> None:
    engine.set(b"a", b"v", expire_at_ms=clock.now + 100)
    assert engine.used_bytes == size(b"a", b"v", ttl=True)
    assert engine.set_expire_at(b"a", None)
    assert engine.used_bytes == size(b"a", b"v")
    assert engine.set_expire_at(b"a", clock.now + 50)
    assert engine.used_bytes == size(b"a", b"v", ttl=True)
    engine.set(b"a", b"vv")  # a plain SET drops the TTL, as in Redis
    assert engine.expire_at(b"a") is None
    assert engine.used_bytes == size(b"a", b"vv")
    engine.set(b"a", b"v", expire_at_ms=clock.now + 100)
    clock.now += 100
    assert engine.expire_due() == 1
    assert engine.used_bytes == 0


def test_flush_keeps_counters(engine: MemoryEngine) -> None:
    engine.set(b"a", b"1")
    engine.get(b"a")
    engine.get(b"zz")
    engine.flush()
    stats = engine.stats()
    assert (stats.keys, stats.used_bytes, stats.hits, stats.misses) == (0, 0, 1, 1)


# -- limits ------------------------------------------------------------------------------------


def test_value_too_large_names_the_limit(engine: MemoryEngine) -> None:
    engine.set(b"k", b"old")
    with pytest.raises(ValueTooLarge) as caught:
        engine.set(b"k", bytes(20 * 2**20))
    assert str(caught.value) == "value of 20971520 bytes exceeds max value size 16777216"
    assert isinstance(caught.value, EngineError)
    assert isinstance(caught.value, ValueError)
    assert (caught.value.size, caught.value.limit) == (20 * 2**20, 16 * 2**20)
    assert engine.get(b"k") == b"old"


def test_key_too_large_and_exact_limits() -> None:
    engine = MemoryEngine(memory_limit=0, max_key_size=4, max_value_size=8)
    engine.set(b"1234", b"12345678")
    with pytest.raises(KeyTooLarge, match=r"^key of 5 bytes exceeds max key size 4$"):
        engine.set(b"12345", b"v")
    with pytest.raises(ValueTooLarge, match=r"^value of 9 bytes exceeds max value size 8$"):
        engine.set(b"k", b"123456789")
    assert len(engine) == 1


def test_entry_too_large_for_memory_limit() -> None:
    limit = size(b"k", b"x" * 100)
    engine = MemoryEngine(memory_limit=limit)
    engine.set(b"k", b"x" * 100)  # exactly the limit fits
    with pytest.raises(EntryTooLarge, match=rf"of {limit + 1} bytes exceeds memory limit {limit}$"):
        engine.set(b"k", b"x" * 101)
    assert engine.get(b"k") == b"x" * 100
    with pytest.raises(EntryTooLarge):
        engine.set(b"k", b"x" * 100, expire_at_ms=2**62)  # the TTL costs memory too
    assert engine.used_bytes == limit


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="memory_limit"):
        MemoryEngine(memory_limit=-1)
    with pytest.raises(ValueError, match="max_value_size"):
        MemoryEngine(max_value_size=-1)


def test_zero_memory_limit_is_unlimited() -> None:
    engine = MemoryEngine(memory_limit=0)
    for i in range(2000):
        engine.set(b"%d" % i, bytes(1000))
    assert len(engine) == 2000
    assert engine.stats().evictions == 0


# -- eviction ----------------------------------------------------------------------------------


def fixed_engine(capacity: int, clock: Clock | None = None) -> MemoryEngine:
    """An engine holding exactly ``capacity`` entries made by ``put``."""
    return MemoryEngine(memory_limit=capacity * size(b"k000", b"v" * 10), clock_ms=clock or Clock())


def put(engine: MemoryEngine, i: int, expire_at_ms: int | None = None) -> None:
    engine.set(b"k%03d" % i, b"v" * 10, expire_at_ms=expire_at_ms)


def held(engine: MemoryEngine) -> set[int]:
    return {int(key[1:]) for key in all_keys(engine)}


def test_eviction_follows_sieve_order() -> None:
    engine = fixed_engine(10)
    for i in range(10):
        put(engine, i)
    for i in (0, 1, 2, 3, 4):
        assert engine.get(b"k%03d" % i) is not None
    put(engine, 10)  # the hand passes the read 0..4 (clearing their bits) and evicts 5
    assert held(engine) == set(range(11)) - {5}
    for i in (11, 12, 13, 14):
        put(engine, i)  # then 6..9, oldest first
    assert held(engine) == {0, 1, 2, 3, 4, 10, 11, 12, 13, 14}
    assert engine.stats().evictions == 5
    assert engine.used_bytes == recount(engine) <= engine.memory_limit


def test_sieve_hand_wraps_to_the_oldest_key() -> None:
    engine = fixed_engine(3)
    for i in range(3):
        put(engine, i)
    for i in range(3):
        engine.get(b"k%03d" % i)
    put(engine, 3)  # all were read: the hand clears 0..2, wraps, and evicts 0
    assert held(engine) == {1, 2, 3}
    engine.get(b"k001")
    put(engine, 4)  # 1 was read again, 2 was not
    assert held(engine) == {1, 3, 4}
    put(engine, 5)
    assert held(engine) == {1, 4, 5}


def test_recently_read_keys_survive_a_flood_of_new_keys() -> None:
    engine = fixed_engine(100)
    hot = range(20)
    for i in range(100):
        put(engine, i)
    for n in range(1000):
        if n % 10 == 0:
            for i in hot:
                assert engine.get(b"k%03d" % i) is not None, (n, i)
        engine.set(b"new%05d" % n, b"v" * 8)
    assert held_hot(engine, hot)
    assert engine.stats().evictions > 900


def held_hot(engine: MemoryEngine, hot: range) -> bool:
    return all(engine.contains(b"k%03d" % i) for i in hot)


def test_keys_read_once_survive_the_next_eviction_round() -> None:
    engine = fixed_engine(50)
    for i in range(50):
        put(engine, i)
    read = set(range(0, 50, 3))
    for i in read:
        engine.get(b"k%03d" % i)
    for i in range(50 - len(read)):
        put(engine, 100 + i)
    assert read <= held(engine)
    assert not (set(range(50)) - read) & held(engine)


def test_writing_a_key_never_evicts_it() -> None:
    engine = fixed_engine(4)
    for i in range(4):
        put(engine, i)
    big = b"v" * (3 * size(b"k000", b"v" * 10) - ENTRY_OVERHEAD - 4 + 1)
    engine.set(b"k002", big)  # overwrite: grows past 3 entries' worth, the others go
    assert engine.get(b"k002") == big
    assert len(engine) == 1
    everything = b"v" * (engine.memory_limit - ENTRY_OVERHEAD - 4)
    engine.set(b"huge", everything)  # a new key that needs the whole limit
    assert held_keys(engine) == [b"huge"]
    assert engine.used_bytes == engine.memory_limit


def held_keys(engine: MemoryEngine) -> list[bytes]:
    return sorted(all_keys(engine))


def test_giving_a_ttl_may_evict_others_but_not_the_key() -> None:
    engine = fixed_engine(3)
    for i in range(3):
        put(engine, i)
    assert engine.set_expire_at(b"k000", 2**62)
    assert engine.contains(b"k000")
    assert engine.used_bytes <= engine.memory_limit
    assert engine.stats().evictions >= 1


def test_expired_keys_met_by_the_hand_count_as_expirations(clock: Clock) -> None:
    engine = fixed_engine(5, clock)  # 0 with its TTL and 1, 2 fill it; 3 needs room
    put(engine, 0, expire_at_ms=clock.now + 10)
    put(engine, 1)
    put(engine, 2)
    clock.now += 10
    put(engine, 3)
    stats = engine.stats()
    assert (stats.evictions, stats.expirations, stats.expires) == (0, 1, 0)
    assert engine.used_bytes == recount(engine)


# -- TTL ---------------------------------------------------------------------------------------


def test_lazy_expiry_on_access(engine: MemoryEngine, clock: Clock) -> None:
    engine.set(b"a", b"1", expire_at_ms=clock.now + 100)
    engine.set(b"b", b"2", expire_at_ms=clock.now + 100)
    engine.set(b"c", b"3", expire_at_ms=clock.now + 100)
    clock.now += 99
    assert engine.get(b"a") == b"1"
    assert engine.expire_at(b"a") == clock.now + 1
    clock.now += 1  # the deadline itself is expired, as in Redis
    assert engine.get(b"a") is None
    assert engine.peek(b"b") is None
    assert not engine.contains(b"c")
    with pytest.raises(KeyError):
        engine.expire_at(b"a")
    stats = engine.stats()
    assert (stats.keys, stats.expirations, stats.expires, stats.used_bytes) == (0, 3, 0, 0)
    assert (stats.hits, stats.misses) == (1, 1)


def test_delete_of_an_expired_key_reports_absent(engine: MemoryEngine, clock: Clock) -> None:
    engine.set(b"a", b"1", expire_at_ms=clock.now + 1)
    clock.now += 1
    assert engine.delete(b"a") is False
    assert engine.used_bytes == 0
    assert engine.stats().expirations == 1


def test_active_expiry_removes_only_due_keys(engine: MemoryEngine, clock: Clock) -> None:
    for i in range(100):
        engine.set(b"t%d" % i, b"v", expire_at_ms=clock.now + 10 * (i + 1))
    engine.set(b"forever", b"v")
    clock.now += 250
    assert engine.expire_due() == 25
    assert len(engine) == 76
    assert engine.stats().expirations == 25
    assert engine.used_bytes == recount(engine)
    clock.now += 10_000
    assert engine.expire_due(max_keys=30) == 30  # bounded work per call
    assert engine.expire_due() == 45
    assert engine.expire_due() == 0
    assert all_keys(engine) == [b"forever"]
    assert engine.used_bytes == size(b"forever", b"v")


def test_stale_deadlines_never_expire_a_key(engine: MemoryEngine, clock: Clock) -> None:
    engine.set(b"a", b"1", expire_at_ms=clock.now + 100)
    engine.delete(b"a")
    engine.set(b"a", b"2")  # same key again, without TTL
    engine.set(b"b", b"1", expire_at_ms=clock.now + 100)
    assert engine.set_expire_at(b"b", clock.now + 500)  # moved later
    engine.set(b"c", b"1", expire_at_ms=clock.now + 100)
    assert engine.set_expire_at(b"c", None)
    clock.now += 200
    assert engine.expire_due() == 0
    assert engine.get(b"a") == b"2"
    assert engine.get(b"b") == b"1"
    assert engine.get(b"c") == b"1"
    clock.now += 300
    assert engine.expire_due() == 1
    assert not engine.contains(b"b")


def test_keep_ttl(engine: MemoryEngine, clock: Clock) -> None:
    engine.set(b"a", b"1", expire_at_ms=clock.now + 100)
    engine.set(b"a", b"22", keep_ttl=True)
    assert engine.expire_at(b"a") == clock.now + 100
    assert engine.used_bytes == size(b"a", b"22", ttl=True)
    engine.set(b"new", b"1", keep_ttl=True)  # nothing to keep
    assert engine.expire_at(b"new") is None
    clock.now += 100
    assert engine.get(b"a") is None
    with pytest.raises(ValueError, match="mutually exclusive"):
        engine.set(b"a", b"1", expire_at_ms=clock.now + 1, keep_ttl=True)


def test_set_expire_at_semantics(engine: MemoryEngine, clock: Clock) -> None:
    assert engine.set_expire_at(b"missing", clock.now + 10) is False
    assert engine.set_expire_at(b"missing", None) is False
    engine.set(b"a", b"1")
    assert engine.set_expire_at(b"a", None) is True  # persist without TTL: still present
    assert engine.set_expire_at(b"a", clock.now + 10) is True
    assert engine.expire_at(b"a") == clock.now + 10
    assert engine.stats().expires == 1
    assert engine.set_expire_at(b"a", None) is True  # persist
    assert engine.expire_at(b"a") is None
    assert engine.stats().expires == 0
    assert engine.set_expire_at(b"a", clock.now) is True  # not in the future: deleted
    assert not engine.contains(b"a")
    assert engine.used_bytes == 0


def test_set_with_a_past_deadline_deletes(engine: MemoryEngine, clock: Clock) -> None:
    engine.set(b"a", b"1")
    engine.set(b"a", b"2", expire_at_ms=clock.now - 1)
    assert not engine.contains(b"a")
    engine.set(b"b", b"2", expire_at_ms=clock.now)
    assert len(engine) == 0
    assert engine.used_bytes == 0


def test_overwriting_an_expired_key_starts_fresh(engine: MemoryEngine, clock: Clock) -> None:
    engine.set(b"a", b"1", expire_at_ms=clock.now + 10)
    clock.now += 10
    engine.set(b"a", b"2", keep_ttl=True)  # the old TTL died with the old value
    assert engine.expire_at(b"a") is None
    assert engine.used_bytes == size(b"a", b"2")
    assert engine.stats().expirations == 1


def test_expiry_heap_stays_bounded(engine: MemoryEngine, clock: Clock) -> None:
    # Sliding expiration: the same keys get a new deadline on every request. The heap keeps
    # stale entries until a rebuild; it must not grow with the number of updates.
    for i in range(10):
        engine.set(b"s%d" % i, b"v")
    for n in range(50_000):
        assert engine.set_expire_at(b"s%d" % (n % 10), clock.now + 1000 + n)
    assert engine.stats().expires == 10
    assert len(engine._heap) <= 10 + 5 + 1024  # live + live/2 + slack (white-box check)
    clock.now += 10**6
    assert engine.expire_due() == 10
    assert engine.used_bytes == 0


# -- scan --------------------------------------------------------------------------------------


def test_scan_empty_store(engine: MemoryEngine) -> None:
    assert engine.scan(0) == (0, [])


def test_scan_returns_each_key_once_despite_reads(engine: MemoryEngine) -> None:
    keys = {b"key:%d" % i for i in range(1000)}
    for key in keys:
        engine.set(key, b"v")
    seen: list[bytes] = []
    cursor, batch = engine.scan(0, 7)
    while True:
        assert len(batch) <= 7
        seen += batch
        for key in list(keys)[:50]:  # reads between calls must not disturb the scan
            engine.get(key)
        if not cursor:
            break
        cursor, batch = engine.scan(cursor, 7)
    assert sorted(seen) == sorted(keys)


def test_scan_with_writes_and_deletes_during_it(engine: MemoryEngine) -> None:
    for i in range(300):
        engine.set(b"old:%d" % i, b"v")
    seen: list[bytes] = []
    deleted: set[bytes] = set()
    cursor, batch = engine.scan(0, 10)
    seen += batch
    n = 0
    while cursor:
        engine.set(b"new:%d" % n, b"v")  # added during the scan: not returned
        deleted.add(b"old:%d" % (299 - n))
        engine.delete(b"old:%d" % (299 - n))
        n += 1
        cursor, batch = engine.scan(cursor, 10)
        assert not deleted & set(batch)
        seen += batch
    assert len(seen) == len(set(seen))
    assert {b"old:%d" % i for i in range(300 - n)} <= set(seen)
    assert not any(key.startswith(b"new:") for key in seen)


def test_scan_match_and_count(engine: MemoryEngine) -> None:
    for i in range(100):
        engine.set(b"user:%d" % i, b"v")
        engine.set(b"item:%d" % i, b"v")
    seen: list[bytes] = []
    cursor = 0
    calls = 0
    while True:
        cursor, batch = engine.scan(cursor, 20, match=b"user:1?")
        seen += batch
        calls += 1
        if not cursor:
            break
    assert sorted(seen) == sorted(b"user:%d" % i for i in range(10, 20))
    assert calls == 10  # COUNT bounds the keys examined per call, matches or not


def test_scan_skips_expired_keys(engine: MemoryEngine, clock: Clock) -> None:
    engine.set(b"a", b"v", expire_at_ms=clock.now + 5)
    engine.set(b"b", b"v")
    clock.now += 5
    assert engine.scan(0, 100) == (0, [b"b"])


def test_more_concurrent_scans_than_snapshots_all_finish(engine: MemoryEngine) -> None:
    keys = {b"k%d" % i for i in range(100)}
    for key in keys:
        engine.set(key, b"v")
    scans = MAX_SCAN_SNAPSHOTS + 3
    cursors = [0] * scans
    seen: list[set[bytes]] = [set() for _ in range(scans)]
    done = [False] * scans
    calls = 0
    while not all(done):
        for i in range(scans):
            if not done[i]:
                cursors[i], batch = engine.scan(cursors[i], 5)
                seen[i].update(batch)
                done[i] = cursors[i] == 0
                # an insert between calls: no two scans can share a snapshot
                engine.set(b"extra%d" % calls, b"v")
                calls += 1
        assert calls < 5000, "round-robin scans keep evicting each other"
    for found in seen:
        assert keys <= found


def test_abandoned_scans_give_way(engine: MemoryEngine, clock: Clock) -> None:
    engine.set(b"a", b"v")
    engine.set(b"b", b"v")
    for i in range(MAX_SCAN_SNAPSHOTS):
        engine.scan(0, 1)  # abandoned after one step
        engine.set(b"x%d" % i, b"v")
    clock.now += 60_001
    cursor, first = engine.scan(0, 1)
    engine.set(b"late", b"v")
    rest = engine.scan(cursor, 100)
    assert rest[0] == 0  # its snapshot survived: no restart
    assert len(first) + len(rest[1]) == MAX_SCAN_SNAPSHOTS + 2


def test_scan_cursor_errors_and_unknown_cursors(engine: MemoryEngine) -> None:
    engine.set(b"a", b"v")
    with pytest.raises(EngineError, match="count"):
        engine.scan(0, 0)
    with pytest.raises(EngineError, match="cursor"):
        engine.scan(-1)
    assert engine.scan(123456789, 10) == (0, [b"a"])  # unknown cursor: restart, miss nothing


def test_flush_during_a_scan_restarts_it(engine: MemoryEngine) -> None:
    for i in range(20):
        engine.set(b"a%d" % i, b"v")
    cursor, _ = engine.scan(0, 5)
    engine.flush()
    engine.set(b"b", b"v")
    assert engine.scan(cursor, 5) == (0, [b"b"])


# -- MATCH patterns ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        (b"*", b"", True),
        (b"*", b"anything", True),
        (b"h?llo", b"hello", True),
        (b"h?llo", b"hllo", False),
        (b"h*llo", b"heeeello", True),
        (b"h[ae]llo", b"hallo", True),
        (b"h[ae]llo", b"hillo", False),
        (b"h[^e]llo", b"hallo", True),
        (b"h[^e]llo", b"hello", False),
        (b"h[a-b]llo", b"hbllo", True),
        (b"h[b-a]llo", b"hallo", True),  # reversed range
        (b"h\\*llo", b"h*llo", True),
        (b"h\\*llo", b"hello", False),
        (b"[\\]]", b"]", True),
        (b"[]", b"a", False),
        (b"[^]", b"a", True),
        (b"[abc", b"b", True),  # unterminated class runs to the end
        (b"a\\", b"a\\", True),  # trailing lone backslash is literal
        (b"*a*a*a*a*a*a*a*a*b", b"a" * 200, False),
        (b"a*b*c", b"aXbYbZc", True),
        (b"a*b*c", b"aXcYb", False),
        (b"user:*", b"user:\xff\x00\n", True),
        (b"ab*ba", b"aba", False),
    ],
)
def test_match_pattern_cases(pattern: bytes, key: bytes, expected: bool) -> None:
    assert match_pattern(pattern, key) is expected


def reference_match(pattern: bytes, key: bytes) -> bool:
    """Redis's glob semantics, written as a direct (exponential) recursion."""
    if not pattern:
        return not key
    c = pattern[0]
    if c == ord("*"):
        return any(reference_match(pattern[1:], key[i:]) for i in range(len(key) + 1))
    if not key:
        return False
    if c == ord("?"):
        return reference_match(pattern[1:], key[1:])
    if c == ord("["):
        j, negate, matched = 1, False, False
        if j < len(pattern) and pattern[j] == ord("^"):
            negate, j = True, j + 1
        while j < len(pattern):
            if pattern[j] == ord("\\") and j + 1 < len(pattern):
                matched |= pattern[j + 1] == key[0]
                j += 2
            elif pattern[j] == ord("]"):
                j += 1
                break
            elif j + 2 < len(pattern) and pattern[j + 1] == ord("-"):
                low, high = sorted((pattern[j], pattern[j + 2]))
                matched |= low <= key[0] <= high
                j += 3
            else:
                matched |= pattern[j] == key[0]
                j += 1
        return matched != negate and reference_match(pattern[j:], key[1:])
    if c == ord("\\") and len(pattern) >= 2:
        return pattern[1] == key[0] and reference_match(pattern[2:], key[1:])
    return c == key[0] and reference_match(pattern[1:], key[1:])


@settings(max_examples=2000, deadline=None)
@given(
    pattern=st.lists(st.sampled_from(list(b"ab*?[]^-\\")), max_size=8).map(bytes),
    key=st.lists(st.sampled_from(list(b"ab-]\\^")), max_size=8).map(bytes),
)
def test_match_pattern_agrees_with_reference(pattern: bytes, key: bytes) -> None:
    assert match_pattern(pattern, key) == reference_match(pattern, key)


# -- model-based -------------------------------------------------------------------------------

KEYS = st.sampled_from([b"a", b"b", b"c", b"", b"\x00", b"long" * 10])
VALUES = st.binary(max_size=40)


class EngineMatchesDict(RuleBasedStateMachine):
    """Without memory pressure the engine behaves exactly like a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = MemoryEngine(memory_limit=0)
        self.model: dict[bytes, bytes] = {}

    @rule(key=KEYS, value=VALUES)
    def set(self, key: bytes, value: bytes) -> None:
        self.engine.set(key, value)
        self.model[key] = value

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        assert self.engine.get(key) == self.model.get(key)

    @rule(key=KEYS)
    def peek(self, key: bytes) -> None:
        assert self.engine.peek(key) == self.model.get(key)
        assert self.engine.contains(key) == (key in self.model)

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        assert self.engine.delete(key) == (self.model.pop(key, None) is not None)

    @rule()
    def flush(self) -> None:
        self.engine.flush()
        self.model.clear()

    @invariant()
    def same_contents(self) -> None:
        assert len(self.engine) == len(self.model)
        assert sorted(all_keys(self.engine, 3)) == sorted(self.model)
        assert self.engine.used_bytes == sum(size(k, v) for k, v in self.model.items())


TestEngineMatchesDict = EngineMatchesDict.TestCase
TestEngineMatchesDict.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["set", "get", "delete", "ttl", "tick", "expire"]),
            st.integers(0, 30),
            st.integers(0, 600),
        ),
        max_size=150,
    )
)
def test_invariants_under_memory_pressure(ops: list[tuple[str, int, int]]) -> None:
    clock = Clock()
    engine = MemoryEngine(memory_limit=8 * ENTRY_OVERHEAD + 2000, clock_ms=clock)
    last: dict[bytes, bytes] = {}
    for op, k, n in ops:
        key = b"key%d" % k
        if op == "set":
            value = bytes([k]) * n
            ttl = clock.now + n if n % 3 == 0 else None
            engine.set(key, value, expire_at_ms=ttl)
            last[key] = value
            if ttl is None or ttl > clock.now:
                assert engine.peek(key) == value  # a write is never evicted by itself
        elif op == "get":
            found = engine.get(key)
            assert found is None or found == last[key]
        elif op == "delete":
            engine.delete(key)
        elif op == "ttl":
            engine.set_expire_at(key, clock.now + n if n else None)
        elif op == "tick":
            clock.now += n
        else:
            engine.expire_due(max_keys=n % 5 + 1)
        assert engine.used_bytes <= engine.memory_limit
        assert engine.used_bytes == held_bytes(engine)
        stats = engine.stats()
        assert stats.expires <= stats.keys == len(engine)


# -- real memory -------------------------------------------------------------------------------

RSS_PROBE = textwrap.dedent(
    """
    import json, sys
    from blinkstore_gunicorn.engine import MemoryEngine, tune_allocator

    limit, value_size, tune, reads = (int(a) for a in sys.argv[1:5])
    if tune:
        tune_allocator()

    def rss():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    engine = MemoryEngine(memory_limit=limit)
    base = peak = rss()
    payload = bytes(value_size - 8)
    for i in range(4 * limit // value_size):
        key = b"key:%d" % i
        engine.set(key, payload + i.to_bytes(8, "little"))
        if reads:
            engine.get(key)
        if i % 1024 == 0:
            peak = max(peak, rss())
    peak = max(peak, rss())
    print(json.dumps({"base": base, "peak": peak, "keys": len(engine),
                      "used": engine.used_bytes}))
    """
)


def rss_probe(limit: int, value_size: int, tune: bool, reads: bool) -> dict[str, int]:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RSS_PROBE,
            str(limit),
            str(value_size),
            str(int(tune)),
            str(int(reads)),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=ROOT,
        check=True,
    )
    figures: dict[str, int] = json.loads(result.stdout)
    growth = figures["peak"] - figures["base"]
    mib = 2**20
    print(
        f"limit {limit / mib:.0f} MiB, {value_size} B values, tune={tune}: {figures['keys']} "
        f"keys, RSS {figures['base'] / mib:.1f} -> {figures['peak'] / mib:.1f} MiB "
        f"(growth {growth / mib:.1f} MiB = {growth / limit:.2f}x the limit)"
    )
    return figures


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tune_allocator_applies_on_glibc() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from blinkstore_gunicorn.engine import tune_allocator as t; print(t())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    assert result.stdout.strip() == "True"


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="RSS is read from /proc/self/status"
)


@needs_proc
def test_rss_after_writing_four_times_the_limit_in_1kib_values() -> None:
    # The bar, without any allocator tuning: RSS within 1.5x the limit + 40 MB.
    limit = 64 * 2**20
    figures = rss_probe(limit, 1024, tune=False, reads=False)
    assert figures["used"] <= limit
    assert figures["peak"] <= 1.5 * limit + 40 * 10**6
    assert figures["peak"] - figures["base"] <= 1.25 * limit


@needs_proc
def test_accounting_is_honest_for_small_values_with_tuned_allocator() -> None:
    # Small entries are where the per-entry overhead dominates: the constant must cover it.
    limit = 32 * 2**20
    figures = rss_probe(limit, 100, tune=True, reads=True)
    assert figures["peak"] - figures["base"] <= 1.15 * limit + 4 * 2**20
