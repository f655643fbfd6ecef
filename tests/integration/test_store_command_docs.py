"""COMMAND, COMMAND INFO, DOCS, LIST, GETKEYS and GETKEYSANDFLAGS against redis-server 7.0: the
info and docs of every command the store shares with Redis (byte for byte where Redis's own order
is fixed, as the same maps and sets where it walks a hash table), the lists and their filters,
and the keys Redis finds in the arguments, with their flags and the errors, in RESP2 and RESP3."""

from __future__ import annotations

import shlex

import pytest
import redis

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
    """The commands both servers list (subcommands included: ``config|get``...)."""
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
        assert {name for name, _ in docs} == {name for name in listed if b"|" not in name}
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
    COMMAND GETKEYSANDFLAGS bitfield k GET u8 0 OVERFLOW SAT get i8 #1
    COMMAND GETKEYSANDFLAGS bitfield k GET u8 0 INCRBY u8 0 1
    COMMAND GETKEYSANDFLAGS bitfield k GET u8
    COMMAND GETKEYSANDFLAGS bitfield k
    COMMAND GETKEYSANDFLAGS bitfield_ro k GET u8 0
    """.strip().splitlines()
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_getkeys_match_redis(redis_and_store: Servers, protocol: int) -> None:
    assert compare(redis_and_store, GETKEYS, protocol) == []


def _entry_without_subcommands(reply: bytes) -> tuple[bytes, bytes]:
    """A one-entry COMMAND INFO reply split into its first nine fields and its subcommands as
    sorted raw items (Redis lists subcommands in its hash table's order)."""
    entry = reply_items(reply)[0]
    fields = reply_items(entry)
    return b"".join(fields[:9]), b"".join(sorted(reply_items(fields[9])))


@pytest.mark.parametrize("protocol", [2, 3])
def test_info_of_every_shared_command_matches_redis(
    redis_and_store: Servers, protocol: int
) -> None:
    shared = _shared_commands(redis_and_store)
    assert b"config|resetstat" in shared and b"bitfield_ro" in shared
    connections = [RawConnection(server, protocol) for server in redis_and_store]
    try:
        for name in shared:
            redis_reply, store_reply = (c("COMMAND", "INFO", name) for c in connections)
            assert _entry_without_subcommands(store_reply) == (
                _entry_without_subcommands(redis_reply)
            ), name
            if b"|" not in redis_reply[10:]:  # else Redis's own order varies by process
                assert store_reply == redis_reply, name
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_info_lists_and_errors_match_redis(redis_and_store: Servers, protocol: int) -> None:
    script = [
        ["COMMAND", "INFO", "get", "SET", "nosuch", "Config|Get", "config|nosuch", "get|x"],
        ["COMMAND", "INFO", "zunionstore", "xreadgroup", "eval", "sort", "bitfield"],
        ["COMMAND", "LIST", "FILTERBY", "MODULE", "nosuch"],
        ["COMMAND", "LIST", "FILTERBY", "ACLCAT", "nosuch"],
        ["COMMAND", "LIST", "FILTERBY", "ACLCAT", "@write"],
        ["COMMAND", "LIST", "FILTERBY", "PATTERN", "x[a-z]*"],
        ["COMMAND", "LIST", "FILTERBY"],
        ["COMMAND", "LIST", "FILTERBY", "COLOUR", "x"],
        ["COMMAND", "LIST", "x", "y"],
        ["COMMAND", "LIST", "FILTERBY", "PATTERN", "a", "FILTERBY", "PATTERN", "b"],
    ]
    assert compare(redis_and_store, script, protocol, unordered=["COMMAND"]) == []


def _listed(server: RedisProcess | StoreProcess, *args: str) -> set[bytes]:
    connection = RawConnection(server)
    try:
        return {item.split(b"\r\n")[1] for item in reply_items(connection(*args))}
    finally:
        connection.close()


@pytest.mark.parametrize(
    "kind_and_value",
    [("ACLCAT", "read"), ("ACLCAT", "STRING"), ("ACLCAT", "dangerous"), ("PATTERN", "*|*")],
)
def test_filtered_lists_match_redis_on_shared_commands(
    redis_and_store: Servers, kind_and_value: tuple[str, str]
) -> None:
    shared = set(_shared_commands(redis_and_store))
    args = ("COMMAND", "LIST", "FILTERBY", *kind_and_value)
    redis_listed, store_listed = (_listed(server, *args) for server in redis_and_store)
    assert store_listed  # not vacuous
    assert store_listed & shared == redis_listed & shared


def test_own_commands_are_the_blinkstore_module(redis_and_store: Servers) -> None:
    own = _listed(redis_and_store[1], "COMMAND", "LIST", "FILTERBY", "MODULE", "blinkstore")
    assert own == _listed(redis_and_store[1], "COMMAND", "LIST") - set(
        _shared_commands(redis_and_store)
    )
    assert {b"bs.fetch", b"blink.lock", b"bs.shm"} <= own
    store = RawConnection(redis_and_store[1], 3)
    try:
        assert store("COMMAND", "INFO", "blink.locktoken", "bs.shm") == (
            b"*2\r\n*10\r\n$15\r\nblink.locktoken\r\n:2\r\n~3\r\n+readonly\r\n+module\r\n"
            b"+fast\r\n:1\r\n:1\r\n:1\r\n~0\r\n~0\r\n~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n"
            b"+access\r\n$12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec"
            b"\r\n%1\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange"
            b"\r\n$4\r\nspec\r\n%3\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit"
            b"\r\n:0\r\n~0\r\n"
            b"*10\r\n$6\r\nbs.shm\r\n:1\r\n~3\r\n+module\r\n+fast\r\n+no_multi\r\n:0\r\n:0\r\n"
            b":0\r\n~0\r\n~0\r\n~0\r\n~0\r\n"
        )
        everything = reply_items(store("COMMAND"))
        assert everything == reply_items(store("COMMAND", "INFO"))
        assert len(everything) == int(store("COMMAND", "COUNT")[1:])
    finally:
        store.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_parses_the_command_table_as_redis(
    redis_and_store: Servers, protocol: int
) -> None:
    clients = [
        redis.Redis(unix_socket_path=server.unix_path, protocol=protocol)
        for server in redis_and_store
    ]
    try:
        redis_table, store_table = (client.command() for client in clients)
        assert {"get", "bitfield", "bs.fetch"} <= store_table.keys()
        for name, entry in store_table.items():
            if name in redis_table:
                entry.pop("subcommands"), redis_table[name].pop("subcommands")  # order varies
                assert entry == redis_table[name], name
        assert store_table["bs.fetch"]["first_key_pos"] == 1
        ask = ("COMMAND", "INFO", "get", "config")
        info = [client.execute_command(*ask) for client in clients]  # type: ignore[no-untyped-call]
        assert info[0]["get"] == info[1]["get"]
        bitmaps = [sorted(client.command_list(category="bitmap")) for client in clients]
        assert bitmaps[0] == bitmaps[1]
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_arity_and_flags_act_as_redis(redis_and_store: Servers, protocol: int) -> None:
    """What the store registers for a shared command is what it acts on: the arity (PFDEBUG
    takes exactly a subcommand and a key) and the write flag (a read-only script may not
    create a consumer group)."""
    script = [
        ["PFDEBUG", "GETREG", "missing", "x"],
        ["PFDEBUG", "GETREG", "missing"],
        [
            "EVAL_RO",
            "return redis.pcall('XGROUP', 'CREATE', KEYS[1], 'g', '$', 'MKSTREAM').err:sub(1, 50)",
            "1",
            "s",
        ],
        ["EXISTS", "s"],
    ]
    assert compare(redis_and_store, script, protocol) == []


def test_a_long_filter_pattern_is_refused(redis_and_store: Servers) -> None:
    store = RawConnection(redis_and_store[1])
    try:
        reply = store("COMMAND", "LIST", "FILTERBY", "PATTERN", "*" * 5000)
        assert reply == b"-ERR pattern too long (max 4096 bytes)\r\n"
        assert store("PING") == b"+PONG\r\n"
    finally:
        store.close()
