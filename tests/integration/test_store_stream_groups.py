"""Stream consumer groups (issue 20) against redis-server 7.0 and ``blinkstore serve``: every
reply compared byte for byte in RESP2 and RESP3 (``stream_group_scripts.py``; only the times
in them are masked), XREADGROUP BLOCK parked and woken like Redis, the memory account of
groups, and a fuzz run over the group commands and their option words."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from bench.abuse.fuzz import run_fuzz
from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess
from tests.integration.stream_group_scripts import (
    GROUP_ERRORS,
    GROUP_LIFE,
    LAG_AND_INFO,
    NODE_SPLITS,
    RADIX_TREE,
)
from tests.support.differential import RawConnection
from tests.support.processes import resp_server_process

Server = RedisProcess | StoreProcess

#: Where a reply holds a time: XPENDING's idle time, XINFO CONSUMERS' idle, XINFO STREAM
#: FULL's delivery and seen times (a reply's integers after an ID and a consumer name, or
#: after an ID alone in a consumer's list).
_TIMES = [
    re.compile(rb"(\*4\r\n\$\d+\r\n\d+-\d+\r\n\$\d+\r\n[^\r]*\r\n):\d+\r\n"),
    re.compile(rb"(\*3\r\n\$\d+\r\n\d+-\d+\r\n):\d+\r\n"),
    re.compile(rb"(\$(?:4\r\nidle|9\r\nseen-time)\r\n):\d+\r\n"),
]


def masked(reply: bytes) -> bytes:
    for pattern in _TIMES:
        reply = pattern.sub(rb"\1:TIME\r\n", reply)
    return reply


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Server, Server]]:
    with resp_server_process("redis") as redis, resp_server_process("store") as store:
        yield redis, store


def differences(
    servers: tuple[Server, Server], commands: list[list[str]], protocol: int
) -> list[str]:
    connections = [RawConnection(server, protocol) for server in servers]
    try:
        for connection in connections:
            assert connection("FLUSHALL") == b"+OK\r\n"
        found = []
        for args in commands:
            redis_said, store_said = (masked(connection(*args)) for connection in connections)
            if redis_said != store_said:
                found.append(f"RESP{protocol} {' '.join(args)}: {redis_said!r} vs {store_said!r}")
        return found
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(
    "commands",
    [GROUP_ERRORS, GROUP_LIFE, LAG_AND_INFO, RADIX_TREE, NODE_SPLITS],
    ids=["errors", "life", "lag-and-info", "radix-tree", "node-splits"],
)
def test_group_replies_match_redis(
    servers: tuple[Server, Server], commands: list[list[str]], protocol: int
) -> None:
    assert differences(servers, commands, protocol) == []


def test_masking_keeps_what_is_not_a_time() -> None:
    row = b"*4\r\n$3\r\n1-1\r\n$2\r\nc1\r\n:17\r\n:2\r\n"
    assert masked(row) == b"*4\r\n$3\r\n1-1\r\n$2\r\nc1\r\n:TIME\r\n:2\r\n"
    assert masked(b"$7\r\npending\r\n:3\r\n") == b"$7\r\npending\r\n:3\r\n"


def _blocked(control: RawConnection) -> int:
    info = control("INFO", "clients")
    return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])


def _parked(control: RawConnection, count: int) -> None:
    assert wait_until(lambda: _blocked(control) == count, timeout=10)


def _blocking_story(server: Server, protocol: int) -> list[bytes]:
    """What the clients of one server see: two consumers of a group parked on ``>`` served in
    arrival order (the first takes what came, the second waits for more), a reader of
    another group served by the same XADD, a parked reader whose group is destroyed, readers
    whose stream is deleted or overwritten (``-UNBLOCKED``), a timeout, a parked reader that
    disconnects, and MULTI (no parking)."""
    control, a, b, other, doomed, gone = (RawConnection(server, protocol) for _ in range(6))
    try:
        assert control("FLUSHALL") == b"+OK\r\n"
        seen = [control("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")]
        seen.append(control("XGROUP", "CREATE", "s", "h", "$"))
        a.send("XREADGROUP", "GROUP", "g", "a", "BLOCK", "0", "STREAMS", "s", ">")
        _parked(control, 1)
        b.send("XREADGROUP", "GROUP", "g", "b", "COUNT", "1", "BLOCK", "0", "STREAMS", "s", ">")
        _parked(control, 2)
        other.send("XREADGROUP", "GROUP", "h", "o", "NOACK", "BLOCK", "0", "STREAMS", "s", ">")
        _parked(control, 3)
        seen.append(control("XADD", "s", "1-1", "f", "1", "g", "2"))
        seen += [a.reply(), other.reply()]
        _parked(control, 1)
        seen.append(control("XADD", "s", "2-1", "f", "3"))
        seen += [b.reply(), control("XPENDING", "s", "g"), control("XPENDING", "s", "h")]
        seen.append(control("XGROUP", "CREATE", "s", "d", "$"))
        doomed.send("XREADGROUP", "GROUP", "d", "d", "BLOCK", "0", "STREAMS", "s", ">")
        _parked(control, 1)
        seen += [control("XGROUP", "DESTROY", "s", "d"), doomed.reply()]
        seen.append(a("XREADGROUP", "GROUP", "g", "a", "BLOCK", "10", "STREAMS", "s", ">"))
        gone.send("XREADGROUP", "GROUP", "g", "x", "BLOCK", "0", "STREAMS", "s", ">")
        _parked(control, 1)
        gone.close()
        _parked(control, 0)
        seen += [control("XADD", "s", "3-1", "f", "4"), control("XPENDING", "s", "g")]
        seen += [a("MULTI"), a("XREADGROUP", "GROUP", "g", "a", "BLOCK", "0", "STREAMS", "s", ">")]
        seen += [a("XREADGROUP", "GROUP", "g", "a", "BLOCK", "0", "STREAMS", "s", ">")]
        seen += [a("EXEC"), control("PING")]
        for ending in (["DEL", "s"], ["SET", "s", "string"]):
            seen.append(control("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"))
            b.send("XREADGROUP", "GROUP", "g", "b", "BLOCK", "0", "STREAMS", "s", ">")
            _parked(control, 1)
            seen += [control(*ending), b.reply(), control("DEL", "s")]
        return [masked(reply) for reply in seen]
    finally:
        for connection in (control, a, b, other, doomed, gone):
            connection.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_xreadgroup_block_parks_like_redis(servers: tuple[Server, Server], protocol: int) -> None:
    redis_saw, store_saw = (_blocking_story(server, protocol) for server in servers)
    assert store_saw == redis_saw
    assert redis_saw[3].startswith(b"%1\r\n" if protocol == 3 else b"*1\r\n*2\r\n")
    assert redis_saw[11].startswith(b"-NOGROUP")


def _usage(connection: RawConnection, key: str) -> int:
    return int(connection("MEMORY", "USAGE", key)[1:-2])


def test_groups_count_against_the_memory_account(servers: tuple[Server, Server]) -> None:
    store = RawConnection(servers[1])
    try:
        assert store("FLUSHALL") == b"+OK\r\n"
        for n in range(1, 201):
            store("XADD", "s", f"{n}-0", "field", "value")
        bare = _usage(store, "s")
        store("XGROUP", "CREATE", "s", "g", "0")
        store("XGROUP", "CREATECONSUMER", "s", "g", "c")
        grouped = _usage(store, "s")
        assert grouped > bare
        store("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">")
        pending = _usage(store, "s")
        assert pending >= grouped + 200 * 100  # each pending entry is counted
        assert store("XACK", "s", "g", *(f"{n}-0" for n in range(1, 201))) == b":200\r\n"
        assert _usage(store, "s") == grouped
        store("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "0")
        store("XGROUP", "SETID", "s", "g", "0")
        store("XREADGROUP", "GROUP", "g", "c", "COUNT", "50", "STREAMS", "s", ">")
        assert store("XGROUP", "DELCONSUMER", "s", "g", "c") == b":50\r\n"
        assert store("XGROUP", "DESTROY", "s", "g") == b":1\r\n"
        assert _usage(store, "s") == bare
        info = store("INFO", "memory")
        assert b"used_memory:" in info
    finally:
        store.close()


STREAM_COMMANDS = (
    "xadd", "xgroup", "xreadgroup", "xack", "xpending", "xclaim", "xautoclaim", "xinfo",
    "xsetid", "xdel", "xtrim", "xrange", "xread", "del", "copy", "rename",
)  # fmt: skip


@pytest.mark.slow
def test_fuzzing_the_group_commands_leaves_the_store_serving() -> None:
    report = run_fuzz(inputs=4000, split_inputs=40, seed=20, commands=STREAM_COMMANDS)
    print("\n".join(report.lines()))
    assert report.ok, report


#: Group commands Redis 7.0 does not count as a change of the key for WATCH (XSETID neither);
#: the one that creates the key (MKSTREAM) does.
GROUP_WRITES = [
    ["XGROUP", "CREATE", "k", "g2", "0"],
    ["XGROUP", "SETID", "k", "g", "0"],
    ["XGROUP", "DESTROY", "k", "g"],
    ["XGROUP", "CREATECONSUMER", "k", "g", "z"],
    ["XGROUP", "DELCONSUMER", "k", "g", "c"],
    ["XREADGROUP", "GROUP", "g", "c", "STREAMS", "k", ">"],
    ["XREADGROUP", "GROUP", "g", "c", "NOACK", "STREAMS", "k", ">"],
    ["XACK", "k", "g", "1-1"],
    ["XCLAIM", "k", "g", "d", "0", "1-1"],
    ["XAUTOCLAIM", "k", "g", "d", "0", "0"],
    ["XSETID", "k", "5-5"],
    ["XGROUP", "CREATE", "new", "g", "$", "MKSTREAM"],
]


def _watch_story(server: Server, write: list[str]) -> list[bytes]:
    watcher, other = RawConnection(server), RawConnection(server)
    try:
        assert other("FLUSHALL") == b"+OK\r\n"
        other("XADD", "k", "1-1", "f", "v")
        other("XADD", "k", "2-1", "f", "v")
        other("XGROUP", "CREATE", "k", "g", "0")
        other("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "k", ">")
        key = "new" if "new" in write else "k"
        return [watcher("WATCH", key), other(*write), watcher("MULTI"), watcher("EXEC")]
    finally:
        watcher.close()
        other.close()


@pytest.mark.parametrize("write", GROUP_WRITES, ids=lambda write: " ".join(write[:2]))
def test_group_commands_touch_a_watched_key_as_redis_does(
    servers: tuple[Server, Server], write: list[str]
) -> None:
    redis_saw, store_saw = (_watch_story(server, write) for server in servers)
    assert store_saw == redis_saw
    assert (redis_saw[3] == b"*-1\r\n") == ("MKSTREAM" in write)
