"""The set commands through the dispatcher, replies byte for byte as redis-server 7.0 gives
them (the integration test runs the same calls against both servers)."""

from __future__ import annotations

import pytest

from blinkstore_gunicorn.engine import ENTRY_OVERHEAD
from blinkstore_gunicorn.engine.sets import sadd, spop, srem
from blinkstore_gunicorn.engine.typed import CONTAINER_OVERHEAD, SET_MEMBER_OVERHEAD
from tests.unit.test_commands import WRONGTYPE, Harness, err


@pytest.fixture
def r() -> Harness:
    return Harness()


def members(reply: bytes) -> set[bytes]:
    """The members of a one-level array (or RESP3 set) reply of bulk strings."""
    lines = reply.split(b"\r\n")
    return set(lines[2::2])


def test_sadd_srem_scard_sismember(r: Harness) -> None:
    assert r("SADD", "s", "a", "b", "c", "a") == b":3\r\n"
    assert r("SADD", "s", "a", "d") == b":1\r\n"
    assert r("SREM", "s", "a", "x") == b":1\r\n"
    assert r("SREM", "missing", "a") == b":0\r\n"
    assert r("SCARD", "s") == b":3\r\n" and r("SCARD", "missing") == b":0\r\n"
    assert r("SISMEMBER", "s", "b") == b":1\r\n" and r("SISMEMBER", "s", "a") == b":0\r\n"
    assert r("SMISMEMBER", "s", "b", "x", "c") == b"*3\r\n:1\r\n:0\r\n:1\r\n"
    assert members(r("SMEMBERS", "s")) == {b"b", b"c", b"d"}
    assert r("SMEMBERS", "missing") == b"*0\r\n"
    assert r("TYPE", "s") == b"+set\r\n"
    assert r("SREM", "s", "b", "c", "d") == b":3\r\n"
    assert r("EXISTS", "s") == b":0\r\n" and r.engine.used_bytes == 0


def test_resp3_replies_are_sets(r: Harness) -> None:
    r.client.use_resp3(True)
    r("SADD", "s", "a")
    assert r("SMEMBERS", "s") == b"~1\r\n$1\r\na\r\n"
    assert r("SINTER", "s", "missing") == b"~0\r\n"
    assert r("SPOP", "missing") == b"_\r\n"
    assert r("SPOP", "s", "3") == b"~1\r\n$1\r\na\r\n"


def test_spop_and_srandmember(r: Harness) -> None:
    assert r("SPOP", "missing") == b"$-1\r\n" and r("SPOP", "missing", "2") == b"*0\r\n"
    assert r("SRANDMEMBER", "missing") == b"$-1\r\n"
    assert r("SRANDMEMBER", "missing", "3") == b"*0\r\n"
    r("SADD", "s", "a", "b", "c")
    assert r("SRANDMEMBER", "s") in (b"$1\r\na\r\n", b"$1\r\nb\r\n", b"$1\r\nc\r\n")
    assert members(r("SRANDMEMBER", "s", "5")) == {b"a", b"b", b"c"}
    assert r("SRANDMEMBER", "s", "-5").startswith(b"*5\r\n")
    assert r("SRANDMEMBER", "s", "0") == b"*0\r\n"
    assert r("SPOP", "s", "0") == b"*0\r\n"
    popped = members(r("SPOP", "s", "2"))
    assert len(popped) == 2 and r("SCARD", "s") == b":1\r\n"
    assert r("SPOP", "s") not in popped
    assert r("EXISTS", "s") == b":0\r\n"


def test_argument_errors(r: Harness) -> None:
    assert r("SADD", "s") == err("ERR wrong number of arguments for 'sadd' command")
    assert r("SPOP", "s", "-1") == err("ERR value is out of range, must be positive")
    assert r("SPOP", "s", "x") == err("ERR value is out of range, must be positive")
    assert r("SPOP", "s", "1", "2") == err("ERR syntax error")
    assert r("SRANDMEMBER", "s", "x") == err("ERR value is not an integer or out of range")
    assert r("SRANDMEMBER", "s", "-9223372036854775808") == err(
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
    )
    assert r("SINTERCARD", "0", "s") == err("ERR numkeys should be greater than 0")
    assert r("SINTERCARD", "x", "s") == err("ERR numkeys should be greater than 0")
    assert r("SINTERCARD", "3", "s", "t") == err(
        "ERR Number of keys can't be greater than number of args"
    )
    assert r("SINTERCARD", "1", "s", "LIMIT", "-1") == err("ERR LIMIT can't be negative")
    assert r("SINTERCARD", "1", "s", "LIMOT", "1") == err("ERR syntax error")
    assert r("SSCAN", "s", "x") == err("ERR invalid cursor")


