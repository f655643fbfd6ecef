"""Plain writes answered in C (``server/_fastcmd.c``): what ``test_fastcmd.py``'s differential
harness does not show by itself.

First, that the harness catches a C write that gets one side effect wrong: each test breaks
one (the change count WATCH and snapshots read, the memory account, the count of inserts: the
three the C code keeps in C integers and writes back once per command; the SIEVE mark of an
overwrite; the dict's handle, which the C code leaves alone when the region rewrote the value
in its block) after every write the C path answers, and the harness must fail. Then the writes
the C path answers without Python, the edges of the integer parser, and one test per case it
must hand over, each compared with the Python store's reply and state.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.engine.keyspace import Stored
from blinkstore_gunicorn.engine.memory import _HEAP_STALE_BYTES, TTL_OVERHEAD, _wall_clock_ms
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
from tests.unit.test_commands import Clock
from tests.unit.test_fastcmd import (
    MAX_KEY,
    MAX_VALUE,
    MEMORY_LIMIT,
    NUMBERS,
    REGION_MAX_VALUE,
    WRITES,
    Store,
    _c_path,  # noqa: F401 (autouse: skips without the helper)
    _check_hand_over,
    _run,
    side_by_side,
)
from tests.unit.test_shm_probes import _crafted, costs, shrink

Pair = tuple[Store, Store, Clock]


@pytest.fixture
def pair() -> Iterator[Pair]:
    with side_by_side() as stores:
        yield stores


#: A damage: the engine after a write the C path answered, the request, and what the dicts
#: held before it (key -> value).
Damage = Callable[[MemoryEngine, list[bytes], dict[bytes, Stored]], None]


def _written(args: list[bytes]) -> list[bytes]:
    return args[1::2] if args[0].upper() == b"MSET" else args[1:2]


def _forget_the_change(engine: MemoryEngine, args: list[bytes], held: dict[bytes, Stored]) -> None:
    engine.watched.changes -= 1


def _miscount_used(engine: MemoryEngine, args: list[bytes], held: dict[bytes, Stored]) -> None:
    engine._used += 1


def _miscount_inserts(engine: MemoryEngine, args: list[bytes], held: dict[bytes, Stored]) -> None:
    engine._inserts += 1


def _no_mark_on_overwrite(
    engine: MemoryEngine, args: list[bytes], held: dict[bytes, Stored]
) -> None:
    for key in held.keys() & _written(args):
        engine._visited.discard(key)


def _keep_the_old_handle(
    engine: MemoryEngine, args: list[bytes], held: dict[bytes, Stored]
) -> None:
    # A dict entry left as it was although the value moved to another block (or to the heap).
    for key in held.keys() & _written(args):
        holder = engine._ahead if key in engine._ahead else engine._behind
        old = held[key]
        if key in holder and isinstance(old, int):
            holder[key] = old


def _no_deadline_in_the_region(
    engine: MemoryEngine, args: list[bytes], held: dict[bytes, Stored]
) -> None:
    key, region = args[1], engine.region
    if key in engine._deadlines and region is not None and args[0].upper() != b"MSET":
        handle = engine._ahead.get(key) or engine._behind.get(key)
        region.set_expire(key, handle if isinstance(handle, int) else 0, 0)


@pytest.mark.parametrize(
    "damage",
    [
        _forget_the_change,
        _miscount_used,
        _miscount_inserts,
        _no_mark_on_overwrite,
        _keep_the_old_handle,
        _no_deadline_in_the_region,
    ],
)
def test_the_harness_catches_a_broken_side_effect(pair: Pair, damage: Damage) -> None:
    c, python, _ = pair
    execute = c.execute

    def broken(d: Dispatcher, client: Client, args: Any) -> bytes:
        held = {**c.engine._behind, **c.engine._ahead}
        before = c.fallbacks
        reply = execute(d, client, args)
        if c.fallbacks == before and args[0].upper() in WRITES:
            damage(c.engine, args, held)
        return reply

    c.execute = broken
    with pytest.raises(AssertionError):
        _run(c, python, 0, 1500)


def _check_answered(pair: Pair, *args: bytes | str) -> bytes:
    """Run ``args`` on both stores: the C store answers it itself; same reply and state."""
    c, python, _ = pair
    before = c.fallbacks
    reply = c(*args)
    assert c.fallbacks == before, "handed over"
    assert reply == python(*args)
    assert c.state() == python.state()
    return reply


def _both(pair: Pair, *args: bytes | str) -> bytes:
    c, python, _ = pair
    reply = c(*args)
    assert reply == python(*args)
    return reply


def test_plain_writes_never_reach_python(pair: Pair) -> None:
    c, _, _ = pair
    assert _check_answered(pair, "SET", "k", "v") == b"+OK\r\n"
    assert _check_answered(pair, "set", "k", "w" * REGION_MAX_VALUE) == b"+OK\r\n"  # overwrite
    assert _check_answered(pair, "SET", "", "") == b"+OK\r\n"  # the region holds no empty key
    assert _check_answered(pair, "INCR", "n") == b":1\r\n"
    assert _check_answered(pair, "INCRBY", "n", "41") == b":42\r\n"
    assert _check_answered(pair, "DECR", "n") == b":41\r\n"
    assert _check_answered(pair, "DECRBY", "n", "-9") == b":50\r\n"
    assert _check_answered(pair, "MSET", "a", "1", "b", "2", "a", "3") == b"+OK\r\n"
    assert _check_answered(pair, "INCR", "a") == b":4\r\n"  # the later value won
    assert _check_answered(pair, "GET", "a") == b"$1\r\n4\r\n"
    assert c.client.cmd == b"GET"
    assert c.engine.stats().keys == 5
    assert isinstance(c.engine._ahead[b"n"], int)  # the counter is in the region


def test_a_long_mset_with_repeated_keys_never_reaches_python(pair: Pair) -> None:
    """More pairs than MSET's table of keys holds inline (16), keys named up to four times:
    each pair's write finds its key's earlier pair, as _store_all's writes do."""
    keys = [f"k{i % 23}" for i in range(70)]
    for size in (3, 40, 3):  # new keys, then overwrites that move blocks, then again
        args = [x for i, key in enumerate(keys) for x in (key, f"{i}".ljust(size, "v"))]
        assert _check_answered(pair, "MSET", *args) == b"+OK\r\n"
    c, _, _ = pair
    assert c("MGET", "k0", "k22") == b"*2\r\n$3\r\n69v\r\n$3\r\n68v\r\n"


