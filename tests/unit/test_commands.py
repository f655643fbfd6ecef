"""The RESP command table and the text dispatch, called directly (no sockets).

Expected replies, error wordings included, were checked against redis-server 7.0.
"""

from __future__ import annotations

import pytest

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.protocol import text
from blinkstore_gunicorn.protocol.errors import ProtocolError, TooLarge
from blinkstore_gunicorn.server.commands import COMMANDS
from blinkstore_gunicorn.server.commands.floats import Extended, long_double
from blinkstore_gunicorn.server.commands.replies import (
    incremented,
    parse_float,
    parse_int,
    parse_long_double,
)
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher, ServerStats
from blinkstore_gunicorn.server.inline import is_inline_resp
from blinkstore_gunicorn.server.text_commands import execute_text

NOW = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


class Harness:
    def __init__(self, password: str | None = None, **limits: int) -> None:
        self.clock = Clock()
        self.engine = MemoryEngine(
            memory_limit=limits.pop("memory_limit", 0),
            max_key_size=limits.get("max_key_size", 64 * 1024),
            max_value_size=limits.get("max_value_size", 16 * 2**20),
            clock_ms=self.clock,
        )
        self.d = Dispatcher(
            self.engine, clock_ms=self.clock, stats=ServerStats(), password=password, **limits
        )
        self.client = self.d.new_client()

    def __call__(self, *args: str | bytes, client: Client | None = None) -> bytes:
        raw = [a.encode() if isinstance(a, str) else a for a in args]
        # As a connection runs them: plain GET/MGET in C where it is built (and not turned
        # off by the shm_path parametrization below), everything else in Python.
        return self.d.execute_resp(self.d, client or self.client, raw)

    def text(self, line: bytes, client: Client | None = None) -> bytes:
        return execute_text(self.d, client or self.client, text.parse_line(line))


@pytest.fixture
def r(shm_path: str) -> Harness:
    """A harness on the C path of GET/MGET, then on the Python reference."""
    return Harness()


def err(message: str) -> bytes:
    return b"-" + message.encode() + b"\r\n"


WRONGTYPE = err("WRONGTYPE Operation against a key holding the wrong kind of value")


def bulks(*items: str) -> bytes:
    """An array of bulk strings, as the store writes it."""
    return b"*%d\r\n" % len(items) + b"".join(
        b"$%d\r\n%b\r\n" % (len(item), item.encode()) for item in items
    )


def test_ping_echo(r: Harness) -> None:
    assert r("PING") == b"+PONG\r\n"
    assert r("ping", "hi") == b"$2\r\nhi\r\n"
    assert r("PING", "a", "b") == err("ERR wrong number of arguments for 'ping' command")
    assert r("ECHO", "x y") == b"$3\r\nx y\r\n"


def test_get_set_basic_and_mixed_case(r: Harness) -> None:
    assert r("GET", "k") == b"$-1\r\n"
    assert r("SET", "k", "v") == b"+OK\r\n"
    assert r("get", "k") == b"$1\r\nv\r\n"
    assert r("GeT", "k") == b"$1\r\nv\r\n"
    assert r("SET", "k", b"\x00\r\n") == b"+OK\r\n"
    assert r("GET", "k") == b"$3\r\n\x00\r\n\r\n"


def test_arity_errors_use_redis_wording(r: Harness) -> None:
    assert r("GET") == err("ERR wrong number of arguments for 'get' command")
    assert r("GET", "a", "b") == err("ERR wrong number of arguments for 'get' command")
    assert r("Set", "a") == err("ERR wrong number of arguments for 'set' command")
    assert r("MSET", "a") == err("ERR wrong number of arguments for 'mset' command")
    assert r("MSET", "a", "1", "b") == err("ERR wrong number of arguments for 'mset' command")


def test_unknown_command_wording(r: Harness) -> None:
    assert r("foo", "a", "b") == err(
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    )
    assert r("") == err("ERR unknown command '', with args beginning with: ")
    long = r("nope", "x" * 500, "y")
    assert long.startswith(b"-ERR unknown command 'nope', with args beginning with: 'xxx")
    assert len(long) < 300 and b"\r\n" not in long[:-2]


