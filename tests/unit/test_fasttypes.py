"""The data-type commands answered in C (``server/_fasttypes.c``) against the Python dispatcher.

``test_fastcmd.py``'s two stores get seeded random traffic that mixes the string commands with
LPUSH, RPUSH, LPOP, RPOP, LRANGE, SADD, SPOP, HSET, ZADD, ZPOPMIN and what the C path must
hand over around them (blocking pops parked on the keys, WATCH, TTLs, DEL, RENAME, wrong types,
a memory limit small enough to evict): the same replies, and the same state after every
command, each container's contents, cost and list width included. Then, that the harness
catches a C path that gets one side effect wrong (one breakage per kind of side effect), and
one test per case the C path must answer or hand over.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from blinkstore_gunicorn.engine import MemoryEngine, sets
from blinkstore_gunicorn.engine.lists import List
from blinkstore_gunicorn.engine.typed import Container
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.blocking import BlockedPops
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
from blinkstore_gunicorn.shm.reader import FALLBACK
from tests.unit.test_commands import Clock
from tests.unit.test_fastcmd import (
    MAX_KEY,
    MAX_VALUE,
    Store,
    _c_path,  # noqa: F401 (autouse: skips without the helper)
    _check_hand_over,
    _command,
    _run,
    side_by_side,
)
from tests.unit.test_fastcmd_writes import _check_answered

Pair = tuple[Store, Store, Clock]

#: The commands the C path answers (in some of their cases).
TYPED = (
    b"LPUSH", b"RPUSH", b"LPOP", b"RPOP", b"LRANGE", b"SADD", b"HSET", b"SPOP", b"ZADD",
    b"ZPOPMIN",
)  # fmt: skip
WRITES = {b"LPUSH", b"RPUSH", b"LPOP", b"RPOP", b"SADD", b"HSET"}


@pytest.fixture(autouse=True)
def _first_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPOP takes the first members in the set's order (both stores draw from one RNG, each
    call a new draw): the two stores' picks then match when their sets' orders do."""

    class First:
        @staticmethod
        def sample(population: list[bytes], k: int) -> list[bytes]:
            return population[:k]

    monkeypatch.setattr(sets, "random", First)


@pytest.fixture
def pair() -> Iterator[Pair]:
    with side_by_side() as stores:
        yield stores


def _element(rng: random.Random) -> bytes:
    """Mostly short elements of a few widths (List.width matters), some of any size up to and
    over the value size limit and resp.LARGE_BULK."""
    roll = rng.random()
    if roll < 0.85:
        return rng.choice([b"a", b"b", b"cc", b"dd", b"eee", b"\r\n", b""])
    if roll < 0.95:
        return rng.randbytes(rng.randrange(0, 600))
    return b"x" * rng.randrange(resp.LARGE_BULK - 2, MAX_VALUE + 3)


def _index(rng: random.Random) -> bytes:
    return rng.choice([b"%d" % rng.randrange(-12, 12), b"0", b"-1", b"x", b"1.0", b"99999"])