def test_a_handed_over_mset_keeps_no_reference(pair: Pair) -> None:
    """MSET plans every pair before its first write, holding each old value: a pair found
    plain is let go when a later one sends the request to Python (watched, of another type)."""
    c, _, _ = pair
    _both(pair, "MSET", "a", "1", "b", "2")
    _both(pair, "HSET", "h", "f", "v")
    _both(pair, "WATCH", "w")
    handles = [c.engine._ahead[b"a"], c.engine._ahead[b"b"]]
    counts = [sys.getrefcount(handle) for handle in handles]
    _check_hand_over(pair, "MSET", "a", "3", "b", "4", "h", "5")  # found late: another type
    _check_hand_over(pair, "MSET", "a", "5", "b", "6", "w", "7")  # found early: watched
    assert [c.engine._ahead[b"a"], c.engine._ahead[b"b"]] == handles  # rewritten in place
    assert [sys.getrefcount(handle) for handle in handles] == counts


def test_the_integer_parser_is_parse_ints(pair: Pair) -> None:
    for text in NUMBERS:
        _both(pair, "SET", "n", text)
        _both(pair, "INCR", "n")
        _both(pair, "SET", "n", "7")
        for name in ("INCRBY", "DECRBY"):
            _both(pair, name, "n", text)
        c, python, _ = pair
        assert c.state() == python.state(), text
    _both(pair, "SET", "n", "-0")
    assert _check_answered(pair, "DECR", "n") == b":-1\r\n"