def test_wrongtype(r: Harness) -> None:
    r("SET", "str", "v")
    r("SADD", "s", "a", "b")
    for args in (
        ("SADD", "str", "a"),
        ("SMEMBERS", "str"),
        ("SISMEMBER", "str", "a"),
        ("SINTER", "s", "str"),
        ("SUNION", "missing", "str"),
        ("SDIFF", "str"),
        ("SMOVE", "s", "str", "a"),
        ("SMOVE", "str", "s", "a"),
        ("GET", "s"),
    ):
        assert r(*args) == WRONGTYPE, args
    # A missing source answers 0 before the destination's type is looked at, as Redis does.
    assert r("SMOVE", "missing", "str", "a") == b":0\r\n"
    assert members(r("SMEMBERS", "s")) == {b"a", b"b"}


def test_smove_and_the_algebra(r: Harness) -> None:
    r("SADD", "s", "a", "b", "c")
    r("SADD", "t", "b", "c", "d")
    assert r("SMOVE", "s", "s", "a") == b":1\r\n" and r("SMOVE", "s", "u", "zz") == b":0\r\n"
    assert members(r("SINTER", "s", "t")) == {b"b", b"c"}
    assert members(r("SUNION", "s", "t", "missing")) == {b"a", b"b", b"c", b"d"}
    assert members(r("SDIFF", "s", "t")) == {b"a"}
    assert r("SINTER", "s", "missing") == b"*0\r\n"
    assert r("SINTERCARD", "2", "s", "t") == b":2\r\n"
    assert r("SINTERCARD", "2", "s", "t", "LIMIT", "1") == b":1\r\n"
    assert r("SINTERSTORE", "dst", "s", "t") == b":2\r\n"
    assert r("SUNIONSTORE", "dst", "s", "t") == b":4\r\n"
    assert r("SDIFFSTORE", "dst", "s", "t") == b":1\r\n"
    assert members(r("SMEMBERS", "dst")) == {b"a"}
    r("SET", "str", "v")
    assert r("SINTERSTORE", "str", "s", "t") == b":2\r\n" and r("TYPE", "str") == b"+set\r\n"
    r("EXPIRE", "dst", "100")
    assert r("SINTERSTORE", "dst", "s", "missing") == b":0\r\n"
    assert r("EXISTS", "dst") == b":0\r\n"
    assert r("SMOVE", "s", "u", "a") == b":1\r\n"
    assert members(r("SMEMBERS", "u")) == {b"a"} and r("SISMEMBER", "s", "a") == b":0\r\n"


def test_sscan(r: Harness) -> None:
    r("SADD", "s", "apple", "banana")
    assert r("SSCAN", "s", "0", "MATCH", "b*") == (b"*2\r\n$1\r\n0\r\n*1\r\n$6\r\nbanana\r\n")
    assert r("SSCAN", "missing", "0") == b"*2\r\n$1\r\n0\r\n*0\r\n"


def test_big_replies_are_refused_and_nothing_is_lost() -> None:
    r = Harness(max_reply_size=1000)
    r("SADD", "s", "a" * 600, "b" * 600)
    assert r("SMEMBERS", "s").startswith(b"-ERR reply too large: 1200 bytes exceeds")
    assert r("SPOP", "s", "5").startswith(b"-ERR reply too large")
    assert r("SCARD", "s") == b":2\r\n"


def test_set_accounting_in_the_engine(r: Harness) -> None:
    engine = r.engine
    empty = len(b"s") + ENTRY_OVERHEAD + CONTAINER_OVERHEAD
    assert sadd(engine, b"s", [b"a", b"bb", b"a"]) == 2
    assert engine.used_bytes == empty + 3 + 2 * SET_MEMBER_OVERHEAD
    assert srem(engine, b"s", [b"a", b"zz"]) == 1
    assert engine.used_bytes == empty + 2 + SET_MEMBER_OVERHEAD
    assert sorted(spop(engine, b"s", 10)) == [b"bb"]
    assert engine.used_bytes == 0 and len(engine) == 0


def test_a_store_replaces_any_value_and_keeps_the_account(r: Harness) -> None:
    r("SADD", "a", "x", "yy")
    alone = r.engine.used_bytes
    r("SET", "dst", "old")
    r("EXPIRE", "dst", "100")
    assert r("SUNIONSTORE", "dst", "a", "missing") == b":2\r\n"
    assert r("TTL", "dst") == b":-1\r\n" and r("TYPE", "dst") == b"+set\r\n"
    assert r.engine.used_bytes == 2 * alone + len("dst") - len("a")
    assert r("SDIFFSTORE", "dst", "a", "a") == b":0\r\n" and r("EXISTS", "dst") == b":0\r\n"
    assert r.engine.used_bytes == alone
