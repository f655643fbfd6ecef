"""COMMAND DOCS, GETKEYS and GETKEYSANDFLAGS against redis-server 7.0: the docs of every command
the store shares with Redis (byte for byte where Redis's own order is fixed, as the same maps and
sets where it walks a hash table), and the keys Redis finds in the arguments, with their flags
and the errors, in RESP2 and RESP3."""

from __future__ import annotations

import shlex

import pytest

from harness.processes import RedisProcess, StoreProcess
from tests.support.differential import RawConnection, compare, reply_items

Servers = tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]

pytestmark = pytest.mark.redis


def _parse(data: bytes, at: int = 0) -> tuple[object, int]:
    """A RESP3 reply as comparable values: maps and sets order-free (Redis walks a hash table
    for subcommands)."""
    end = data.index(b"\r\n", at)
    kind, text, at = data[at : at + 1], data[at + 1 : end], end + 2
    if kind == b"$":
        return data[at : at + int(text)], at + int(text) + 2
    if kind in b"+-:":
        return kind + text, at
    items = []
    for _ in range(int(text) * (2 if kind == b"%" else 1)):
        item, at = _parse(data, at)
        items.append(item)
    if kind == b"%":
        return frozenset(zip(items[::2], items[1::2], strict=True)), at
    return (frozenset(items) if kind == b"~" else tuple(items)), at


def _shared_commands(servers: Servers) -> list[bytes]:
    """The commands both servers list."""
    names = []
    for server in servers:
        connection = RawConnection(server)
        try:
            names.append(
                {item.split(b"\r\n")[1] for item in reply_items(connection("COMMAND", "LIST"))}
            )
        finally:
            connection.close()
    return sorted(names[0] & names[1])


def test_docs_of_every_shared_command_match_redis(redis_and_store: Servers) -> None:
    shared = _shared_commands(redis_and_store)
    assert len(shared) > 150
    connections = [RawConnection(server, 3) for server in redis_and_store]
    try:
        for name in shared:
            redis_reply, store_reply = (c("COMMAND", "DOCS", name) for c in connections)
            assert _parse(store_reply)[0] == _parse(redis_reply)[0], name
            if b"subcommands" not in redis_reply:  # else Redis's own order varies by process
                assert store_reply == redis_reply, name
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_docs_in_resp2_and_several_names_match_redis(
    redis_and_store: Servers, protocol: int
) -> None:
    script = [
        ["COMMAND", "DOCS", "get"],
        ["COMMAND", "DOCS", "SET", "nosuch", "zadd", "xadd", "eval"],
        ["COMMAND", "DOCS", "pfadd", "pfcount", "pfmerge", "dump", "restore"],
        ["COMMAND", "DOCS", "nosuch"],
    ]
    assert compare(redis_and_store, script, protocol) == []


def test_every_store_command_is_documented(redis_and_store: Servers) -> None:
    store = RawConnection(redis_and_store[1], 3)
    try:
        listed = {item.split(b"\r\n")[1] for item in reply_items(store("COMMAND", "LIST"))}
        docs = _parse(store("COMMAND", "DOCS"))[0]
        assert isinstance(docs, frozenset)
        assert {name for name, _ in docs} == listed
        own = dict(docs)[b"bs.fetch"]  # the store's own: documented as a module's command
        assert isinstance(own, frozenset)
        assert {(b"group", b"module"), (b"module", b"blinkstore")} <= own
    finally:
        store.close()


GETKEYS = [
    shlex.split(line)
    for line in """
    COMMAND GETKEYS
    COMMAND GETKEYS get
    COMMAND GETKEYS get a
    COMMAND GETKEYS nosuch a
    COMMAND GETKEYS ping x
    COMMAND GETKEYS get a b
    COMMAND GETKEYS mset a 1 b 2
    COMMAND GETKEYS mset a 1 b
    COMMAND GETKEYS eval "return 1" 2 k1 k2 arg
    COMMAND GETKEYS eval "return 1" 0
    COMMAND GETKEYS eval "return 1" 5 k1
    COMMAND GETKEYS eval "return 1" x
    COMMAND GETKEYS zunionstore dest 2 a b WEIGHTS 1 2
    COMMAND GETKEYS zunion 2 a b
    COMMAND GETKEYS zinter 0 a
    COMMAND GETKEYS zinter -1 a
    COMMAND GETKEYS zinter 3 a
    COMMAND GETKEYS lmpop 2 a b LEFT
    COMMAND GETKEYS blmpop 0 2 a b LEFT
    COMMAND GETKEYS xread COUNT 2 STREAMS s1 s2 0 0
    COMMAND GETKEYS xread STREAMS s1 s2 s3 0 0 0
    COMMAND GETKEYS xadd s
    COMMAND GETKEYS sort k BY w GET x STORE dst LIMIT 0 1
    COMMAND GETKEYS sort k
    COMMAND GETKEYS sort_ro k BY w
    COMMAND GETKEYS object encoding k
    COMMAND GETKEYS object nosuch k
    COMMAND GETKEYS object help
    COMMAND GETKEYS memory usage k
    COMMAND GETKEYS client list
    COMMAND GETKEYSANDFLAGS set k v
    COMMAND GETKEYSANDFLAGS set k v GET
    COMMAND GETKEYSANDFLAGS lmove a b LEFT RIGHT
    COMMAND GETKEYSANDFLAGS del a b c
    COMMAND GETKEYSANDFLAGS rename a b
    COMMAND GETKEYSANDFLAGS zunionstore dest 2 a b
    COMMAND GETKEYSANDFLAGS pfmerge d a b
    COMMAND GETKEYSANDFLAGS pfcount a b
    COMMAND GETKEYSANDFLAGS restore k 0 x
    COMMAND GETKEYSANDFLAGS dump a
    COMMAND GETKEYSANDFLAGS sort k STORE d
    COMMAND GETKEYSANDFLAGS sort_ro k
    COMMAND GETKEYSANDFLAGS xadd s * a 1
    COMMAND GETKEYSANDFLAGS bitop and d a b
    COMMAND GETKEYSANDFLAGS eval s 1 k
    COMMAND GETKEYSANDFLAGS copy a b
    COMMAND GETKEYSANDFLAGS getex k
    COMMAND GETKEYSANDFLAGS getdel k
    COMMAND GETKEYSANDFLAGS watch a b
    COMMAND GETKEYSANDFLAGS blpop a b 0
    COMMAND GETKEYSANDFLAGS lcs a b
    """.strip().splitlines()
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_getkeys_match_redis(redis_and_store: Servers, protocol: int) -> None:
    assert compare(redis_and_store, GETKEYS, protocol) == []