@pytest.mark.parametrize(
    ("value", "command"),
    [
        ("x", ("INCR", "n")),  # not an integer
        ("9223372036854775807", ("INCR", "n")),  # overflow
        ("-9223372036854775808", ("DECR", "n")),
        ("1", ("INCRBY", "n", "9223372036854775807")),
        ("1", ("INCRBY", "n", "1.5")),  # the increment is no integer
        ("1", ("DECRBY", "n", "-9223372036854775808")),  # its negation overflows
    ],
)
def test_a_counter_error_is_handed_over(pair: Pair, value: str, command: tuple[str, ...]) -> None:
    _both(pair, "SET", "n", value)
    assert _check_hand_over(pair, *command).startswith(b"-ERR")


def test_a_counter_keeps_its_deadline_in_c(pair: Pair) -> None:
    # The rate-limit scripts' counters: INCR keeps the TTL, in the engine and the region.
    c, _, clock = pair
    # What the region's readers compare deadlines with (an hour: the test may be paused).
    clock.now = _wall_clock_ms()
    _both(pair, "SET", "t", "1", "PX", "3600000")
    assert _check_answered(pair, "INCR", "t") == b":2\r\n"
    assert _check_answered(pair, "INCRBY", "t", "40") == b":42\r\n"
    assert c.engine._deadlines[b"t"] == clock.now + 3_600_000
    assert c.region_contents([b"t"]) == [(b"42", clock.now + 3_600_000)]
    assert _check_hand_over(pair, "INCR", "t", "x").startswith(b"-ERR wrong number")
    clock.now += 3_600_000  # due: the Python path expires it first
    assert _check_hand_over(pair, "INCR", "t") == b":1\r\n"
    assert c.engine.stats().expirations == 1


def test_a_key_with_a_deadline_is_handed_over(pair: Pair) -> None:
    _both(pair, "SET", "t", "1", "PX", "100")
    assert _check_hand_over(pair, "SET", "t", "v") == b"+OK\r\n"  # SET drops the TTL
    _both(pair, "SET", "t", "1", "PX", "100")
    assert _check_hand_over(pair, "MSET", "a", "1", "t", "2") == b"+OK\r\n"


def test_a_watched_key_is_handed_over(pair: Pair) -> None:
    _both(pair, "WATCH", "k")
    _check_hand_over(pair, "SET", "k", "v")
    _check_hand_over(pair, "INCR", "k")
    _check_hand_over(pair, "MSET", "other", "1", "k", "2")
    _both(pair, "UNWATCH")
    assert _check_answered(pair, "SET", "k", "v") == b"+OK\r\n"


def test_a_leased_key_is_handed_over(pair: Pair) -> None:
    for store in pair[:2]:
        assert store("BS.LEASE", "k", "1000", client=store.other) == b":1\r\n"
    assert _check_hand_over(pair, "SET", "k", "v") == b"+OK\r\n"  # the value ends the lease
    assert not pair[0].d.leases
    assert _check_answered(pair, "SET", "k", "w") == b"+OK\r\n"
    for store in pair[:2]:
        store("BS.LEASE", "n", "1000", client=store.other)
    _check_hand_over(pair, "INCR", "n")
    for store in pair[:2]:
        store("BS.LEASE", "m", "1000", client=store.other)
    _check_hand_over(pair, "MSET", "a", "1", "m", "2")


def test_a_key_of_another_type_is_replaced_in_python(pair: Pair) -> None:
    _both(pair, "HSET", "h", "f", "v")
    _both(pair, "HSET", "g", "f", "v")
    assert _check_hand_over(pair, "INCR", "h").startswith(b"-WRONGTYPE")
    assert _check_hand_over(pair, "SET", "h", "v") == b"+OK\r\n"
    assert _check_hand_over(pair, "MSET", "a", "1", "g", "2") == b"+OK\r\n"


