"""Redis 7.0 commands beyond the first data-type set (issue 20), run against redis-server and
``blinkstore serve``: every reply compared byte for byte, in RESP2 and RESP3, error cases
(wrong type, bad arguments, arity) included. Blocking pops are checked for parking, FIFO
order, timeouts and disconnects; the writes for WATCH.

The scripts are in ``redis_command_scripts.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess
from tests.integration.redis_command_scripts import (
    BINARY_BITMAPS,
    BITMAPS,
    ENCODINGS,
    MPOP,
    SORT,
    SORTED_SET_OPERATIONS,
    STRINGS_AND_KEYS,
)
from tests.support.differential import RawConnection, compare
from tests.support.processes import resp_server_process

Servers = tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with resp_server_process("redis") as redis, resp_server_process("store") as store:
        yield redis, store


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(
    "commands",
    [SORTED_SET_OPERATIONS, MPOP, STRINGS_AND_KEYS, SORT, BITMAPS, BINARY_BITMAPS, ENCODINGS],
    ids=["sorted-set-ops", "mpop", "strings-and-keys", "sort", "bitmaps", "binary", "encodings"],
)
def test_replies_match_redis(servers: Servers, commands: list[list[str]], protocol: int) -> None:
    assert compare(servers, commands, protocol, unordered={"SMEMBERS"}) == []


def _blocked(control: RawConnection) -> int:
    info = control("INFO", "clients")
    return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])


def _parked(control: RawConnection, count: int) -> None:
    assert wait_until(lambda: _blocked(control) == count, timeout=10)


def _blocking_story(server: RedisProcess | StoreProcess, protocol: int) -> list[bytes]:
    """What the clients of one server see: parked pops served first come first served by a
    push or ZADD, timeouts, a parked client that disconnects, and MULTI (no parking)."""
    control, a, b, c, gone = (RawConnection(server, protocol) for _ in range(5))
    try:
        assert control("FLUSHALL") == b"+OK\r\n"
        seen = []
        a.send("BLMPOP", "0", "2", "l1", "l2", "LEFT", "COUNT", "2")
        _parked(control, 1)
        b.send("BLMPOP", "0", "1", "l2", "RIGHT")
        _parked(control, 2)
        c.send("BZMPOP", "0", "1", "z", "MAX", "COUNT", "2")
        _parked(control, 3)
        seen.append(control("RPUSH", "l2", "x", "y", "z"))
        seen += [a.reply(), b.reply(), control("EXISTS", "l2")]
        seen.append(control("ZADD", "z", "1", "m", "2", "n", "3", "o"))
        seen += [c.reply(), control("ZRANGE", "z", "0", "-1", "WITHSCORES")]
        seen.append(control("ZUNIONSTORE", "z2", "1", "z"))  # a store serves a parked pop too
        c.send("BZMPOP", "0", "2", "empty", "z2", "MIN")
        seen.append(c.reply())
        seen.append(a("BLMPOP", "0.01", "1", "empty", "LEFT"))
        seen.append(c("BZMPOP", "0.01", "1", "empty", "MIN"))
        gone.send("BLMPOP", "0", "1", "left", "LEFT")
        _parked(control, 1)
        gone.close()
        _parked(control, 0)
        seen += [control("RPUSH", "left", "v"), control("LLEN", "left")]
        seen += [a("MULTI"), a("BLMPOP", "0", "1", "none", "LEFT")]
        seen += [a("BZMPOP", "0", "1", "none", "MIN"), a("EXEC"), control("PING")]
        return seen
    finally:
        for connection in (control, a, b, c, gone):
            connection.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_blocking_mpop_parks_like_redis(servers: Servers, protocol: int) -> None:
    redis_saw, store_saw = (_blocking_story(server, protocol) for server in servers)
    assert store_saw == redis_saw
    assert redis_saw[1] == b"*2\r\n$2\r\nl2\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n"


#: Writes that count as a change of a WATCHed key (EXEC then answers nil), and those that
#: change nothing, so Redis leaves the watch alone (a ZADD of a member's own score too).
UNCHANGED = [["SETBIT", "k", "3", "1"], ["SETRANGE", "k", "2", ""], ["ZADD", "k", "1", "a"]]
WATCHED_WRITES = [
    *UNCHANGED,
    ["ZADD", "k", "2", "a"],
    ["ZADD", "k", "1", "a", "1", "b"],
    ["GETSET", "k", "new"],
    ["SETRANGE", "k", "1", "zz"],
    ["SETBIT", "k", "0", "1"],
    ["BITOP", "NOT", "k", "k"],
    ["SORT", "list", "STORE", "k"],
    ["ZUNIONSTORE", "k", "1", "zset"],
    ["ZRANGESTORE", "k", "zset", "0", "-1"],
    ["ZINTERSTORE", "k", "1", "zset"],
    ["ZDIFFSTORE", "k", "1", "zset"],
    ["LMPOP", "1", "k", "LEFT"],
    ["ZMPOP", "1", "k", "MIN"],
]


def _watch_story(server: RedisProcess | StoreProcess, write: list[str]) -> list[bytes]:
    watcher, other = RawConnection(server), RawConnection(server)
    try:
        assert other("FLUSHALL") == b"+OK\r\n"
        other("RPUSH", "list", "3", "1", "2")
        other("ZADD", "zset", "1", "a")
        kind = {"LMPOP": "list", "ZMPOP": "zset", "ZADD": "zset"}.get(write[0], "string")
        setup = {"list": ["RPUSH", "k", "a"], "zset": ["ZADD", "k", "1", "a"]}
        other(*setup.get(kind, ["SET", "k", "value"]))
        seen = [watcher("WATCH", "k"), other(*write), watcher("MULTI")]
        seen += [watcher("PING"), watcher("EXEC"), other("TYPE", "k")]
        return seen
    finally:
        watcher.close()
        other.close()


@pytest.mark.parametrize("write", WATCHED_WRITES, ids=" ".join)
def test_writes_touch_watched_keys(servers: Servers, write: list[str]) -> None:
    redis_saw, store_saw = (_watch_story(server, write) for server in servers)
    assert store_saw == redis_saw
    assert (redis_saw[4] == b"*-1\r\n") == (write not in UNCHANGED)
