"""The list commands through the dispatcher, replies byte for byte as redis-server 7.0 gives
them (the integration test runs the same calls against both servers)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from blinkstore_gunicorn.engine import ENTRY_OVERHEAD
from blinkstore_gunicorn.engine.lists import List
from blinkstore_gunicorn.engine.typed import LIST_ITEM_OVERHEAD, LIST_OVERHEAD
from blinkstore_gunicorn.server.commands.registry import DEFERRED
from tests.unit.test_commands import WRONGTYPE, Harness, bulks, err


@pytest.fixture
def r() -> Harness:
    return Harness()


def test_push_pop_range(r: Harness) -> None:
    assert r("LPUSH", "l", "a", "b", "c") == b":3\r\n"
    assert r("RPUSH", "l", "d", "e") == b":5\r\n"
    assert r("LPUSHX", "missing", "a") == b":0\r\n" and r("RPUSHX", "missing", "a") == b":0\r\n"
    assert r("LPUSHX", "l", "z") == b":6\r\n"
    assert r("LRANGE", "l", "0", "-1") == bulks("z", "c", "b", "a", "d", "e")
    assert r("LRANGE", "l", "-2", "-1") == bulks("d", "e")
    assert r("LRANGE", "l", "-100", "1") == bulks("z", "c")
    assert r("LRANGE", "l", "2", "1") == b"*0\r\n" and r("LRANGE", "l", "9", "10") == b"*0\r\n"
    assert r("LRANGE", "missing", "0", "-1") == b"*0\r\n"
    assert r("LLEN", "l") == b":6\r\n" and r("LLEN", "missing") == b":0\r\n"
    assert r("LPOP", "l") == b"$1\r\nz\r\n" and r("RPOP", "l") == b"$1\r\ne\r\n"
    assert r("LPOP", "l", "2") == bulks("c", "b") and r("RPOP", "l", "0") == b"*0\r\n"
    assert r("LPOP", "missing") == b"$-1\r\n" and r("LPOP", "missing", "2") == b"*-1\r\n"
    assert r("RPOP", "l", "5") == bulks("d", "a")
    assert r("EXISTS", "l") == b":0\r\n" and r.engine.used_bytes == 0
    assert r("TYPE", "missing") == b"+none\r\n"
    r("RPUSH", "l", "x")
    assert r("TYPE", "l") == b"+list\r\n"
    assert r.engine.used_bytes == len("lx") + ENTRY_OVERHEAD + LIST_OVERHEAD + LIST_ITEM_OVERHEAD


def test_resp3_nil_array(r: Harness) -> None:
    r.client.use_resp3(True)
    assert r("LPOP", "missing", "2") == b"_\r\n" and r("LPOP", "missing") == b"_\r\n"


def test_index_set_insert(r: Harness) -> None:
    r("RPUSH", "l", "a", "b", "c")
    assert r("LINDEX", "l", "0") == b"$1\r\na\r\n" and r("LINDEX", "l", "-1") == b"$1\r\nc\r\n"
    assert r("LINDEX", "l", "3") == b"$-1\r\n" and r("LINDEX", "missing", "0") == b"$-1\r\n"
    assert r("LSET", "l", "-1", "C") == b"+OK\r\n"
    assert r("LSET", "l", "5", "x") == err("ERR index out of range")
    assert r("LSET", "missing", "0", "x") == err("ERR no such key")
    assert r("LINSERT", "l", "BEFORE", "b", "X") == b":4\r\n"
    assert r("LINSERT", "l", "after", "b", "Y") == b":5\r\n"
    assert r("LINSERT", "l", "AFTER", "nope", "Y") == b":-1\r\n"
    assert r("LINSERT", "missing", "AFTER", "a", "Y") == b":0\r\n"
    assert r("LINSERT", "l", "MIDDLE", "a", "Y") == err("ERR syntax error")
    assert r("LRANGE", "l", "0", "-1") == bulks("a", "X", "b", "Y", "C")


def test_lrem_ltrim_lpos(r: Harness) -> None:
    r("RPUSH", "r", "a", "b", "a", "c", "a", "d", "a")
    assert r("LREM", "r", "2", "a") == b":2\r\n"
    assert r("LRANGE", "r", "0", "-1") == bulks("b", "c", "a", "d", "a")
    assert r("LREM", "r", "-1", "a") == b":1\r\n"
    assert r("LRANGE", "r", "0", "-1") == bulks("b", "c", "a", "d")
    assert r("LREM", "r", "0", "zz") == b":0\r\n" and r("LREM", "missing", "0", "a") == b":0\r\n"
    r("RPUSH", "p", "a", "b", "c", "a", "b", "c", "a")
    assert r("LPOS", "p", "a") == b":0\r\n"
    assert r("LPOS", "p", "a", "RANK", "2") == b":3\r\n"
    assert r("LPOS", "p", "a", "RANK", "-1") == b":6\r\n"
    assert r("LPOS", "p", "a", "RANK", "-2", "COUNT", "2") == b"*2\r\n:3\r\n:0\r\n"
    assert r("LPOS", "p", "a", "COUNT", "0") == b"*3\r\n:0\r\n:3\r\n:6\r\n"
    assert r("LPOS", "p", "a", "COUNT", "2", "MAXLEN", "3") == b"*1\r\n:0\r\n"
    assert r("LPOS", "p", "zz") == b"$-1\r\n" and r("LPOS", "p", "zz", "COUNT", "1") == b"*0\r\n"
    assert r("LPOS", "p", "a", "RANK", "0") == err(
        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
        "or use negative to start from the end of the list"
    )
    assert r("LPOS", "p", "a", "COUNT", "-1") == err("ERR COUNT can't be negative")
    assert r("LPOS", "p", "a", "MAXLEN", "-1") == err("ERR MAXLEN can't be negative")
    assert r("LPOS", "p", "a", "BOGUS", "1") == err("ERR syntax error")
    assert r("LTRIM", "p", "1", "-2") == b"+OK\r\n"
    assert r("LRANGE", "p", "0", "-1") == bulks("b", "c", "a", "b", "c")
    assert r("LTRIM", "p", "5", "1") == b"+OK\r\n" and r("EXISTS", "p") == b":0\r\n"


def test_lmove_and_rpoplpush(r: Harness) -> None:
    r("RPUSH", "m", "a", "b", "c")
    assert r("LMOVE", "m", "n", "LEFT", "RIGHT") == b"$1\r\na\r\n"
    assert r("RPOPLPUSH", "m", "n") == b"$1\r\nc\r\n"
    assert r("LRANGE", "n", "0", "-1") == bulks("c", "a")
    r("EXPIRE", "m", "100")
    assert r("LMOVE", "m", "m", "LEFT", "RIGHT") == b"$1\r\nb\r\n"
    assert r("TTL", "m") == b":100\r\n"  # the one-item list moved onto itself keeps its key
    r("RPUSH", "m2", "x", "y", "z")
    assert r("LMOVE", "m2", "m2", "RIGHT", "LEFT") == b"$1\r\nz\r\n"
    assert r("LRANGE", "m2", "0", "-1") == bulks("z", "x", "y")
    assert r("LMOVE", "missing", "m", "LEFT", "RIGHT") == b"$-1\r\n"
    assert r("LMOVE", "m", "m", "UP", "RIGHT") == err("ERR syntax error")
    assert r("LPOP", "m", "1", "2") == err("ERR wrong number of arguments for 'lpop' command")
    r("SET", "str", "v")
    assert r("LMOVE", "m2", "str", "LEFT", "LEFT") == WRONGTYPE
    assert r("LMOVE", "missing", "str", "LEFT", "LEFT") == b"$-1\r\n"
    assert r("LRANGE", "m2", "0", "-1") == bulks("z", "x", "y")


def test_wrongtype_and_errors(r: Harness) -> None:
    r("SET", "str", "v")
    r("RPUSH", "l", "a")
    for args in (
        ("LPUSH", "str", "a"),
        ("LRANGE", "str", "0", "-1"),
        ("LPOP", "str"),
        ("LLEN", "str"),
        ("LPUSHX", "str", "a"),
        ("GET", "l"),
        ("SADD", "l", "a"),
        ("HGET", "l", "f"),
    ):
        assert r(*args) == WRONGTYPE, args
    assert r("LPOP", "l", "-1") == err("ERR value is out of range, must be positive")
    assert r("LRANGE", "l", "x", "1") == err("ERR value is not an integer or out of range")
    assert r("LINDEX", "l", "x") == err("ERR value is not an integer or out of range")
    assert r("LPUSH", "l") == err("ERR wrong number of arguments for 'lpush' command")


def test_big_replies_are_refused_and_nothing_is_lost() -> None:
    r = Harness(max_reply_size=1000)
    r("RPUSH", "l", "a" * 600, "b" * 600)
    assert r("LRANGE", "l", "0", "-1").startswith(b"-ERR reply too large: 1200 bytes exceeds")
    assert r("LPOP", "l", "2").startswith(b"-ERR reply too large")
    assert r("LLEN", "l") == b":2\r\n"


def test_a_push_with_a_value_too_large_names_the_first_and_stores_nothing() -> None:
    r = Harness(max_value_size=10)
    assert r("RPUSH", "l", "ok", "a" * 12, "b" * 20) == err(
        "ERR value too large: value of 12 bytes exceeds max value size 10"
    )
    assert r("EXISTS", "l") == b":0\r\n"


def test_blocking_pops_park_fifo_and_are_served_by_a_push(r: Harness) -> None:
    first, second = r.d.new_client(), r.d.new_client()
    got: dict[int, list[bytes]] = {first.id: [], second.id: []}
    first.deliver = got[first.id].append
    second.deliver = got[second.id].append
    assert r("BLPOP", "a", "b", "0", client=first) is DEFERRED
    assert r("BRPOP", "b", "1", client=second) is DEFERRED
    assert r("RPUSH", "b", "x", "y", "z") == b":3\r\n"  # the length before serving, as Redis
    assert got == {first.id: [bulks("b", "x")], second.id: [bulks("b", "z")]}
    assert r("LRANGE", "b", "0", "-1") == bulks("y")
    assert len(r.d.blocked) == 0


def test_blocking_pop_answers_at_once_or_times_out(r: Harness) -> None:
    r("RPUSH", "l", "a")
    r("SET", "str", "v")
    assert r("BLPOP", "missing", "l", "0") == bulks("l", "a")
    assert r("BLPOP", "str", "0") == WRONGTYPE
    waiter = r.d.new_client()
    got: list[bytes] = []
    waiter.deliver = got.append
    assert r("BLPOP", "l", "0.5", client=waiter) is DEFERRED
    r.d.blocked.expire(r.clock.now + 499)
    assert got == []
    r.d.blocked.expire(r.clock.now + 500)
    assert got == [b"*-1\r\n"] and len(r.d.blocked) == 0
    waiter.use_resp3(True)
    assert r("BLMOVE", "l", "m", "LEFT", "RIGHT", "1", client=waiter) is DEFERRED
    r.d.blocked.expire(r.clock.now + 1000)
    assert got[-1] == b"_\r\n"


def test_blmove_is_served_and_a_closed_connection_is_forgotten(r: Harness) -> None:
    mover, gone = r.d.new_client(), r.d.new_client()
    got: list[bytes] = []
    mover.deliver = got.append
    gone.deliver = got.append
    assert r("BLPOP", "src", "0", client=gone) is DEFERRED
    for callback in gone.on_close:
        callback()
    assert r("BLMOVE", "src", "dst", "RIGHT", "LEFT", "0", client=mover) is DEFERRED
    assert r("LPUSH", "src", "v") == b":1\r\n"
    assert got == [b"$1\r\nv\r\n"]
    assert r("LRANGE", "dst", "0", "-1") == bulks("v") and r("EXISTS", "src") == b":0\r\n"


def test_blocking_pop_errors(r: Harness) -> None:
    assert r("BLPOP", "l", "x") == err("ERR timeout is not a float or out of range")
    assert r("BLPOP", "l", "-1") == err("ERR timeout is negative")
    assert r("BLMOVE", "l", "m", "UP", "LEFT", "0") == err("ERR syntax error")
    assert r("BLPOP", "l") == err("ERR wrong number of arguments for 'blpop' command")
    # Inside MULTI/EXEC a blocking pop never waits: it answers its timeout reply (Redis 7.0).
    r("MULTI")
    assert r("BLPOP", "l", "0") == b"+QUEUED\r\n"
    assert r("EXEC") == b"*1\r\n*-1\r\n"


def _width(r: Harness, key: str) -> int:
    found = r.engine.value(key.encode())
    assert isinstance(found, List)
    return found.width


def test_a_list_knows_when_its_items_share_a_length(r: Harness) -> None:
    """LRANGE and LPOP/RPOP with a count build the reply of items of one length without a
    pass over them: the list's width says when, kept by pushes and pops, recounted by edits."""
    r("RPUSH", "l", "aa", "bb")
    assert _width(r, "l") == 2
    r("LPUSH", "l", "cc")
    assert _width(r, "l") == 2 and r("LRANGE", "l", "0", "1") == bulks("cc", "aa")
    r("RPUSH", "l", "d")
    assert _width(r, "l") == -1 and r("LRANGE", "l", "-2", "-1") == bulks("bb", "d")
    assert r("RPOP", "l", "1") == bulks("d") and _width(r, "l") == -1
    r("LSET", "l", "0", "ee")  # an edit recounts
    assert _width(r, "l") == 2 and r("LPOP", "l", "2") == bulks("ee", "aa")
    r("LINSERT", "l", "BEFORE", "bb", "")
    assert _width(r, "l") == -1 and r("LRANGE", "l", "0", "-1") == bulks("", "bb")
    r("LREM", "l", "0", "bb")
    assert _width(r, "l") == 0 and r("LRANGE", "l", "0", "-1") == bulks("")
    r("RPUSH", "m", "x", "yy", "z")
    assert _width(r, "m") == -1
    r("LTRIM", "m", "-1", "-1")
    assert _width(r, "m") == 1
    r("DEL", "m")
    r("RPUSH", "m", "long")  # a new list takes its first push's width
    assert _width(r, "m") == 4
    r("COPY", "m", "copy")
    assert _width(r, "copy") == 4