def test_protocol_error_closes(r: Harness) -> None:
    reply = r.d.execute(r.client, ProtocolError("Protocol error: invalid bulk length"))
    assert reply == err("ERR Protocol error: invalid bulk length")
    assert r.client.close_after


def test_set_options(r: Harness) -> None:
    assert r("SET", "k", "1", "NX") == b"+OK\r\n"
    assert r("SET", "k", "2", "NX") == b"$-1\r\n"
    assert r("SET", "k", "3", "XX") == b"+OK\r\n"
    assert r("SET", "missing", "3", "XX") == b"$-1\r\n"
    assert r("SET", "k", "4", "GET") == b"$1\r\n3\r\n"
    assert r("SET", "new", "4", "GET") == b"$-1\r\n"
    assert r("SET", "k", "5", "NX", "GET") == b"$1\r\n4\r\n"
    assert r("GET", "k") == b"$1\r\n4\r\n"
    assert r("SET", "k", "v", "EX", "10") == b"+OK\r\n"
    assert r("PTTL", "k") == b":10000\r\n"
    assert r("SET", "k", "v", "PX", "1500") == b"+OK\r\n"
    assert r("PTTL", "k") == b":1500\r\n"
    assert r("SET", "k", "w", "KEEPTTL") == b"+OK\r\n"
    assert r("PTTL", "k") == b":1500\r\n"
    assert r("SET", "k", "x") == b"+OK\r\n"
    assert r("PTTL", "k") == b":-1\r\n"
    assert r("SET", "k", "v", "EXAT", str(NOW // 1000 + 100)) == b"+OK\r\n"
    assert r("TTL", "k") == b":100\r\n"
    assert r("SET", "k", "v", "PXAT", str(NOW + 2500)) == b"+OK\r\n"
    assert r("PTTL", "k") == b":2500\r\n"
    # A deadline in the past is accepted and the key is gone at once.
    assert r("SET", "k", "v", "PXAT", "1") == b"+OK\r\n"
    assert r("GET", "k") == b"$-1\r\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("NX", "XX"), "ERR syntax error"),
        (("EX", "1", "PX", "1"), "ERR syntax error"),
        (("KEEPTTL", "EX", "1"), "ERR syntax error"),
        (("EX", "1", "KEEPTTL"), "ERR syntax error"),
        (("EX",), "ERR syntax error"),
        (("BOGUS",), "ERR syntax error"),
        (("EX", "x"), "ERR value is not an integer or out of range"),
        (("EX", "1.5"), "ERR value is not an integer or out of range"),
        (("EX", " 1"), "ERR value is not an integer or out of range"),
        (("EX", "0"), "ERR invalid expire time in 'set' command"),
        (("PX", "-5"), "ERR invalid expire time in 'set' command"),
        (("EX", "9999999999999999"), "ERR invalid expire time in 'set' command"),
        (("EX", "99999999999999999999"), "ERR value is not an integer or out of range"),
    ],
)
def test_set_option_errors(r: Harness, args: tuple[str, ...], message: str) -> None:
    assert r("SET", "k", "v", *args) == err(message)
    assert r("EXISTS", "k") == b":0\r\n"


def test_setnx_setex_psetex(r: Harness) -> None:
    assert r("SETNX", "k", "a") == b":1\r\n"
    assert r("SETNX", "k", "b") == b":0\r\n"
    assert r("SETEX", "k", "5", "c") == b"+OK\r\n"
    assert r("TTL", "k") == b":5\r\n"
    assert r("PSETEX", "k", "700", "d") == b"+OK\r\n"
    assert r("PTTL", "k") == b":700\r\n"
    assert r("GET", "k") == b"$1\r\nd\r\n"
    assert r("SETEX", "k", "0", "c") == err("ERR invalid expire time in 'setex' command")
    assert r("PSETEX", "k", "-1", "c") == err("ERR invalid expire time in 'psetex' command")
    assert r("SETEX", "k", "x", "c") == err("ERR value is not an integer or out of range")