def _typed(rng: random.Random, keys: list[bytes]) -> list[bytes]:
    """One data-type request, now and then of a shape the handler refuses. Each type has keys
    of its own in ``keys``, and one in ten requests goes to any of them (WRONGTYPE)."""
    roll = rng.random()
    mine = {0.52: keys[:3], 0.7: keys[3:5], 0.82: keys[5:6], 0.95: keys[6:8], 1: keys[:3]}
    key = rng.choice(next(own for top, own in mine.items() if roll < top))
    if rng.random() < 0.1:
        key = rng.choice(keys[:8])
    if roll < 0.2:  # about as many items pushed as popped: lists empty, pops park
        name = rng.choice([b"LPUSH", b"RPUSH", b"lpush", b"rpush"])
        return [name, key, *(_element(rng) for _ in range(rng.choice([1, 1, 1, 1, 2])))]
    if roll < 0.45:
        tail = [b"%d" % rng.randrange(0, 3)] if rng.random() < 0.1 else []
        return [rng.choice([b"LPOP", b"RPOP", b"lpop"]), key, *tail]
    if roll < 0.52:
        return [rng.choice([b"LRANGE", b"lrange"]), key, _index(rng), _index(rng)]
    if roll < 0.63:
        members = rng.choices([b"m1", b"m2", b"m3", b"m4", b"", b"\x00"], k=rng.choice([1, 1, 3]))
        if rng.random() < 0.03:
            members.append(b"z" * (MAX_KEY + 1))
        return [rng.choice([b"SADD", b"sadd"]), key, *members]
    if roll < 0.7:
        return [b"SPOP", key] if rng.random() < 0.9 else [b"SPOP", key, b"2"]
    if roll < 0.82:
        pairs = [b"f", _element(rng)] if rng.random() < 0.7 else [b"g", b"1", b"f", b"22"]
        return [
            rng.choice([b"HSET", b"hset"]),
            key,
            *(pairs if rng.random() < 0.97 else pairs[:-1]),
        ]
    if roll < 0.92:
        others = [b"2", b"-1", b"1.5", b"NX", b"0001"]
        score = b"1" if rng.random() < 0.8 else rng.choice(others)  # mostly no change: C's
        return [b"ZADD", key, score, rng.choice([b"m1", b"m2"])]
    if roll < 0.95:  # mostly absent keys: the one sorted set popped is keys[7]
        return [b"ZPOPMIN", rng.choice(keys[7:10])]
    return [rng.choice([b"BLPOP", b"BRPOP", b"BZPOPMIN"]), key, b"0"]


def _mixed(rng: random.Random, keys: list[bytes], clock: Clock) -> list[bytes] | None:
    """test_fastcmd's traffic, half of it data-type requests on a few keys, and RENAMEs."""
    roll = rng.random()
    if roll < 0.5:
        return _typed(rng, keys)
    if roll < 0.52:
        return [b"RENAME", rng.choice(keys[:8]), rng.choice(keys[:10])]
    if roll < 0.53:  # a list that only grows: the memory limit is reached, keys are evicted
        return [b"RPUSH", keys[8], b"x" * 4096]
    return _command(rng, keys, clock)


@pytest.mark.parametrize("region", [True, False], ids=["region", "no-region"])
@pytest.mark.parametrize("seed", range(4))
def test_c_and_python_give_the_same_replies_and_state(seed: int, region: bool) -> None:
    with side_by_side(region=region) as (c, python, _):
        answered = _run(c, python, seed, 1500, _mixed)
        stats = c.engine.stats()
        assert stats.evictions and stats.expirations
        # Each command both ways: answered in C and handed over.
        for name in TYPED:
            assert answered.get((name, True)) and answered.get((name, False)), name
        assert c.delivered, "no parked pop was served"


# -- the harness catches a wrong side effect ------------------------------------------------

#: Breaks one side effect of a write the C store answered (``counted``: it moved the change
#: count).
Damage = Callable[[Store, list[bytes], bool], None]


def _container(store: Store, key: bytes) -> Container | None:
    """The key's container (None: a pop of an absent key, which C answers too)."""
    found = store.engine._ahead.get(key) or store.engine._behind.get(key)
    return found if isinstance(found, Container) else None


def _miscount_cost(store: Store, args: list[bytes], counted: bool) -> None:
    found = _container(store, args[1])
    if found is not None:
        found.cost += 1


def _lose_the_width(store: Store, args: list[bytes], counted: bool) -> None:
    found = _container(store, args[1])
    if isinstance(found, List) and found.width >= 0:
        found.width = -1


def _no_mark(store: Store, args: list[bytes], counted: bool) -> None:
    store.engine._visited.discard(args[1])


def _forget_the_change(store: Store, args: list[bytes], counted: bool) -> None:
    if counted:  # it moves only while some key is watched
        store.engine.watched.changes -= 1


def _damaged(c: Store, damage: Damage) -> None:
    """Make ``damage`` after every write the C store answers on a key it still holds."""
    execute = c.execute

    def broken(d: Dispatcher, client: Client, args: Any) -> bytes:
        before, changes = c.fallbacks, c.engine.watched.changes
        reply = execute(d, client, args)
        if c.fallbacks == before and args[0].upper() in WRITES:
            damage(c, args, c.engine.watched.changes != changes)
        return reply

    c.execute = broken