def test_random_list_writes_keep_replies_and_width_true(r: Harness) -> None:
    """Whatever writes a list went through, a width it claims is every item's, and LRANGE
    and LPOP with a count answer its items (mixed lengths, empty and over 1 KiB ones)."""
    rng = random.Random(20)
    values = ["", "a", "bb", "cc", "ddd", "e" * 1100]
    writes: list[Callable[[], tuple[str, ...]]] = [
        lambda: ("RPUSH", "l", *rng.choices(values, k=rng.randint(1, 3))),
        lambda: ("LPUSH", "l", rng.choice(values)),
        lambda: ("LPUSHX", "l", rng.choice(values), rng.choice(values)),
        lambda: ("LSET", "l", str(rng.randint(-2, 1)), rng.choice(values)),
        lambda: ("LINSERT", "l", "AFTER", rng.choice(values), rng.choice(values)),
        lambda: ("LREM", "l", "1", rng.choice(values)),
        lambda: ("LTRIM", "l", "1", "-1"),
        lambda: ("RPOP", "l"),
        lambda: ("LMOVE", "l", "l", "LEFT", "RIGHT"),
        lambda: ("RPOPLPUSH", "l", "other"),
        lambda: ("LMOVE", "other", "l", "LEFT", "LEFT"),
    ]
    for _ in range(1500):
        r(*rng.choice(writes)())
        found = r.engine.value(b"l")
        assert found is None or isinstance(found, List)
        items = [] if found is None else [item.decode() for item in found.items]
        if found is not None and found.width >= 0:
            assert {len(item) for item in items} == {found.width}
        assert r("LRANGE", "l", "0", "-1") == bulks(*items)
        if rng.random() < 0.1:
            assert r("LPOP", "l", "2") == (bulks(*items[:2]) if items else b"*-1\r\n")
