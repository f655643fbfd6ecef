"""Redis 7.0's functions (FUNCTION, FCALL, FCALL_RO) against redis-server: the same commands
on both servers, replies compared byte for byte in RESP2 and RESP3, errors included."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess
from tests.support.differential import RawConnection, compare

Servers = tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]
Script = list[Sequence[str | bytes]]

pytestmark = pytest.mark.redis
pytest.importorskip("lupa")

LIB = (
    "#!lua name=mylib\n"
    "local function key(keys) return keys[1] end\n"
    "redis.register_function('setter', function(keys, args)\n"
    "  return redis.call('set', key(keys), args[1])\n"
    "end)\n"
    "redis.register_function{function_name='getter', callback=function(keys, args)\n"
    "  return redis.call('get', key(keys))\n"
    "end, flags={'no-writes', 'ALLOW-STALE'}, description='reads a key'}\n"
)
#: One function: Redis lists a library's functions in its hash table's order, which varies.
LIB_ONE = (
    "#!lua name=one\n"
    "redis.register_function{function_name='getter', callback=function(keys, args)\n"
    "  return redis.call('get', keys[1])\n"
    "end, flags={'no-writes', 'ALLOW-STALE'}, description='reads a key'}\n"
)


DEADLINE = 20
BUSY = b"-BUSY Redis is busy running a script. You can only call %b KILL or SHUTDOWN NOSAVE.\r\n"


def _lib(name: str, body: str, function: str = "f") -> str:
    """A library ``name`` with one function, ``function``, whose body is ``body``."""
    return (
        f"#!lua name={name}\n"
        f"redis.register_function('{function}', function(keys, args)\n{body}\nend)"
    )


def _run(servers: Servers, script: Script, protocol: int) -> None:
    for server in servers:  # libraries outlive FLUSHALL: start each test with none
        connection = RawConnection(server)
        assert connection("FUNCTION", "FLUSH") == b"+OK\r\n"
        connection.close()
    assert compare(servers, script, protocol) == []


@pytest.mark.parametrize("protocol", [2, 3])
def test_load_call_list_delete(redis_and_store: Servers, protocol: int) -> None:
    script: Script = [
        ["FUNCTION", "LIST"],
        ["FUNCTION", "LOAD", LIB],
        ["FCALL", "setter", "1", "k", "v"],
        ["FCALL", "SETTER", "1", "k", "w"],
        ["FCALL_RO", "getter", "1", "k"],
        ["FCALL_RO", "setter", "1", "k", "v"],
        ["FCALL", "getter", "0"],
        ["FUNCTION", "DELETE", "mylib"],
        ["FUNCTION", "LOAD", LIB_ONE],
        ["FUNCTION", "LIST"],
        ["FUNCTION", "LIST", "WITHCODE"],
        ["FUNCTION", "LIST", "LIBRARYNAME", "o*", "WITHCODE"],
        ["FUNCTION", "LIST", "LIBRARYNAME", "other*"],
        ["FUNCTION", "LIST", "LIBRARYNAME"],
        ["FUNCTION", "LIST", "BAD"],
        ["FUNCTION", "STATS"],
        ["FUNCTION", "DELETE", "one"],
        ["FUNCTION", "LOAD", LIB],
        ["FUNCTION", "LOAD", LIB],
        ["FUNCTION", "LOAD", "REPLACE", LIB.replace("'v'", "'x'")],
        ["FUNCTION", "LOAD", "REPLACE", "REPLACE", LIB],
        ["FUNCTION", "LOAD", "BAD", LIB],
        ["FUNCTION", "LOAD", _lib("other", "return 1", "setter")],
        ["FUNCTION", "LOAD", _lib("other", "return redis.call('incr', keys[1])")],
        ["FCALL", "f", "1", "n"],
        ["FUNCTION", "STATS"],
        ["FUNCTION", "DELETE", "MYLIB"],
        ["FUNCTION", "DELETE", "mylib"],
        ["FCALL", "setter", "1", "k", "v"],
        ["FUNCTION", "LIST"],
        ["FUNCTION", "FLUSH", "BAD"],
        ["FUNCTION", "FLUSH", "SYNC", "MORE"],
        ["FUNCTION", "FLUSH", "ASYNC"],
        ["FUNCTION", "STATS"],
        ["FUNCTION", "NOSUCH"],
        ["FUNCTION", "DELETE"],
        ["FUNCTION", "HELP"],
        ["FLUSHALL"],
        ["FUNCTION", "LOAD", LIB],
        ["FLUSHALL"],
        ["FCALL", "setter", "1", "k", "v"],
    ]
    _run(redis_and_store, script, protocol)


def test_fcall_arguments_and_errors(redis_and_store: Servers) -> None:
    script: Script = [
        ["FUNCTION", "LOAD", _lib("lib", "return {#keys, #args, keys[1], args[1]}")],
        ["FCALL", "f", "2", "a", "b", "c"],
        ["FCALL", "f", "0"],
        ["FCALL", "f", "x"],
        ["FCALL", "f", "3", "a"],
        ["FCALL", "f", "-1"],
        ["FCALL", "nosuch", "0"],
        ["FCALL"],
        ["FUNCTION", "LOAD", "REPLACE", _lib("lib", "return redis.call('nosuch')")],
        ["FCALL", "f", "0"],
        ["FUNCTION", "LOAD", "REPLACE", _lib("lib", "\n  error('boom')")],
        ["FCALL", "f", "0"],
        ["FUNCTION", "LOAD", "REPLACE", _lib("lib", "return redis.pcall('incr', 'k')")],
        ["SET", "k", "text"],
        ["FCALL", "f", "0"],
        [
            "FUNCTION",
            "LOAD",
            "REPLACE",
            _lib("lib", "redis.setresp(3) return redis.call('hgetall', 'h')"),
        ],
        ["HSET", "h", "a", "1"],
        ["FCALL", "f", "0"],
        ["FUNCTION", "LOAD", "REPLACE", _lib("lib", "return string.rep('a', 3)")],
        ["FCALL", "f", "0"],
    ]
    _run(redis_and_store, script, 2)


@pytest.mark.parametrize(
    "code",
    [
        "return 1",
        "#!lua\nredis.register_function('f', function() end)",
        "#!lua name=lib",
        "#!lua name=a name=b\nredis.register_function('f', function() end)",
        "#!lua name=lib foo=bar\nredis.register_function('f', function() end)",
        "#!lua name=bad-name\nredis.register_function('f', function() end)",
        "#!lua name=\nredis.register_function('f', function() end)",
        "#!wasm name=lib\nredis.register_function('f', function() end)",
        "#!lua name=lib\nbad script",
        "#!lua name=\"f\"\nredis.register_function('f', function() return 1 end)",
        "#!lua name=\"f\"x\nredis.register_function('f', function() return 1 end)",
        "#!lua name='f\nredis.register_function('f', function() return 1 end)",
        "#!lua name=lib\nreturn 1",
        "#!lua name=lib\nredis.call('ping')",
        "#!lua name=lib\nredis.setresp(3)",
        "#!lua name=lib\nmath.random()",
        "#!lua name=lib\na = 1",
        "#!lua name=lib\nlocal a = 1 while 1 do a = a + 1 end",
        "#!lua name=lib\nredis.register_function()",
        "#!lua name=lib\nredis.register_function('f')",
        "#!lua name=lib\nredis.register_function('f', function() end, 1)",
        "#!lua name=lib\nredis.register_function(1, 2)",
        "#!lua name=lib\nredis.register_function({}, function() end)",
        "#!lua name=lib\nredis.register_function('f f', function() end)",
        "#!lua name=lib\nredis.register_function('', function() end)",
        "#!lua name=lib\nredis.register_function('f', function() end)\n"
        "redis.register_function('F', function() end)",
        "#!lua name=lib\nredis.register_function('f', function() end)\n"
        "redis.register_function('f', function() end)",
        "#!lua name=lib\nredis.register_function{function_name='f'}",
        "#!lua name=lib\nredis.register_function{callback=function() end}",
        "#!lua name=lib\nredis.register_function{function_name='f', callback=1}",
        "#!lua name=lib\nredis.register_function{function_name=function() end}",
        "#!lua name=lib\nredis.register_function{function_name='f', callback=function() end,"
        " flags='no-writes'}",
        "#!lua name=lib\nredis.register_function{function_name='f', callback=function() end,"
        " flags={'bad'}}",
        "#!lua name=lib\nredis.register_function{function_name='f', callback=function() end,"
        " other=1}",
        "#!lua name=lib\nredis.register_function{function_name='f', callback=function() end,"
        " description={}}",
        "#!lua name=lib\nredis.register_function{[1]=2}",
    ],
)
def test_load_errors(redis_and_store: Servers, code: str) -> None:
    _run(redis_and_store, [["FUNCTION", "LOAD", code], ["FCALL", "f", "0"]], 2)


def test_library_sandbox(redis_and_store: Servers) -> None:
    escape = (
        "#!lua name=lib\nlocal lib = redis\n"
        "lib.register_function('f1', function() lib.redis = redis return {ok='OK'} end)\n"
        "lib.register_function('f2', function() lib.register_function('f3', function() end) end)\n"
        "redis.register_function('f4', function() redis.register_function('f5', function() end)"
        " end)\n"
        "redis.register_function('f6', function() return redis.REDIS_VERSION ~= nil end)\n"
    )
    script: Script = [
        ["FUNCTION", "LOAD", escape],
        ["FCALL", "f1", "0"],
        ["FCALL", "f2", "0"],
        ["FCALL", "f4", "0"],
        ["FCALL", "f6", "0"],
        ["FUNCTION", "LOAD", "#!lua name=lib2\nredis.math.random()"],
        ["FUNCTION", "LOAD", "#!lua name=lib2\nredis.redis.call('ping')"],
    ]
    _run(redis_and_store, script, 2)


def test_dump_and_restore(redis_and_store: Servers) -> None:
    redis_server, store = redis_and_store
    script: Script = [
        ["FUNCTION", "LOAD", LIB],
        ["FUNCTION", "DUMP"],
        ["FUNCTION", "RESTORE", "bad payload"],
        ["FUNCTION", "RESTORE", "x", "BADPOLICY"],
        ["FUNCTION", "RESTORE", "x", "FLUSH", "MORE"],
    ]
    _run(redis_and_store, script, 2)
    # Each server restores the other's payload, with each policy.
    connections = [RawConnection(server) for server in (redis_server, store)]
    try:
        payloads = [connection("FUNCTION", "DUMP") for connection in connections]
        assert payloads[0] == payloads[1]
        payload = payloads[0].split(b"\r\n", 1)[1][:-2]
        other = _lib("other", "return 2", "two")
        for connection in connections:
            assert connection("FUNCTION", "LOAD", "REPLACE", other) == b"$5\r\nother\r\n"
        replies = [
            [
                connection("FUNCTION", "RESTORE", payload),
                connection("FUNCTION", "RESTORE", payload, "APPEND"),
                connection("FUNCTION", "RESTORE", payload, "REPLACE"),
                connection("FCALL", "two", "0"),
                connection("FUNCTION", "RESTORE", payload, "FLUSH"),
                connection("FCALL", "two", "0"),
                connection("FCALL_RO", "getter", "1", "missing"),
                connection("FUNCTION", "STATS"),
            ]
            for connection in connections
        ]
        assert replies[0] == replies[1]
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("which", [0, 1], ids=["redis", "store"])
def test_function_kill_and_busy(redis_and_store: Servers, which: int) -> None:
    server = redis_and_store[which]
    control, looping = RawConnection(server), RawConnection(server)
    try:
        control("FUNCTION", "FLUSH")
        assert control("CONFIG", "SET", "busy-reply-threshold", "10") == b"+OK\r\n"
        control("FUNCTION", "LOAD", _lib("busy", "local a = 1 while true do a = a + 1 end", "loop"))
        assert control("FUNCTION", "KILL") == b"-NOTBUSY No scripts in execution right now.\r\n"
        looping.send("FCALL", "loop", "0")
        assert wait_until(lambda: control("PING") == BUSY % b"FUNCTION", timeout=DEADLINE)
        assert control("SCRIPT", "KILL") == BUSY % b"FUNCTION"
        assert control("FUNCTION", "LOAD", _lib("other", "return 1")) == BUSY % b"FUNCTION"
        stats = control("FUNCTION", "STATS")
        assert stats.startswith(
            b"*4\r\n$14\r\nrunning_script\r\n*6\r\n$4\r\nname\r\n$4\r\nloop\r\n"
            b"$7\r\ncommand\r\n*3\r\n$5\r\nFCALL\r\n$4\r\nloop\r\n$1\r\n0\r\n"
            b"$11\r\nduration_ms\r\n:"
        )
        assert control("FUNCTION", "KILL") == b"+OK\r\n"
        assert looping.reply().startswith(b"-ERR Script killed by user with SCRIPT KILL...")
        assert wait_until(lambda: control("PING") == b"+PONG\r\n", timeout=DEADLINE)
        # And the other way round: FUNCTION KILL does not stop an EVAL script.
        looping.send("EVAL", "local a = 1 while true do a = a + 1 end", "0")
        assert wait_until(lambda: control("PING") == BUSY % b"SCRIPT", timeout=DEADLINE)
        assert control("FUNCTION", "KILL") == BUSY % b"SCRIPT"
        assert control("FUNCTION", "STATS") == BUSY % b"SCRIPT"
        assert control("SCRIPT", "KILL") == b"+OK\r\n"
        assert looping.reply().startswith(b"-ERR Script killed by user with SCRIPT KILL...")
    finally:
        control("CONFIG", "SET", "busy-reply-threshold", "5000")
        control.close()
        looping.close()