def _blind(c: Store, hide: Callable[[Dispatcher], Callable[[], None]]) -> None:
    """Run every request of the C store with what ``hide`` hides from it (``hide`` returns
    what puts it back): the C path then answers what it should have handed over."""
    execute = c.execute

    def broken(d: Dispatcher, client: Client, args: Any) -> bytes:
        restore = hide(d)
        try:
            return execute(d, client, args)
        finally:
            restore()

    c.execute = broken


def _hide_the_parked(d: Dispatcher) -> Callable[[], None]:
    blocked, d.blocked = d.blocked, BlockedPops()

    def restore() -> None:
        d.blocked = blocked

    return restore


def _hide_the_limit(d: Dispatcher) -> Callable[[], None]:
    engine = d.engine
    assert isinstance(engine, MemoryEngine)
    limit, engine._memory_limit = engine._memory_limit, 0

    def restore() -> None:
        engine._memory_limit = limit

    return restore


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: _damaged(c, _miscount_cost),
        lambda c: _damaged(c, _lose_the_width),
        lambda c: _damaged(c, _no_mark),
        lambda c: _damaged(c, _forget_the_change),
        lambda c: _blind(c, _hide_the_parked),
        lambda c: _blind(c, _hide_the_limit),
    ],
    ids=["cost", "width", "sieve-mark", "watch-count", "parked-pop", "memory-limit"],
)
def test_the_harness_catches_a_broken_side_effect(
    pair: Pair, breakage: Callable[[Store], None]
) -> None:
    c, python, _ = pair
    breakage(c)
    with pytest.raises(AssertionError):
        for seed in range(4):
            _run(c, python, seed, 1500, _mixed)


# -- what the C path answers, and what it hands over ---------------------------------------


def _both(pair: Pair, *args: bytes | str) -> bytes:
    c, python, _ = pair
    reply = c(*args)
    assert reply == python(*args)
    return reply


def _fill(pair: Pair) -> None:
    """A list, a set, a hash and a sorted set, made by Python (a new key is its)."""
    assert _check_hand_over(pair, "RPUSH", "l", "a", "b", "c") == b":3\r\n"
    assert _check_hand_over(pair, "SADD", "s", "x", "y") == b":2\r\n"
    assert _check_hand_over(pair, "HSET", "h", "f", "v") == b":1\r\n"
    assert _check_hand_over(pair, "ZADD", "z", "1", "m") == b":1\r\n"


def test_plain_requests_never_reach_python(pair: Pair) -> None:
    c, _, _ = pair
    _fill(pair)
    assert _check_answered(pair, "LPUSH", "l", "x", "yy") == b":5\r\n"
    assert _check_answered(pair, "rpush", "l", "z") == b":6\r\n"
    assert _check_answered(pair, "LRANGE", "l", "0", "-1") == (
        b"*6\r\n$2\r\nyy\r\n$1\r\nx\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nz\r\n"
    )
    assert _check_answered(pair, "LPOP", "l") == b"$2\r\nyy\r\n"
    assert _check_answered(pair, "RPOP", "l") == b"$1\r\nz\r\n"
    assert _check_answered(pair, "LRANGE", "l", "-2", "99") == b"*2\r\n$1\r\nb\r\n$1\r\nc\r\n"
    assert _check_answered(pair, "LRANGE", "l", "5", "9") == b"*0\r\n"
    assert _check_answered(pair, "SADD", "s", "y", "w", "w") == b":1\r\n"
    assert _check_answered(pair, "SADD", "s", "x") == b":0\r\n"
    assert _check_answered(pair, "HSET", "h", "f", "longer", "g", "1") == b":1\r\n"
    assert _check_answered(pair, "ZADD", "z", "1", "m") == b":0\r\n"
    for name in ("LPOP", "RPOP", "SPOP"):
        assert _check_answered(pair, name, "absent") == b"$-1\r\n"
    assert _check_answered(pair, "ZPOPMIN", "absent") == b"*0\r\n"
    assert _check_answered(pair, "LRANGE", "absent", "0", "-1") == b"*0\r\n"
    assert c.client.cmd == b"LRANGE"


