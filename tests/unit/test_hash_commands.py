"""The hash commands through the dispatcher, replies byte for byte as redis-server 7.0 gives
them (the integration test runs the same exchanges against both servers)."""

from __future__ import annotations

import pytest

from tests.unit.test_commands import WRONGTYPE, Harness, err


@pytest.fixture
def r() -> Harness:
    return Harness()


def test_hset_hget_hmget_hgetall(r: Harness) -> None:
    assert r("HSET", "h", "a", "1", "b", "2") == b":2\r\n"
    assert r("HSET", "h", "a", "3", "c", "4") == b":1\r\n"
    assert r("HGET", "h", "a") == b"$1\r\n3\r\n"
    assert r("HGET", "h", "x") == b"$-1\r\n"
    assert r("HGET", "missing", "a") == b"$-1\r\n"
    assert r("HMGET", "h", "a", "x", "c") == b"*3\r\n$1\r\n3\r\n$-1\r\n$1\r\n4\r\n"
    assert r("HGETALL", "h") == (
        b"*6\r\n$1\r\na\r\n$1\r\n3\r\n$1\r\nb\r\n$1\r\n2\r\n$1\r\nc\r\n$1\r\n4\r\n"
    )
    assert r("HGETALL", "missing") == b"*0\r\n"
    assert r("HKEYS", "h") == b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
    assert r("HVALS", "h") == b"*3\r\n$1\r\n3\r\n$1\r\n2\r\n$1\r\n4\r\n"
    assert r("HLEN", "h") == b":3\r\n" and r("HLEN", "missing") == b":0\r\n"
    assert r("HEXISTS", "h", "a") == b":1\r\n" and r("HEXISTS", "h", "x") == b":0\r\n"
    assert r("HSTRLEN", "h", "a") == b":1\r\n" and r("HSTRLEN", "h", "x") == b":0\r\n"
    assert r("HSETNX", "h", "a", "9") == b":0\r\n"
    assert r("HSETNX", "h", "z", "9") == b":1\r\n"
    assert r("HMSET", "h", "m", "1") == b"+OK\r\n"
    assert r("TYPE", "h") == b"+hash\r\n"


def test_resp3_hgetall_is_a_map(r: Harness) -> None:
    r.client.use_resp3(True)
    r("HSET", "h", "a", "1")
    assert r("HGETALL", "h") == b"%1\r\n$1\r\na\r\n$1\r\n1\r\n"
    assert r("HGETALL", "missing") == b"%0\r\n"
    assert r("HGET", "h", "x") == b"_\r\n"


def test_arity_and_argument_errors(r: Harness) -> None:
    for args in (("HSET", "h", "a"), ("HSET", "h", "a", "1", "b"), ("HMSET", "h", "a")):
        name = args[0].lower()
        assert r(*args) == err(f"ERR wrong number of arguments for '{name}' command")
    assert r("HGET", "h") == err("ERR wrong number of arguments for 'hget' command")
    assert r("HDEL", "h") == err("ERR wrong number of arguments for 'hdel' command")
    assert r("HINCRBY", "h", "f", "x") == err("ERR value is not an integer or out of range")
    assert r("HINCRBYFLOAT", "h", "f", "x") == err("ERR value is not a valid float")
    assert r("HINCRBYFLOAT", "h", "f", "inf") == err("ERR value is NaN or Infinity")
    assert r("HSCAN", "h", "x") == err("ERR invalid cursor")
    assert r("HSCAN", "h", "0", "COUNT", "0") == err("ERR syntax error")
    assert r("HRANDFIELD", "h", "x") == err("ERR value is not an integer or out of range")
    assert r("HRANDFIELD", "h", "1", "WITHVALUE") == err("ERR syntax error")
    assert r("HRANDFIELD", "h", "-9223372036854775808") == err(
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
    )


def test_hincrby_and_hincrbyfloat(r: Harness) -> None:
    assert r("HINCRBY", "h", "n", "5") == b":5\r\n"
    assert r("HINCRBY", "h", "n", "-7") == b":-2\r\n"
    assert r("HINCRBY", "h", "n", "9223372036854775807") == b":9223372036854775805\r\n"
    assert r("HINCRBY", "h", "n", "9") == err("ERR increment or decrement would overflow")
    r("HSET", "h", "s", "abc")
    assert r("HINCRBY", "h", "s", "1") == err("ERR hash value is not an integer")
    assert r("HINCRBYFLOAT", "h", "s", "1") == err("ERR hash value is not a float")
    assert r("HINCRBYFLOAT", "h", "f", "1.5") == b"$3\r\n1.5\r\n"
    assert r("HINCRBYFLOAT", "h", "f", "2.5e3") == b"$6\r\n2501.5\r\n"


def test_hdel_removes_the_key_with_its_last_field(r: Harness) -> None:
    r("HSET", "h", "a", "1", "b", "2")
    assert r("HDEL", "h", "a", "x") == b":1\r\n"
    assert r("HDEL", "missing", "a") == b":0\r\n"
    assert r("HDEL", "h", "b") == b":1\r\n"
    assert r("EXISTS", "h") == b":0\r\n" and r("TYPE", "h") == b"+none\r\n"
    assert r.engine.used_bytes == 0


