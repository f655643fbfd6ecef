"""The sorted-set commands through the dispatcher, replies byte for byte as redis-server 7.0
gives them (the integration test runs the same calls against both servers)."""

from __future__ import annotations

import pytest

from blinkstore_gunicorn.engine import ENTRY_OVERHEAD
from blinkstore_gunicorn.engine.typed import CONTAINER_OVERHEAD, ZSET_MEMBER_OVERHEAD
from blinkstore_gunicorn.server.commands.registry import DEFERRED
from tests.unit.test_commands import WRONGTYPE, Harness, bulks, err


@pytest.fixture
def r() -> Harness:
    return Harness()


def test_zadd_options_and_scores(r: Harness) -> None:
    assert r("ZADD", "z", "1", "a", "2", "b", "3", "c") == b":3\r\n"
    assert r("ZADD", "z", "CH", "1", "a", "5", "b", "9", "e") == b":2\r\n"
    assert r("ZADD", "z", "NX", "100", "a", "7", "f") == b":1\r\n"
    assert r("ZADD", "z", "XX", "100", "a", "8", "g") == b":0\r\n"
    assert r("ZADD", "z", "GT", "CH", "50", "a", "1", "b") == b":0\r\n"
    assert r("ZSCORE", "z", "a") == b"$3\r\n100\r\n"
    assert r("ZADD", "z", "INCR", "0.1", "c") == b"$18\r\n3.1000000000000001\r\n"
    assert r("ZADD", "z", "NX", "INCR", "1", "c") == b"$-1\r\n"
    assert r("ZINCRBY", "z", "-1", "e") == b"$1\r\n8\r\n"
    assert r("ZSCORE", "z", "nope") == b"$-1\r\n"
    assert r("ZMSCORE", "z", "b", "nope") == b"*2\r\n$1\r\n5\r\n$-1\r\n"
    assert r("ZCARD", "z") == b":5\r\n" and r("TYPE", "z") == b"+zset\r\n"
    assert r("ZRANK", "z", "c") == b":0\r\n" and r("ZREVRANK", "z", "c") == b":4\r\n"
    assert r("ZRANK", "z", "nope") == b"$-1\r\n"


def test_zadd_errors(r: Harness) -> None:
    assert r("ZADD", "z", "NX", "XX", "1", "a") == err(
        "ERR XX and NX options at the same time are not compatible"
    )
    assert r("ZADD", "z", "GT", "LT", "1", "a") == err(
        "ERR GT, LT, and/or NX options at the same time are not compatible"
    )
    assert r("ZADD", "z", "INCR", "1", "a", "2", "b") == err(
        "ERR INCR option supports a single increment-element pair"
    )
    assert r("ZADD", "z", "1", "a", "2") == err("ERR syntax error")
    assert r("ZADD", "z", "x", "a") == err("ERR value is not a valid float")
    r("ZADD", "z", "inf", "a")
    assert r("ZINCRBY", "z", "-inf", "a") == err("ERR resulting score is not a number (NaN)")
    assert r("ZRANGE", "z", "a", "b", "BYSCORE") == err("ERR min or max is not a float")
    assert r("ZRANGE", "z", "0", "-1", "LIMIT", "0", "1") == err(
        "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
    )
    assert r("ZPOPMIN", "z", "-1") == err("ERR value is out of range, must be positive")


def test_ranges(r: Harness) -> None:
    r("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d")
    assert r("ZRANGE", "z", "0", "-1") == bulks("a", "b", "c", "d")
    assert r("ZRANGE", "z", "-2", "-1", "WITHSCORES") == bulks("c", "3", "d", "4")
    assert r("ZRANGE", "z", "0", "1", "REV") == bulks("d", "c")
    assert r("ZRANGE", "z", "(1", "3", "BYSCORE") == bulks("b", "c")
    assert r("ZRANGE", "z", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "1", "2") == bulks("c", "b")
    assert r("ZRANGEBYSCORE", "z", "2", "(4", "WITHSCORES") == bulks("b", "2", "c", "3")
    assert r("ZREVRANGEBYSCORE", "z", "4", "2", "LIMIT", "0", "1") == bulks("d")
    assert r("ZREVRANGE", "z", "0", "0", "WITHSCORES") == bulks("d", "4")
    assert r("ZRANGE", "missing", "0", "-1") == b"*0\r\n"
    assert r("ZCOUNT", "z", "(1", "+inf") == b":3\r\n"
    r.client.use_resp3(True)
    assert r("ZRANGE", "z", "0", "0", "WITHSCORES") == b"*1\r\n*2\r\n$1\r\na\r\n,1\r\n"
    assert r("ZSCORE", "z", "b") == b",2\r\n"


def test_removal_pops_and_accounting(r: Harness) -> None:
    r("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e")
    one = len("z") + ENTRY_OVERHEAD + CONTAINER_OVERHEAD
    assert r.engine.used_bytes == one + 5 * (1 + ZSET_MEMBER_OVERHEAD)
    assert r("ZREM", "z", "a", "nope") == b":1\r\n"
    assert r("ZREMRANGEBYSCORE", "z", "(4", "+inf") == b":1\r\n"
    assert r("ZREMRANGEBYRANK", "z", "-1", "-1") == b":1\r\n"
    assert r("ZPOPMIN", "z") == bulks("b", "2")
    assert r("ZPOPMAX", "z", "5") == bulks("c", "3")
    assert r("EXISTS", "z") == b":0\r\n" and r.engine.used_bytes == 0
    assert r("ZPOPMIN", "missing") == b"*0\r\n"