def test_sizes_over_a_limit_are_handed_over(pair: Pair) -> None:
    big = "x" * (MAX_KEY + 1)
    assert _check_hand_over(pair, "SET", big, "v").startswith(b"-ERR key too large")
    assert _check_hand_over(pair, "INCR", big).startswith(b"-ERR key too large")
    assert _check_hand_over(pair, "SET", "k", "v" * (MAX_VALUE + 1)).startswith(b"-ERR value")
    assert _check_hand_over(pair, "MSET", "a", "1", big, "2").startswith(b"-ERR key too large")
    # Over the region's max_value (and the MSET holding one): held as bytes, in Python.
    assert _check_hand_over(pair, "SET", "k", "v" * (REGION_MAX_VALUE + 1)) == b"+OK\r\n"
    assert _check_hand_over(pair, "MSET", "k", "1", "j", "v" * (REGION_MAX_VALUE + 1))
    assert _check_answered(pair, "SET", "k", "v" * REGION_MAX_VALUE) == b"+OK\r\n"


def test_a_write_that_needs_eviction_is_handed_over(pair: Pair) -> None:
    c, _, _ = pair
    value = "v" * REGION_MAX_VALUE
    i = 0
    while c.engine.used_bytes + 2000 < MEMORY_LIMIT:
        _check_answered(pair, "SET", f"k{i}", value)
        i += 1
    _check_hand_over(pair, "MSET", "a", value, "b", value, "c", value, "d", value)
    while c.engine.stats().evictions == 0:
        _check_hand_over(pair, "SET", f"k{i}", value)
        i += 1
    # Overwrites free what they replace: answered in C, even at the limit.
    assert _check_answered(pair, "SET", f"k{i - 1}", "w") == b"+OK\r\n"
    assert _check_answered(pair, "MSET", f"k{i - 1}", value, f"k{i - 1}", "v") == b"+OK\r\n"


def test_an_entry_over_the_memory_limit_is_handed_over() -> None:
    with side_by_side(memory_limit=800) as small:
        assert _check_hand_over(small, "SET", "k", "v" * 500).startswith(b"-ERR value too large")
        assert _check_answered(small, "SET", "k", "v" * 10) == b"+OK\r\n"


def test_other_arities_are_handed_over(pair: Pair) -> None:
    assert _check_hand_over(pair, "MSET", "a", "1", "b").startswith(b"-ERR wrong number")
    assert _check_hand_over(pair, "SET", "k").startswith(b"-ERR wrong number")
    assert _check_hand_over(pair, "INCR", "k", "1").startswith(b"-ERR wrong number")
    assert _check_hand_over(pair, "INCRBY", "k").startswith(b"-ERR wrong number")
    assert _check_hand_over(pair, "SET", "k", "v", "NX") == b"+OK\r\n"


def test_a_full_region_refuses_as_python_does() -> None:
    """The region's table is full (RegionFull, unlimited memory): the C path's reply and the
    engine it leaves are Python's, for SET and in the middle of an MSET. A refused write
    changes nothing (the account, WATCH's count), and the keys the region holds out of the
    table (piled on one home) are still overwritten, never refused (issue 23)."""
    with side_by_side(memory_limit=0) as unlimited:
        _fill_the_region(unlimited)


def _fill_the_region(pair: Pair) -> None:
    c, python, _ = pair
    for store in (c, python):
        assert store.engine.region is not None
        shrink(store.engine.region)
    region = c.engine.region
    assert region is not None
    piled = _crafted(region)
    for key in piled:
        _both(pair, "SET", key, "v")
    assert region._far
    refused = 0
    for i in range(0, 900, 3):
        before = c.fallbacks
        changes = c.engine.watched.changes
        reply = _both(pair, "SET", f"k{i}", "v")
        if reply.startswith(b"-"):
            assert c.engine.watched.changes == changes
        reply += _both(pair, "MSET", f"k{i + 1}", "v", f"k{i + 2}", "w", f"k{i}", "x")
        assert c.fallbacks == before
        refused += reply.count(b"-ERR value too large: the shared-memory table is full")
        assert c.state() == python.state(), i
        assert c.engine.used_bytes == costs(c.engine), i
    assert refused
    for key in piled:
        assert _both(pair, "SET", key, "w" * REGION_MAX_VALUE) == b"+OK\r\n"
        assert _both(pair, "MSET", key, "v", key, "w" * (REGION_MAX_VALUE + 1)) == b"+OK\r\n"
        assert c.state() == python.state(), key
        assert c.engine.used_bytes == costs(c.engine), key