def test_wrongtype_both_ways(r: Harness) -> None:
    r("SET", "s", "v")
    r("HSET", "h", "f", "v")
    for args in (
        ("HSET", "s", "f", "v"),
        ("HGET", "s", "f"),
        ("HGETALL", "s"),
        ("HDEL", "s", "f"),
        ("HINCRBY", "s", "f", "1"),
        ("GET", "h"),
        ("INCR", "h"),
        ("APPEND", "h", "x"),
        ("STRLEN", "h"),
        ("GETDEL", "h"),
        ("GETEX", "h"),
        ("SET", "h", "x", "GET"),
        ("INCRBYFLOAT", "h", "1"),
    ):
        assert r(*args) == WRONGTYPE, args
    assert r("MGET", "s", "h", "missing") == b"*3\r\n$1\r\nv\r\n$-1\r\n$-1\r\n"
    assert r("SET", "h", "x", "NX") == b"$-1\r\n"
    assert r("SET", "h", "x") == b"+OK\r\n" and r("GET", "h") == b"$1\r\nx\r\n"
    # Inside MULTI the error is that command's reply; the others run.
    r("HSET", "h2", "f", "v")
    assert r("MULTI") == b"+OK\r\n"
    r("GET", "h2")
    r("HGET", "h2", "f")
    assert r("EXEC") == b"*2\r\n" + WRONGTYPE + b"$1\r\nv\r\n"
    # The text protocol's GET says so in its own error line.
    assert r.text(b"get h2") == b"ERROR " + WRONGTYPE[1:-2] + b"\n"


def test_keyspace_commands_on_a_hash(r: Harness) -> None:
    r("HSET", "h", "f", "v")
    r("SET", "s", "v")
    assert r("EXPIRE", "h", "100") == b":1\r\n" and r("TTL", "h") == b":100\r\n"
    assert r("PERSIST", "h") == b":1\r\n" and r("TTL", "h") == b":-1\r\n"
    assert r("PEXPIRE", "h", "50") == b":1\r\n"
    assert r("RENAME", "h", "h2") == b"+OK\r\n" and r("PTTL", "h2") == b":50\r\n"
    assert r("RENAME", "missing", "x") == err("ERR no such key")
    assert r("RENAMENX", "h2", "s") == b":0\r\n"
    assert r("RENAMENX", "h2", "h2") == b":0\r\n"
    assert r("RENAMENX", "h2", "h3") == b":1\r\n"
    assert r("SCAN", "0", "TYPE", "hash") == b"*2\r\n$1\r\n0\r\n*1\r\n$2\r\nh3\r\n"
    assert r("SCAN", "0", "TYPE", "string") == b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\ns\r\n"
    assert r("DBSIZE") == b":2\r\n"
    r.clock.now += 50
    assert r("HGET", "h3", "f") == b"$-1\r\n" and r("DBSIZE") == b":1\r\n"
    r("HSET", "h", "f", "v")
    assert r("DEL", "h", "s") == b":2\r\n"
    assert r.engine.used_bytes == 0
    r("HSET", "h", "f", "v")
    assert r("FLUSHDB") == b"+OK\r\n" and r("DBSIZE") == b":0\r\n"


def test_hscan_and_hrandfield(r: Harness) -> None:
    r("HSET", "h", "a", "1", "b", "2")
    assert r("HSCAN", "h", "0") == (
        b"*2\r\n$1\r\n0\r\n*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"
    )
    assert r("HSCAN", "h", "0", "MATCH", "b*", "COUNT", "5") == (
        b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n"
    )
    assert r("HSCAN", "missing", "0") == b"*2\r\n$1\r\n0\r\n*0\r\n"
    assert r("HRANDFIELD", "missing") == b"$-1\r\n"
    assert r("HRANDFIELD", "missing", "3") == b"*0\r\n"
    assert r("HRANDFIELD", "h") in (b"$1\r\na\r\n", b"$1\r\nb\r\n")
    assert r("HRANDFIELD", "h", "5") == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    assert r("HRANDFIELD", "h", "-3").startswith(b"*3\r\n")
    assert r("HRANDFIELD", "h", "1", "WITHVALUES") in (
        b"*2\r\n$1\r\na\r\n$1\r\n1\r\n",
        b"*2\r\n$1\r\nb\r\n$1\r\n2\r\n",
    )
    r.client.use_resp3(True)
    assert r("HRANDFIELD", "h", "1", "WITHVALUES") in (
        b"*1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n",
        b"*1\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n",
    )


def test_big_replies_and_memory_limits() -> None:
    r = Harness(memory_limit=64 * 1024, max_reply_size=1000, max_value_size=600)
    r("HSET", "h", "a", "x" * 600, "b", "y" * 600)
    assert r("HGETALL", "h").startswith(b"-ERR reply too large: 1202 bytes exceeds")
    assert r("HVALS", "h").startswith(b"-ERR reply too large")
    assert r("HKEYS", "h") == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    assert r("HSET", "h", "c", "z" * 601).startswith(b"-ERR value too large")
    assert r("HLEN", "h") == b":2\r\n"
    r2 = Harness(memory_limit=4096)
    assert r2("HSET", "h", "f", "x" * 4096).startswith(b"-ERR value too large: entry")
    assert r2("EXISTS", "h") == b":0\r\n"


def test_copy(r: Harness) -> None:
    r("HSET", "h", "f", "v")
    assert r("COPY", "h", "h2") == b":1\r\n" and r("HGET", "h2", "f") == b"$1\r\nv\r\n"
    assert r("COPY", "h", "h2") == b":0\r\n"
    r("HSET", "h2", "g", "w")
    assert r("HLEN", "h") == b":1\r\n"
    assert r("COPY", "h", "h2", "DB", "0", "REPLACE") == b":1\r\n" and r("HLEN", "h2") == b":1\r\n"
    assert r("COPY", "h", "h") == err("ERR source and destination objects are the same")
    assert r("COPY", "missing", "x") == b":0\r\n"
    assert r("COPY", "h", "x", "DB", "1") == err("ERR DB index is out of range")
    assert r("COPY", "h", "x", "BOGUS") == err("ERR syntax error")
