"""Script shebangs (``#!lua flags=...``, Redis 7.0) on EVAL, EVALSHA, EVAL_RO and SCRIPT LOAD,
checked against redis-server and ``blinkstore serve`` alike: the same commands, byte-exact
replies, and both servers must pass."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest

from harness.processes import RedisProcess, StoreProcess
from tests.support.differential import RawConnection
from tests.support.processes import resp_server_process

pytest.importorskip("lupa")

Server = StoreProcess | RedisProcess
Connect = Callable[[], RawConnection]

READ_ONLY = b"-ERR Write commands are not allowed from read-only scripts."
WRITE_FLAG = b"-ERR Can not execute a script with write flag using *_ro command.\r\n"


@pytest.fixture(scope="module", params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with resp_server_process(request.param) as process:
        yield process


@pytest.fixture
def connect(server: Server) -> Iterator[Connect]:
    """Opens connections to ``server`` (flushed, no cached scripts), closed after the test."""
    opened: list[RawConnection] = []

    def make() -> RawConnection:
        connection = RawConnection(server)
        opened.append(connection)
        return connection

    make()("FLUSHALL")
    opened[0]("SCRIPT", "FLUSH")
    yield make
    for connection in opened:
        connection.close()


def test_a_shebang_without_flags_runs_and_keeps_line_numbers(connect: Connect) -> None:
    r = connect()
    assert r("EVAL", "#!lua\nreturn redis.call('incr', KEYS[1])", "1", "n") == b":1\r\n"
    assert r("EVAL", "#!lua\n\nreturn redis.call('incr', KEYS[1])", "1", "n") == b":2\r\n"
    # Line 3 of the text: the shebang's line counts, as for the user who wrote it.
    reply = r("EVAL", "#!lua\n\nreturn redis.call('nosuchcommand')", "0")
    assert reply.startswith(b"-ERR Unknown Redis command called from script script: ")
    assert reply.endswith(b", on @user_script:3.\r\n")


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ("#!not-lua\nreturn 1", b"-ERR Unexpected engine in script shebang: #!not-lua\r\n"),
        ("#!lua badger=data\nreturn 1", b"-ERR Unknown lua shebang option: badger=data\r\n"),
        (
            "#!lua flags=allow-oom,what?\nreturn 1",
            b"-ERR Unexpected flag in script shebang: what?\r\n",
        ),
        (
            "#!lua flags=no-writes,,allow-oom\nreturn 1",
            b"-ERR Unexpected flag in script shebang: \r\n",
        ),
        ("#!lua return 1", b"-ERR Invalid script shebang\r\n"),
        ('#!lua flags="no-writes\nreturn 1', b"-ERR Invalid engine in script shebang\r\n"),
        ("#!lua 'flags=x'y\nreturn 1", b"-ERR Invalid engine in script shebang\r\n"),
    ],
)
def test_bad_shebangs_are_refused_with_redis_words(
    connect: Connect, script: str, error: bytes
) -> None:
    r = connect()
    assert r("EVAL", script, "0") == error
    assert r("SCRIPT", "LOAD", script) == error
    assert r("SCRIPT", "EXISTS", hashlib.sha1(script.encode()).hexdigest()) == b"*1\r\n:0\r\n"
    assert r("PING") == b"+PONG\r\n"


def test_no_writes_makes_the_script_read_only(connect: Connect) -> None:
    r = connect()
    r("SET", "x", "1")
    write = "#!lua flags=no-writes\nreturn redis.call('set', KEYS[1], 2)"
    assert r("EVAL", write, "1", "x").startswith(READ_ONLY)
    read = "#!lua flags=no-writes,allow-oom\nreturn redis.call('get', KEYS[1])"
    assert r("EVAL", read, "1", "x") == b"$1\r\n1\r\n"
    assert r("EVAL_RO", read, "1", "x") == b"$1\r\n1\r\n"
    sha = r("SCRIPT", "LOAD", write)[5:-2]
    assert r("EVALSHA", sha, "1", "x").startswith(READ_ONLY)
    assert r("GET", "x") == b"$1\r\n1\r\n"


def test_eval_ro_refuses_a_script_that_may_write(connect: Connect) -> None:
    r = connect()
    r("SET", "x", "1")
    for script in ("#!lua\nreturn 1", "#!lua flags=allow-oom,allow-stale\nreturn 1"):
        assert r("EVAL_RO", script, "0") == WRITE_FLAG
        sha = r("SCRIPT", "LOAD", script)[5:-2]
        assert r("EVALSHA_RO", sha, "0") == WRITE_FLAG
        assert r("EVALSHA", sha, "0") == b":1\r\n"
    # Without a shebang, EVAL_RO runs the script and refuses its first write only.
    assert r("EVAL_RO", "return redis.call('get', KEYS[1])", "1", "x") == b"$1\r\n1\r\n"
    assert r("EVAL_RO", "return redis.call('del', KEYS[1])", "1", "x").startswith(READ_ONLY)


def test_every_flag_is_accepted(connect: Connect) -> None:
    script = (
        "#!lua flags=no-writes,allow-oom,allow-stale,no-cluster,allow-cross-slot-keys\nreturn 7"
    )
    r = connect()
    assert r("EVAL", script, "0") == b":7\r\n"
    assert r("EVAL", "#!lua flags=\nreturn redis.call('set', 'k', 'v')", "0") == b"+OK\r\n"
    assert r("EVAL", "#!lua   flags=allow-oom   \nreturn 8", "0") == b":8\r\n"
    # Quoted as Redis splits arguments (sdssplitargs).
    quoted = "#!lua \"flags=no-writes,allow-oom\"\nreturn redis.call('set', 'k', 'v')"
    assert r("EVAL", quoted, "0").startswith(READ_ONLY)