def test_a_plain_expire_is_answered_in_c(pair: Pair) -> None:
    c, _, clock = pair
    clock.now = _wall_clock_ms()
    assert _check_answered(pair, "EXPIRE", "missing", "3600") == b":0\r\n"
    _both(pair, "SET", "k", "v")
    _both(pair, "SET", "big", "v" * (REGION_MAX_VALUE + 1))  # no block: an "ask" entry
    assert _check_answered(pair, "EXPIRE", "k", "3600") == b":1\r\n"
    assert _check_answered(pair, "expire", "big", "3600") == b":1\r\n"
    assert c.region_contents([b"k"]) == [(b"v", clock.now + 3_600_000)]
    assert _check_answered(pair, "EXPIRE", "k", "3600") == b":1\r\n"  # the same deadline
    clock.now += 5
    assert _check_answered(pair, "PEXPIRE", "k", "1800000") == b":1\r\n"  # a stale heap entry
    assert _check_answered(pair, "pexpire", "big", "9000000000000000000") == b":1\r\n"
    assert c.engine._deadlines == {b"k": clock.now + 1_800_000, b"big": clock.now + 9 * 10**18}
    assert c.engine._heap_stale_bytes == len(b"k") + len(b"big")
    assert c.region_contents([b"k"]) == [(b"v", clock.now + 1_800_000)]
    clock.now += 1_800_000
    assert _check_hand_over(pair, "EXPIRE", "k", "3600") == b":0\r\n"  # due: expired first
    assert c.engine.stats().expirations == 1


@pytest.mark.parametrize(
    "args",
    [
        ("EXPIRE", "k", "0"),  # a deadline not in the future deletes the key
        ("PEXPIRE", "k", "-5"),
        ("EXPIRE", "k", "x"),
        ("EXPIRE", "k", "9223372036854776"),  # over Redis's bound
        ("PEXPIRE", "k", "9223372036854775807"),  # the deadline overflows
        ("EXPIRE", "k", "10", "NX"),
        ("EXPIRE", "k", "10", "GT"),
        ("EXPIRE", "h", "10"),  # another type
        ("EXPIRE", "w", "10"),  # watched
    ],
)
def test_an_unusual_expire_is_handed_over(pair: Pair, args: tuple[str, ...]) -> None:
    _both(pair, "SET", "k", "v", "PX", "100")
    _both(pair, "HSET", "h", "f", "v")
    _both(pair, "SET", "w", "v")
    _both(pair, "WATCH", "w")
    _check_hand_over(pair, *args)


def test_an_expire_that_needs_eviction_or_a_heap_rebuild_is_handed_over() -> None:
    with side_by_side(memory_limit=1000) as small:
        c, _, _ = small
        _both(small, "SET", "k", "v" * 300)
        assert c.engine.used_bytes + TTL_OVERHEAD > 1000
        assert _check_hand_over(small, "EXPIRE", "k", "10") == b":1\r\n"
    with side_by_side() as pair:
        c, _, _ = pair
        _both(pair, "SET", "k", "v", "EX", "100")
        for store in pair[:2]:
            store.engine._heap_stale_bytes = _HEAP_STALE_BYTES
        _check_hand_over(pair, "EXPIRE", "k", "50")
        assert c.engine._heap_stale_bytes == 0  # rebuilt, in Python
        assert _check_answered(pair, "EXPIRE", "k", "60") == b":1\r\n"
