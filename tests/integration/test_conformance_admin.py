"""Redis 7.0's administrative replies, checked against redis-server and ``blinkstore serve``
alike (docs/protocol.md, "Conformance"): the same calls, byte-exact replies, and both servers
must pass.

``CONFIG GET``/``SET hll-sparse-max-bytes`` with Redis's validation and its effect on the
HyperLogLog encoding; the ``HELP`` subcommands, in Redis's words for the subcommands the store
has; ``INFO errorstats`` and ``total_error_replies``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess
from tests.support.differential import RawConnection, reply_items

OK = b"+OK\r\n"


def _config_set_failed(why: str) -> bytes:
    return (
        b"-ERR CONFIG SET failed (possibly related to argument 'hll-sparse-max-bytes') - "
        + why.encode()
        + b"\r\n"
    )


@pytest.mark.parametrize(
    ("value", "reply", "then"),
    [
        ("1kb", OK, b"1024"),
        ("1K", OK, b"1000"),
        ("2GB", OK, b"2147483648"),
        ("0", OK, b"0"),
        ("abc", _config_set_failed("argument must be a memory value"), b"3000"),
        ("-1", _config_set_failed("argument must be a memory value"), b"3000"),
        ("1.5", _config_set_failed("argument must be a memory value"), b"3000"),
        (
            "9223372036854775808",
            _config_set_failed("argument must be between 0 and 9223372036854775807 inclusive"),
            b"3000",
        ),
    ],
)
def test_config_set_hll_sparse_max_bytes(
    connect: Callable[[], RawConnection], value: str, reply: bytes, then: bytes
) -> None:
    control = connect()
    try:
        assert control("CONFIG", "SET", "hll-sparse-max-bytes", value) == reply
        got = control("CONFIG", "GET", "hll-sparse-max-bytes")
        assert got == b"*2\r\n$20\r\nhll-sparse-max-bytes\r\n$%d\r\n%s\r\n" % (len(then), then)
    finally:
        control("CONFIG", "SET", "hll-sparse-max-bytes", "3000")


def test_config_set_refuses_a_setting_given_twice(connect: Callable[[], RawConnection]) -> None:
    control = connect()
    assert control(
        "CONFIG", "SET", "hll-sparse-max-bytes", "3000", "hll-sparse-max-bytes", "20"
    ) == _config_set_failed("duplicate parameter")


def test_hll_sparse_max_bytes_decides_when_an_hll_turns_dense(
    connect: Callable[[], RawConnection],
) -> None:
    control = connect()
    try:
        assert control("CONFIG", "SET", "hll-sparse-max-bytes", "30") == OK
        control("PFADD", "hll", *(f"e{n}" for n in range(10)))
        assert control("PFDEBUG", "ENCODING", "hll") == b"+dense\r\n"
        assert control("CONFIG", "SET", "hll-sparse-max-bytes", "3000") == OK
        control("PFADD", "other", *(f"e{n}" for n in range(10)))
        assert control("PFDEBUG", "ENCODING", "other") == b"+sparse\r\n"
        assert control("GET", "other") != control("GET", "hll")
        assert control("PFCOUNT", "other") == control("PFCOUNT", "hll") == b":10\r\n"
    finally:
        control("CONFIG", "SET", "hll-sparse-max-bytes", "3000")


#: The commands with a HELP subcommand that the store has.
HELPED = ["CLIENT", "COMMAND", "CONFIG", "MEMORY", "OBJECT", "PUBSUB", "SCRIPT", "XGROUP", "XINFO"]


@pytest.mark.parametrize("name", HELPED)
def test_help_gives_redis_lines_for_the_subcommands_there_are(
    redis_and_store: tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess], name: str
) -> None:
    redis_server, store = redis_and_store
    on_redis, on_store = RawConnection(redis_server), RawConnection(store)
    try:
        redis_lines = reply_items(on_redis(name, "HELP"))
        lines = reply_items(on_store(name, "HELP"))
        assert lines[0] == redis_lines[0] and lines[-2:] == redis_lines[-2:]
        # Redis's entries (a subcommand's line and its indented description), in its order,
        # leaving out those of the subcommands the store does not have.
        entries = _entries(lines)
        assert entries == [entry for entry in _entries(redis_lines) if entry in entries]
        for entry in entries[1:]:
            subcommand = entry[0][1:].split(b" ", 1)[0].rstrip(b"\r\n")
            if subcommand != b"(no":
                reply = on_store(name, subcommand)
                assert b"unknown subcommand '" not in reply, (subcommand, reply)
        for server in (on_redis, on_store):
            assert server(name, "HELP", "extra") == (
                b"-ERR wrong number of arguments for '%s|help' command\r\n" % name.lower().encode()
            )
    finally:
        on_redis.close()
        on_store.close()


def _entries(lines: list[bytes]) -> list[list[bytes]]:
    """``lines`` as entries: each unindented line with the indented lines after it."""
    entries: list[list[bytes]] = []
    for line in lines:
        if line.startswith(b"+ "):
            entries[-1].append(line)
        else:
            entries.append([line])
    return entries


def _info_field(control: RawConnection, section: str, name: str) -> bytes:
    info = control("INFO", section)
    return info.split(name.encode() + b":")[1].split(b"\r\n")[0]


def test_info_errorstats_counts_error_replies_by_code(
    connect: Callable[[], RawConnection],
) -> None:
    control, parked = connect(), connect()
    assert control("CONFIG", "RESETSTAT") == OK
    control("SET", "k", "v")
    control("LPUSH", "k", "x")  # WRONGTYPE
    control("NOSUCHCOMMAND")  # ERR, refused before it runs
    control("GET")  # ERR, the arity
    control("EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0")  # NOSCRIPT
    control("MULTI")
    control("INCR", "k")
    assert control("EXEC") == b"*1\r\n-ERR value is not an integer or out of range\r\n"
    # An error that a parked command gets later.
    control("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    parked.send("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">")
    assert wait_until(lambda: _info_field(control, "clients", "blocked_clients") == b"1", 20)
    control("XGROUP", "DESTROY", "s", "g")
    assert parked.reply().startswith(b"-NOGROUP ")
    body = (
        b"# Errorstats\r\nerrorstat_ERR:count=3\r\nerrorstat_NOGROUP:count=1\r\n"
        b"errorstat_NOSCRIPT:count=1\r\nerrorstat_WRONGTYPE:count=1\r\n"
    )
    assert control("INFO", "errorstats") == b"$%d\r\n%b\r\n" % (len(body), body)
    assert _info_field(control, "stats", "total_error_replies") == b"6"
    assert b"errorstat_ERR:count=3" in control("INFO") and b"errorstat_" in control("INFO", "all")
    assert control("CONFIG", "RESETSTAT") == OK
    assert control("INFO", "errorstats") == b"$14\r\n# Errorstats\r\n\r\n"
    assert _info_field(control, "stats", "total_error_replies") == b"0"