def test_getdel_getex(r: Harness) -> None:
    r("SET", "k", "v")
    assert r("GETEX", "k", "EX", "9") == b"$1\r\nv\r\n"
    assert r("TTL", "k") == b":9\r\n"
    assert r("GETEX", "k", "PERSIST") == b"$1\r\nv\r\n"
    assert r("TTL", "k") == b":-1\r\n"
    assert r("GETEX", "k", "PXAT", str(NOW + 50)) == b"$1\r\nv\r\n"
    assert r("PTTL", "k") == b":50\r\n"
    assert r("GETEX", "k", "EX", "0") == err("ERR invalid expire time in 'getex' command")
    assert r("GETEX", "k", "BOGUS") == err("ERR syntax error")
    assert r("GETEX", "nope") == b"$-1\r\n"
    assert r("GETDEL", "k") == b"$1\r\nv\r\n"
    assert r("GETDEL", "k") == b"$-1\r\n"


def test_del_unlink_exists_type(r: Harness) -> None:
    r("MSET", "a", "1", "b", "2", "c", "3")
    assert r("EXISTS", "a", "a", "zz") == b":2\r\n"
    assert r("TYPE", "a") == b"+string\r\n"
    assert r("TYPE", "zz") == b"+none\r\n"
    assert r("DEL", "a", "zz") == b":1\r\n"
    assert r("UNLINK", "b", "c", "a") == b":2\r\n"
    assert r("DBSIZE") == b":0\r\n"