def test_creating_or_emptying_a_key_is_handed_over(pair: Pair) -> None:
    c, _, _ = pair
    _fill(pair)  # each new key made by Python, its region entry 'ask the store'
    assert c.state([b"l", b"s"])["region"] == [(FALLBACK, FALLBACK)] * 2  # 'ask the store'
    assert _both(pair, "GET", "l").startswith(b"-WRONGTYPE")
    assert _check_answered(pair, "LPOP", "l") == b"$1\r\na\r\n"
    assert _check_answered(pair, "LPOP", "l") == b"$1\r\nb\r\n"
    assert _check_hand_over(pair, "RPOP", "l") == b"$1\r\nc\r\n"  # the last item: the key goes
    assert not c.engine.contains(b"l")
    assert _check_hand_over(pair, "SPOP", "s") in (
        b"$1\r\nx\r\n",
        b"$1\r\ny\r\n",
    )  # a pick: Python's
    assert _check_hand_over(pair, "ZPOPMIN", "z") == b"*2\r\n$1\r\nm\r\n$1\r\n1\r\n"


def test_another_type_or_a_deadline_is_handed_over(pair: Pair) -> None:
    _fill(pair)
    _both(pair, "SET", "str", "v")
    for args in (
        ("LPUSH", "str", "x"),
        ("LPOP", "s"),
        ("SADD", "l", "x"),
        ("HSET", "z", "f", "v"),
        ("LRANGE", "h", "0", "1"),
        ("SPOP", "l"),
        ("ZPOPMIN", "str"),
        ("ZADD", "s", "1", "m"),
    ):
        assert _check_hand_over(pair, *args).startswith(b"-WRONGTYPE"), args
    _both(pair, "EXPIRE", "l", "100")
    assert _check_hand_over(pair, "RPUSH", "l", "x") == b":4\r\n"
    assert _check_hand_over(pair, "LRANGE", "l", "0", "0") == b"*1\r\n$1\r\na\r\n"
    _both(pair, "PERSIST", "l")
    assert _check_answered(pair, "RPUSH", "l", "y") == b":5\r\n"


def test_a_watched_key_is_handed_over(pair: Pair) -> None:
    c, _, _ = pair
    _fill(pair)
    _both(pair, "WATCH", "l", "s", "h")
    _check_hand_over(pair, "LPUSH", "l", "x")
    _check_hand_over(pair, "LPOP", "l")
    _check_hand_over(pair, "SADD", "s", "new")
    _check_hand_over(pair, "HSET", "h", "f", "w")
    # Another key while some are watched: answered, the change counted.
    _both(pair, "RPUSH", "other", "1", "2")
    changes = c.engine.watched.changes
    assert _check_answered(pair, "RPUSH", "other", "3") == b":3\r\n"
    assert c.engine.watched.changes == changes + 1
    assert _check_answered(pair, "LRANGE", "l", "0", "0") == b"*1\r\n$1\r\na\r\n"  # a read


def test_a_push_onto_a_key_a_client_is_parked_on_is_handed_over(pair: Pair) -> None:
    c, python, _ = pair
    _fill(pair)

    def park(*args: str) -> None:
        replies = []
        for store in (c, python):
            client = store.d.new_client()
            client.deliver = store.delivered.append
            replies.append(store(*args, client=client))
        assert replies[0] == replies[1]

    park("BLPOP", "q", "0")
    _both(pair, "RPUSH", "q", "1", "2")  # made in Python, which serves the parked pop
    assert c.delivered == python.delivered == [b"*2\r\n$1\r\nq\r\n$1\r\n1\r\n"]
    assert _check_answered(pair, "RPUSH", "q", "3") == b":2\r\n"  # none parked on q now
    park("BZPOPMIN", "q2", "0")  # waits for a sorted set
    _both(pair, "RPUSH", "q2", "x")  # a list: the pop stays parked, on a key with items
    assert _check_hand_over(pair, "RPUSH", "q2", "y") == b":2\r\n"
    park("BLPOP", "elsewhere", "0")
    assert _check_answered(pair, "LPUSH", "l", "z") == b":4\r\n"
    assert len(c.d.blocked) == 2