def _info_used(r: Harness) -> int:
    info = r("INFO", "memory")
    return int(info.split(b"used_memory:")[1].split(b"\r\n")[0])


def test_zadd_without_flags_accounts_as_the_full_parser_does() -> None:
    """ZADD without flags has a path of its own; CH sends the same pairs through the full
    parser. New members, a member named twice, a score that moves one and one that changes
    nothing leave the same account, and the same replies but for CH's count."""
    plain, flagged = Harness(), Harness()
    calls = [["1", "a", "2", "b"], ["3", "a", "3", "c", "4", "c"], ["2", "b"], ["-1", "d"]]
    replies = []
    for pairs in calls:
        replies.append((plain("ZADD", "z", *pairs), flagged("ZADD", "z", "CH", *pairs)))
        for r in (plain, flagged):
            assert r("MEMORY", "USAGE", "z") == plain("MEMORY", "USAGE", "z")
            assert _info_used(r) == _info_used(plain) == r.engine.used_bytes
    assert [reply for reply, _ in replies] == [b":2\r\n", b":1\r\n", b":0\r\n", b":1\r\n"]
    assert [reply for _, reply in replies] == [b":2\r\n", b":3\r\n", b":0\r\n", b":1\r\n"]
    one = len("z") + ENTRY_OVERHEAD + CONTAINER_OVERHEAD
    assert plain.engine.used_bytes == one + 4 * (1 + ZSET_MEMBER_OVERHEAD)
    assert plain("ZRANGE", "z", "0", "-1", "WITHSCORES") == flagged(
        "ZRANGE", "z", "0", "-1", "WITHSCORES"
    )


def test_zadd_without_flags_checks_as_the_full_parser_does() -> None:
    """A bad score or a member over the key size limit in any pair refuses the whole call,
    and a member limit holds for a key not yet there as for one that is."""
    r = Harness(max_key_size=4, memory_limit=2000)
    assert r("ZADD", "z", "1", "a", "x", "b") == err("ERR value is not a valid float")
    assert r("ZADD", "z", "1", "a", "2", "toolong") == err(
        "ERR key too large: key of 7 bytes exceeds max key size 4"
    )
    assert r("EXISTS", "z") == b":0\r\n" and r.engine.used_bytes == 0
    members = [item for n in range(10) for item in ("1", f"m{n}")]
    assert r("ZADD", "z", *members).startswith(b"-ERR value too large")
    assert r("ZADD", "z", "1", "a") == b":1\r\n"
    assert r("ZADD", "z", *members).startswith(b"-ERR value too large")
    assert r("ZCARD", "z") == b":1\r\n"


def test_wrongtype_and_zscan(r: Harness) -> None:
    r("SET", "str", "v")
    r("ZADD", "z", "1", "x", "2.5", "y")
    for args in (("ZADD", "str", "1", "a"), ("ZRANGE", "str", "0", "-1"), ("GET", "z")):
        assert r(*args) == WRONGTYPE, args
    assert r("ZSCAN", "z", "0", "MATCH", "y*") == b"*2\r\n$1\r\n0\r\n" + bulks("y", "2.5")
    assert r("ZSCAN", "z", "0") == b"*2\r\n$1\r\n0\r\n" + bulks("x", "1", "y", "2.5")


def test_bzpopmin_bzpopmax_park_and_are_served_by_zadd(r: Harness) -> None:
    r("ZADD", "z", "1", "a", "2", "b")
    assert r("BZPOPMIN", "missing", "z", "0") == bulks("z", "a", "1")
    assert r("BZPOPMAX", "z", "0") == bulks("z", "b", "2")
    waiter = r.d.new_client()
    got: list[bytes] = []
    waiter.deliver = got.append
    assert r("BZPOPMAX", "z", "0", client=waiter) is DEFERRED
    assert r("ZADD", "z", "5", "x", "7", "y") == b":2\r\n"
    assert got == [bulks("z", "y", "7")] and r("ZCARD", "z") == b":1\r\n"
    assert r("BZPOPMIN", "other", "0.25", client=waiter) is DEFERRED
    r.d.blocked.expire(r.clock.now + 250)
    assert got[-1] == b"*-1\r\n"
    assert r("BZPOPMIN", "z", "x") == err("ERR timeout is not a float or out of range")
    r("SET", "str", "v")
    assert r("BZPOPMIN", "str", "0") == WRONGTYPE


def test_lex_ranges(r: Harness) -> None:
    r("ZADD", "l", "0", "a", "0", "b", "0", "c", "0", "d", "0", "e")
    assert r("ZRANGEBYLEX", "l", "[b", "(d") == bulks("b", "c")
    assert r("ZRANGEBYLEX", "l", "(b", "+", "LIMIT", "1", "2") == bulks("d", "e")
    assert r("ZREVRANGEBYLEX", "l", "[d", "(a", "LIMIT", "0", "2") == bulks("d", "c")
    assert r("ZRANGE", "l", "[d", "[b", "BYLEX", "REV") == bulks("d", "c", "b")
    assert r("ZLEXCOUNT", "l", "-", "+") == b":5\r\n"
    assert r("ZRANGEBYLEX", "l", "a", "c") == err("ERR min or max not valid string range item")
    assert r("ZRANGE", "l", "-", "+", "BYLEX", "WITHSCORES") == err(
        "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
    )
    assert r("ZREMRANGEBYLEX", "l", "-", "[b") == b":2\r\n"
    assert r("ZRANGE", "l", "0", "-1") == bulks("c", "d", "e")