def test_expire_family(r: Harness) -> None:
    r("SET", "k", "v")
    assert r("TTL", "k") == b":-1\r\n"
    assert r("TTL", "nope") == b":-2\r\n"
    assert r("PTTL", "nope") == b":-2\r\n"
    assert r("EXPIRE", "nope", "10") == b":0\r\n"
    assert r("EXPIRE", "k", "10") == b":1\r\n"
    assert r("TTL", "k") == b":10\r\n"
    assert r("PEXPIRE", "k", "2000") == b":1\r\n"
    assert r("PTTL", "k") == b":2000\r\n"
    assert r("EXPIREAT", "k", str(NOW // 1000 + 30)) == b":1\r\n"
    assert r("TTL", "k") == b":30\r\n"
    assert r("PEXPIREAT", "k", str(NOW + 1234)) == b":1\r\n"
    assert r("PTTL", "k") == b":1234\r\n"
    r.clock.now += 734
    assert r("PTTL", "k") == b":500\r\n"
    assert r("TTL", "k") == b":1\r\n"  # rounded to the nearest second, as Redis does
    assert r("PERSIST", "k") == b":1\r\n"
    assert r("PERSIST", "k") == b":0\r\n"
    assert r("PERSIST", "nope") == b":0\r\n"
    assert r("EXPIRE", "k", "1") == b":1\r\n"
    r.clock.now += 1000
    assert r("GET", "k") == b"$-1\r\n"
    r("SET", "k", "v")
    assert r("EXPIRE", "k", "-1") == b":1\r\n"
    assert r("EXISTS", "k") == b":0\r\n"


def test_expire_options(r: Harness) -> None:
    r("SET", "k", "v")
    assert r("EXPIRE", "k", "10", "XX") == b":0\r\n"
    assert r("EXPIRE", "k", "10", "GT") == b":0\r\n"  # no TTL counts as infinite
    assert r("EXPIRE", "k", "10", "NX") == b":1\r\n"
    assert r("EXPIRE", "k", "20", "NX") == b":0\r\n"
    assert r("EXPIRE", "k", "5", "GT") == b":0\r\n"
    assert r("EXPIRE", "k", "20", "GT") == b":1\r\n"
    assert r("EXPIRE", "k", "30", "LT") == b":0\r\n"
    assert r("EXPIRE", "k", "15", "LT", "XX") == b":1\r\n"
    assert r("TTL", "k") == b":15\r\n"
    assert r("EXPIRE", "k", "0", "NX", "GT") == err(
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    )
    assert r("EXPIRE", "k", "1", "GT", "LT") == err(
        "ERR GT and LT options at the same time are not compatible"
    )
    assert r("EXPIRE", "k", "1", "SOON") == err("ERR Unsupported option SOON")
    assert r("EXPIRE", "k", "x") == err("ERR value is not an integer or out of range")
    assert r("EXPIRE", "k", "9999999999999999") == err(
        "ERR invalid expire time in 'expire' command"
    )


def test_mget_mset_msetnx(r: Harness) -> None:
    assert r("MSET", "a", "1", "b", "2") == b"+OK\r\n"
    assert r("MGET", "a", "nope", "b") == b"*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"
    assert r("MSETNX", "b", "x", "c", "y") == b":0\r\n"
    assert r("EXISTS", "c") == b":0\r\n"
    assert r("MSETNX", "c", "x", "d", "y") == b":1\r\n"
    assert r("MGET", "c", "d") == b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n"


def test_incr_family(r: Harness) -> None:
    assert r("INCR", "n") == b":1\r\n"
    assert r("INCRBY", "n", "41") == b":42\r\n"
    assert r("DECR", "n") == b":41\r\n"
    assert r("DECRBY", "n", "50") == b":-9\r\n"
    assert r("GET", "n") == b"$2\r\n-9\r\n"
    r("SET", "n", "10", "EX", "100")
    assert r("INCR", "n") == b":11\r\n"
    assert r("TTL", "n") == b":100\r\n"  # INCR keeps the TTL
    r("SET", "s", "abc")
    assert r("INCR", "s") == err("ERR value is not an integer or out of range")
    r("SET", "s", " 1")
    assert r("INCR", "s") == err("ERR value is not an integer or out of range")
    assert r("INCRBY", "n", "1.5") == err("ERR value is not an integer or out of range")
    r("SET", "big", "9223372036854775807")
    assert r("INCR", "big") == err("ERR increment or decrement would overflow")
    assert r("DECRBY", "n", "-9223372036854775808") == err("ERR decrement would overflow")


def test_incrbyfloat(r: Harness) -> None:
    r("SET", "f", "10.5")
    assert r("INCRBYFLOAT", "f", "0.1") == b"$4\r\n10.6\r\n"
    assert r("INCRBYFLOAT", "f", "-5") == b"$3\r\n5.6\r\n"
    assert r("INCRBYFLOAT", "g", "5.0e3") == b"$4\r\n5000\r\n"
    assert r("INCRBYFLOAT", "f", "abc") == err("ERR value is not a valid float")
    assert r("INCRBYFLOAT", "f", "1_0") == err("ERR value is not a valid float")
    r("SET", "h", "1e4932")  # a long double, as in Redis: 2e4932 is past its range
    assert r("INCRBYFLOAT", "h", "1e4932") == err("ERR increment would produce NaN or Infinity")
    r("SET", "s", "text")
    assert r("INCRBYFLOAT", "s", "1") == err("ERR value is not a valid float")


def test_append_strlen(r: Harness) -> None:
    assert r("APPEND", "k", "ab") == b":2\r\n"
    assert r("APPEND", "k", "cde") == b":5\r\n"
    assert r("GET", "k") == b"$5\r\nabcde\r\n"
    assert r("STRLEN", "k") == b":5\r\n"
    assert r("STRLEN", "nope") == b":0\r\n"


def test_size_limits_name_the_limit() -> None:
    r = Harness(max_value_size=10, max_key_size=4)
    reply = r("SET", "k", "x" * 11)
    assert reply.startswith(b"-ERR value too large") and b"max value size 10" in reply
    assert r("SET", "kkkkk", "x").startswith(b"-ERR key too large")
    assert r("MSET", "a", "1", "b", "x" * 11).startswith(b"-ERR value too large")
    assert r("EXISTS", "a") == b":0\r\n"  # MSET is all or nothing
    # The first pair over a limit is named, its key before its value.
    assert r("MSET", "a", "x" * 11, "kkkkk", "1").startswith(b"-ERR value too large")
    assert r("MSET", "kkkkk", "x" * 11).startswith(b"-ERR key too large")
    r("SET", "k", "x" * 10)
    assert r("APPEND", "k", "y").startswith(b"-ERR value too large")
    tiny = Harness(memory_limit=300)
    assert b"memory limit 300" in tiny("SET", "k", "x" * 200)


def test_select_dbsize_flush(r: Harness) -> None:
    assert r("SELECT", "0") == b"+OK\r\n"
    assert r("SELECT", "1") == err("ERR DB index is out of range")
    assert r("SELECT", "x") == err("ERR value is not an integer or out of range")
    r("MSET", "a", "1", "b", "2")
    assert r("DBSIZE") == b":2\r\n"
    assert r("FLUSHDB") == b"+OK\r\n"
    assert r("DBSIZE") == b":0\r\n"
    r("SET", "a", "1")
    assert r("FLUSHALL", "ASYNC") == b"+OK\r\n"
    assert r("FLUSHALL", "LATER") == err("ERR syntax error")
    assert r("DBSIZE") == b":0\r\n"


def _scan_all(r: Harness, *options: str) -> list[bytes]:
    keys: list[bytes] = []
    cursor = b"0"
    while True:
        reply = r("SCAN", cursor, *options)
        parts = reply.split(b"\r\n")
        cursor = parts[2]
        keys += parts[5:-1:2]
        if cursor == b"0":
            return keys


def test_scan_and_keys(r: Harness) -> None:
    for i in range(25):
        r("SET", f"user:{i}", "x")
    r("SET", "other", "x")
    assert len(_scan_all(r)) == 26
    matched = _scan_all(r, "MATCH", "user:1*", "COUNT", "7")
    assert sorted(matched) == sorted(f"user:{i}".encode() for i in (1, *range(10, 20)))
    assert _scan_all(r, "TYPE", "hash") == []
    assert r("SCAN", "x") == err("ERR invalid cursor")
    assert r("SCAN", "0", "COUNT", "0") == err("ERR syntax error")
    assert r("SCAN", "0", "COUNT") == err("ERR syntax error")
    assert r("SCAN", "0", "SORT", "1") == err("ERR syntax error")
    assert r("KEYS", "other") == b"*1\r\n$5\r\nother\r\n"
    assert r("KEYS", "*").startswith(b"*26\r\n")


def test_auth_required_when_password_set() -> None:
    r = Harness(password="s3cret")
    assert r("GET", "k") == err("NOAUTH Authentication required.")
    assert r("PING") == err("NOAUTH Authentication required.")
    assert r("nosuch").startswith(b"-ERR unknown command 'nosuch'")
    assert r("AUTH", "wrong") == err(
        "WRONGPASS invalid username-password pair or user is disabled."
    )
    assert r("AUTH", "someone", "s3cret") == err(
        "WRONGPASS invalid username-password pair or user is disabled."
    )
    assert r("AUTH", "a", "b", "c") == err("ERR syntax error")
    assert r("HELLO", "2").startswith(b"-NOAUTH HELLO must be called")
    assert r("AUTH", "s3cret") == b"+OK\r\n"
    assert r("GET", "k") == b"$-1\r\n"
    other = r.d.new_client()
    assert r("GET", "k", client=other) == err("NOAUTH Authentication required.")
    assert r("AUTH", "default", "s3cret", client=other) == b"+OK\r\n"
    third = r.d.new_client()
    assert r("HELLO", "2", "AUTH", "default", "s3cret", client=third).startswith(b"*14\r\n")
    assert r("GET", "k", client=third) == b"$-1\r\n"


def test_auth_without_password_configured(r: Harness) -> None:
    assert r("AUTH", "x") == err(
        "ERR AUTH <password> called without any password configured for the default user. "
        "Are you sure your configuration is correct?"
    )


def test_hello_switches_between_resp2_and_resp3(r: Harness) -> None:
    assert r("HELLO", "4") == err("NOPROTO unsupported protocol version")
    assert r("HELLO", "1") == err("NOPROTO unsupported protocol version")
    assert r("HELLO", "x") == err("ERR Protocol version is not an integer or out of range")
    reply = r("HELLO", "2", "SETNAME", "app")
    assert reply.startswith(b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
    assert b"$5\r\nproto\r\n:2\r\n" in reply
    assert r("HELLO").startswith(b"*14\r\n")
    assert r("CLIENT", "GETNAME") == b"$3\r\napp\r\n"
    assert r("HELLO", "2", "BOGUS") == err("ERR Syntax error in HELLO option 'BOGUS'")
    # RESP3: a map for HELLO and CONFIG GET, "_" for nulls; everything else is unchanged.
    reply = r("HELLO", "3")
    assert reply.startswith(b"%7\r\n$6\r\nserver\r\n") and b"$5\r\nproto\r\n:3\r\n" in reply
    r("SET", "a", "1")
    assert r("GET", "nope") == b"_\r\n"
    assert r("MGET", "a", "nope") == b"*2\r\n$1\r\n1\r\n_\r\n"
    assert r("SET", "a", "2", "NX") == b"_\r\n"
    assert r("CONFIG", "GET", "save") == b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert r("COMMAND", "DOCS", "nosuch") == b"%0\r\n"
    assert r("COMMAND", "DOCS", "get").startswith(b"%1\r\n$3\r\nget\r\n%")
    assert r("GET", "a") == b"$1\r\n1\r\n"
    assert r("HELLO", "2").startswith(b"*14\r\n")
    assert r("GET", "nope") == b"$-1\r\n"


def test_client_subcommands(r: Harness) -> None:
    assert r("CLIENT", "ID") == b":%d\r\n" % r.client.id
    assert r("CLIENT", "GETNAME") == b"$-1\r\n"
    assert r("CLIENT", "SETNAME", "worker-1") == b"+OK\r\n"
    assert r("CLIENT", "GETNAME") == b"$8\r\nworker-1\r\n"
    assert r("CLIENT", "SETNAME", "a b") == err(
        "ERR Client names cannot contain spaces, newlines or special characters."
    )
    assert r("CLIENT", "SETNAME") == err(
        "ERR wrong number of arguments for 'client|setname' command"
    )
    assert r("CLIENT", "SETINFO", "LIB-NAME", "redis-py") == b"+OK\r\n"
    assert r("CLIENT", "SETINFO", "lib-ver", "5.0") == b"+OK\r\n"
    assert r("CLIENT", "SETINFO", "colour", "x") == err("ERR Unrecognized option 'colour'")
    assert r("CLIENT", "foo") == err("ERR unknown subcommand 'foo'. Try CLIENT HELP.")
    assert r.d.new_client().id == r.client.id + 1


def test_command_and_config(r: Harness) -> None:
    assert r("COMMAND", "COUNT") == b":%d\r\n" % len(COMMANDS)
    assert r("COMMAND", "DOCS").startswith(b"*%d\r\n" % (2 * len(COMMANDS)))
    assert r("COMMAND", "DOCS", "nosuch") == b"*0\r\n"
    assert r("COMMAND", "DOCS", "get").startswith(b"*2\r\n$3\r\nget\r\n*10\r\n$7\r\nsummary")
    info = r("COMMAND", "INFO", "get", "nosuch")
    assert info.startswith(b"*2\r\n*10\r\n$3\r\nget\r\n:2\r\n") and info.endswith(b"$-1\r\n")
    assert r("COMMAND").startswith(b"*%d\r\n" % len(COMMANDS))
    assert b"$4\r\nmget\r\n" in r("COMMAND", "LIST")
    assert r("COMMAND", "foo") == err("ERR unknown subcommand 'foo'. Try COMMAND HELP.")
    assert r("CONFIG", "GET", "save") == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert r("CONFIG", "GET", "appendonly") == b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    assert r("CONFIG", "GET", "maxmemory") == b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"
    assert r("CONFIG", "GET", "MAXMEM*").startswith(b"*6\r\n")
    assert r("CONFIG", "GET", "requirepass") == b"*0\r\n"
    assert r("CONFIG", "SET", "save", "") == err(
        "ERR CONFIG SET failed (possibly related to argument 'save') - can't set immutable config"
    )
    assert r("CONFIG", "REWRITE") == err("ERR unknown subcommand 'REWRITE'. Try CONFIG HELP.")
    assert r("CONFIG", "GET") == err("ERR wrong number of arguments for 'config|get' command")


def test_info_sections(r: Harness) -> None:
    r.d.stats.commands_processed = 7
    r("SET", "k", "v", "EX", "100")
    reply = r("INFO")
    body = reply.split(b"\r\n", 1)[1].decode()
    sections = [line for line in body.split("\r\n") if line.startswith("#")]
    assert sections == [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Errorstats",
        "# Keyspace",
    ]
    fields = dict(
        line.split(":", 1) for line in body.split("\r\n") if line and not line.startswith("#")
    )
    assert fields["redis_version"] == "7.0.15"
    assert "blinkstore_version" in fields
    assert fields["used_memory"] == str(r.engine.used_bytes)
    assert fields["total_commands_processed"] == "7"
    assert fields["db0"] == "keys=1,expires=1,avg_ttl=0"
    assert fields["role"] == "master" and fields["blocked_clients"] == "0"
    assert int(fields["used_memory_peak"]) >= int(fields["used_memory"]) > 0
    assert float(fields["used_cpu_user"]) > 0 and int(fields["total_system_memory"]) > 0
    memory = r("INFO", "memory").decode()
    assert "# Memory" in memory and "# Server" not in memory
    assert "maxmemory_policy:allkeys-lru" in memory
    r("FLUSHALL")
    assert r("INFO", "keyspace") == b"$12\r\n# Keyspace\r\n\r\n"


def test_quit_marks_close(r: Harness) -> None:
    assert r("QUIT") == b"+OK\r\n"
    assert r.client.close_after


def test_parsers_are_strict() -> None:
    assert parse_int(b"42") == 42
    assert parse_int(b"-7") == -7
    for bad in (b"", b"+1", b" 1", b"1 ", b"1_0", b"01", b"1.0", b"9223372036854775808"):
        assert parse_int(bad) is None, bad
    assert parse_int(b"-9223372036854775808") == -(2**63)
    assert parse_float(b"1.5") == 1.5
    assert parse_float(b"-inf") == float("-inf")
    assert parse_float(b"007") == 7.0 and parse_float(b"9" * 300) == float("9" * 300)
    assert parse_float(b"0x1p4") == 16.0 and parse_float(b"4.9e-324") == 5e-324
    for bad in (b"nan", b" 1", b"1_0", b"", b"abc", b"9" * 309, b"1 ", b"1e400", b"1e-400"):
        assert parse_float(bad) is None, bad
    huge = parse_long_double(b"1e400")  # finite in a long double; rounded as redis-server does
    assert isinstance(huge, Extended) and huge.exponent > 0
    text = incremented(huge, long_double(0))
    assert text is not None and text.startswith(b"10000000000000000000281880")
    assert parse_long_double(b"1" * 5120) is None and parse_long_double(b"1e5000") is None
    assert incremented(long_double(3), long_double(0)) == b"3"
    assert incremented(long_double(10**20), long_double(0)) == b"100000000000000000000"
    tenth, fifth, infinity = map(parse_long_double, (b"0.1", b"0.2", b"inf"))
    assert tenth is not None and fifth is not None and infinity is not None
    assert incremented(tenth, fifth) == b"0.3"  # in long double, as Redis: not 0.30000000000000004
    assert incremented(long_double(1), infinity) is None


# --- the Blink Store text protocol ------------------------------------------------------


def test_text_exchange_from_design(r: Harness) -> None:
    assert r.text(b"GET missing") == b"NOT_FOUND\n"
    assert r.text(b"SET greeting hello world") == b"OK\n"
    assert r.text(b"GET greeting") == b"VALUE aGVsbG8gd29ybGQ=\n"
    assert r.text(b"USAGE") == b"USAGE %d\n" % r.engine.used_bytes
    assert r.text(b"STATS") == b"USAGE %d\n" % r.engine.used_bytes
    assert r.text(b"DELETE greeting") == b"OK\n"
    assert r.text(b"DELETE greeting") == b"NOT_FOUND\n"
    r.text(b"SET k v")
    assert r.text(b"del k") == b"OK\n"
    assert r.text(b"") == b"ERROR unknown command\n"
    assert r.text(b"FROB x") == b"ERROR unknown command\n"
    assert r.text(b"GET") == b"ERROR GET requires key\n"
    assert r.text(b"SET") == b"ERROR SET requires key\n"
    assert r.text(b"SET empty") == b"OK\n"
    assert r.text(b"GET empty") == b"VALUE \n"
    assert r.text(b"QUIT") == b""
    assert r.client.close_after


def test_text_limits_and_auth() -> None:
    r = Harness(password="pw", max_value_size=4)
    assert r.text(b"GET k") == b"ERROR authentication required\n"
    assert r.text(b"AUTH nope") == b"ERROR invalid password\n"
    assert r.text(b"AUTH pw") == b"OK\n"
    assert r.text(b"SET k 12345").startswith(b"ERROR value too large: ")
    assert r.text(b"SET k 1234") == b"OK\n"
    assert Harness().text(b"AUTH pw") == b"ERROR no password is configured\n"
    line = TooLarge("line", 5000, r.d.line_limit)
    assert execute_text(r.d, r.client, line) == (
        b"ERROR value too large: line of 5000 bytes exceeds %d bytes (max value size 4 +"
        b" max key size 65536)\n" % r.d.line_limit
    )
    assert not r.client.close_after
    assert execute_text(r.d, r.d.new_client(), line) == b"ERROR authentication required\n"


def test_requests_refused_for_their_size_leave_the_connection_open() -> None:
    r = Harness(max_value_size=100, max_request_size=1000, max_reply_size=2000)
    assert (r.d.bulk_limit, r.d.request_limit) == (64 * 1024, 1000)
    reply = r.d.execute(r.client, TooLarge("value", 70000, r.d.bulk_limit))
    assert reply == err("ERR value too large: value of 70000 bytes exceeds max value size 100")
    reply = r.d.execute(r.client, TooLarge("request", 1500, 1000))
    assert reply == err(
        "ERR request too large: request of at least 1500 bytes exceeds max request size 1000"
        " (--max-request-size)"
    )
    assert not r.client.close_after
    # The client buffer limit, when it is the smaller one, is the setting named.
    small = Harness(max_request_size=4000, max_reply_size=3000)
    assert small.d.execute(small.client, TooLarge("request", 3500, 3000)).endswith(
        b"exceeds client buffer limit 3000 (--client-buffer-limit)\r\n"
    )
    # Inside MULTI the refusal makes EXEC answer EXECABORT, as Redis does for refused commands.
    assert r("MULTI") == b"+OK\r\n"
    r.d.execute(r.client, TooLarge("value", 70000, r.d.bulk_limit))
    assert r("EXEC").startswith(b"-EXECABORT")
    # Before AUTH the refusal says nothing about the store's limits.
    locked = Harness(password="pw")
    assert locked.d.execute(locked.client, TooLarge("value", 1, 1)).startswith(b"-NOAUTH")


# --- inline commands (redis-benchmark's PING_INLINE) -------------------------------------


def test_inline_detection(r: Harness) -> None:
    known = r.d.known_commands
    assert is_inline_resp(b"PING\r", known)
    assert is_inline_resp(b"incr counter", known)
    assert not is_inline_resp(b"GET k", known)  # Blink text
    assert not is_inline_resp(b"SET k v", known)
    assert not is_inline_resp(b"", known)
    assert not is_inline_resp(b"FROB", known)