def test_a_write_that_may_evict_is_handed_over() -> None:
    with side_by_side(memory_limit=8 * 1024) as (c, python, clock):
        pair = (c, python, clock)
        _check_hand_over(pair, "RPUSH", "l", "a")
        i = 0
        while c.engine.used_bytes + 2 * 1024 < 8 * 1024:
            _both(pair, "SET", f"k{i}", "v" * 300)
            i += 1
        assert _check_answered(pair, "RPUSH", "l", "b") == b":2\r\n"
        assert _check_hand_over(pair, "RPUSH", "l", "x" * 2048) == b":3\r\n"  # evicts
        assert c.engine.stats().evictions


def test_sizes_and_shapes_the_handler_refuses_are_handed_over(pair: Pair) -> None:
    _fill(pair)
    big_key = "k" * (MAX_KEY + 1)
    for args in (
        ("LPUSH", "l", "v" * (MAX_VALUE + 1)),
        ("SADD", "s", big_key),
        ("HSET", "h", big_key, "v"),
        ("HSET", "h", "f", "v" * (MAX_VALUE + 1)),
        ("HSET", "h", "f", "v", "g"),
        ("LPOP", "l", "x"),
        ("LRANGE", "l", "0", "x"),
        ("LRANGE", "l", "01", "1"),
        ("SPOP", "s", "-1"),
        ("ZADD", "z", "x", "m"),
        ("ZADD", "z", "1", big_key),
        ("ZPOPMIN", "z", "x"),
    ):
        assert _check_hand_over(pair, *args).startswith(b"-"), args
    # Valid, but not the plain case: a count, a new member or score, a random pick.
    for args in (
        ("LPOP", "l", "1"),
        ("ZADD", "z", "NX", "1", "m"),
        ("ZADD", "z", "2", "m"),
        ("ZADD", "z", "1.5", "m"),
        ("ZADD", "z", "1", "n"),
    ):
        assert not _check_hand_over(pair, *args).startswith(b"-"), args
    assert _check_hand_over(pair, "SPOP", "s") in (b"$1\r\nx\r\n", b"$1\r\ny\r\n")


def test_a_reply_the_python_path_words_or_shares_is_handed_over(pair: Pair) -> None:
    c, _, _ = pair
    _fill(pair)
    large = "x" * resp.LARGE_BULK
    _both(pair, "RPUSH", "l", large)  # widths differ: resp.bulk remembers a large reply
    assert _check_hand_over(pair, "LRANGE", "l", "0", "-1").endswith(b"x\r\n")
    assert _check_hand_over(pair, "RPOP", "l").endswith(b"x\r\n")
    for store in pair[:2]:
        store.d.max_reply_size = 2
    assert _check_hand_over(pair, "LRANGE", "l", "0", "-1").startswith(b"-ERR reply too large")
    assert _check_answered(pair, "LRANGE", "l", "0", "1") == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    assert c.engine.stats().keys == 4


def test_a_renamed_or_deleted_container_is_read_where_it_went(pair: Pair) -> None:
    _fill(pair)
    _both(pair, "RENAME", "l", "l2")
    assert _check_answered(pair, "RPUSH", "l2", "d") == b":4\r\n"
    assert _check_answered(pair, "LPOP", "l") == b"$-1\r\n"
    _both(pair, "DEL", "s")
    assert _check_hand_over(pair, "SADD", "s", "x") == b":1\r\n"  # made again, in Python


def test_container_classes_it_cannot_read_keep_the_python_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from blinkstore_gunicorn.server import _fastcmd, fastpath

    class Plain(Container):  # a list without List's slots (a stale build)
        pass

    built = []
    real = _fastcmd.Runner

    def runner(*args: Any) -> Any:
        built.append(args)
        return real(*args)

    monkeypatch.setattr(fastpath, "List", Plain)
    monkeypatch.setattr(_fastcmd, "Runner", runner)
    d = Dispatcher(MemoryEngine(), clock_ms=Clock())
    assert built, "the C path was not tried"
    assert d.execute_resp is Dispatcher.execute
