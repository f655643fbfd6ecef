"""Differences from Redis 7.0 that running Redis's own test suite against the store found
(docs/protocol.md, "Conformance"), each checked here against redis-server and ``blinkstore
serve`` alike: the same calls, byte-exact replies, and both servers must pass.

WATCH survives writes that change nothing; values moved into a key serve the pops parked on
it; a transaction serves parked pops only once it is whole; CLIENT UNBLOCK; a busy script
fails the transactions of the clients it refuses; scripts cannot replace the globals of the
scripts after them; a stream moved onto the key of a parked XREADGROUP is read as its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from harness.gunicorn import wait_until
from tests.support.differential import RawConnection

DEADLINE = 20
NIL = b"*-1\r\n"
OK = b"+OK\r\n"
ENTRY_100 = b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$5\r\n100-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
BUSY = (
    b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"
)


def _blocked(control: RawConnection) -> int:
    info = control("INFO", "clients")
    return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])


def _parked(control: RawConnection, count: int) -> None:
    assert wait_until(lambda: _blocked(control) == count, timeout=DEADLINE)


@pytest.mark.parametrize(
    ("setup", "write", "key"),
    [
        (["SADD s a"], "SADD s a", "s"),
        (["SADD s a"], "SREM s zz", "s"),
        (["SADD s a", "SADD s2 a"], "SMOVE s2 s a", "s"),
        (["HSET h a 1"], "HDEL h zz", "h"),
        (["HSET h a 1"], "HSETNX h a 2", "h"),
        (["SET k v"], "GETEX k PERSIST", "k"),
        ([], "FLUSHALL", "missing"),
        (["ZADD z 1 a"], "ZREM z missing other", "z"),
        (["ZADD z 1 a"], "ZINCRBY z 0 a", "z"),
        (["ZADD z 1 a"], "ZADD z 1 a", "z"),
        (["ZADD z 1 a"], "ZADD z XX 2 missing", "z"),
        (["ZADD z 1 a"], "ZREMRANGEBYSCORE z 5 6", "z"),
        (["ZADD z 1 a"], "ZREMRANGEBYRANK z 5 6", "z"),
        (["ZADD z 0 a"], "ZREMRANGEBYLEX z [x [y", "z"),
        (["ZADD z 1 a"], "ZPOPMIN z 0", "z"),
        ([], "ZPOPMIN z", "z"),
        ([], "ZUNIONSTORE z 1 missing", "z"),
        (["ZADD y 1 a", "ZADD x 1 b"], "ZINTERSTORE z 2 x y", "z"),
        (["RPUSH l a b"], "LREM l 0 missing", "l"),
        (["RPUSH l a b"], "LPOP l 0", "l"),
        (["RPUSH l a b"], "RPOP l 0", "l"),
        ([], "LPUSHX l a", "l"),
        ([], "RPUSHX l a", "l"),
        # Every write fails: the string is created or padded, and still no change is signalled.
        ([], "BITFIELD b OVERFLOW FAIL SET u8 0 256", "b"),
        (["SET b a"], "BITFIELD b OVERFLOW FAIL INCRBY u8 100 300", "b"),
        (["SET b a"], "BITFIELD b SET u8 0 97 INCRBY u8 0 0", "b"),
    ],
)
def test_watch_survives_writes_that_change_nothing(
    connect: Callable[[], RawConnection], setup: list[str], write: str, key: str
) -> None:
    assert _exec_after_write(connect, setup, write, key) == b"*1\r\n+PONG\r\n"


def _exec_after_write(
    connect: Callable[[], RawConnection], setup: list[str], write: str, key: str
) -> bytes:
    """EXEC's reply to a MULTI of one PING, on a connection that WATCHed ``key`` before another
    connection ran ``setup`` then ``write``."""
    watcher, other = connect(), connect()
    for line in setup:
        other(*line.split())
    assert watcher("WATCH", key) == OK
    other(*write.split())
    assert watcher("MULTI") == OK
    watcher("PING")
    return watcher("EXEC")


@pytest.mark.parametrize(
    ("setup", "write", "key"),
    [
        (["SADD s2 a"], "SMOVE s2 s a", "s"),
        # Redis signals these although the value is as it was.
        (["RPUSH l a b"], "LTRIM l 0 -1", "l"),
        (["RPUSH l a b"], "LSET l 0 a", "l"),
        (["ZADD z 1 a"], "ZINCRBY z 0 b", "z"),
        (["ZADD z 1 a"], "ZUNIONSTORE z 1 missing", "z"),
        (["SET b a"], "BITFIELD b SET u8 0 97 SET u8 0 98", "b"),
    ],
)
def test_watch_fails_when_redis_signals_a_write(
    connect: Callable[[], RawConnection], setup: list[str], write: str, key: str
) -> None:
    assert _exec_after_write(connect, setup, write, key) == NIL


def _changes_since_save(control: RawConnection) -> int:
    info = control("INFO", "persistence")
    return int(info.split(b"rdb_changes_since_last_save:")[1].split(b"\r\n")[0])


@pytest.mark.parametrize(
    ("initial", "fields", "changes"),
    [
        (None, "SET u8 0 1 SET u8 8 2 INCRBY u4 0 1 GET u8 0", 3),
        (None, "OVERFLOW FAIL SET u8 0 256 SET u8 8 2", 1),
        (None, "OVERFLOW FAIL SET u8 0 256", 0),
        # The string was created: every write that did not fail counts, changed or not.
        (None, "SET u8 0 7 SET u8 0 7 INCRBY u8 8 0", 3),
        # Else only the writes that changed their field, even if a later one undoes them.
        ("a", "SET u8 0 97 INCRBY u8 0 0 SET u8 0 98 SET u8 0 97", 2),
        ("a", "OVERFLOW FAIL SET u8 0 97 INCRBY u8 8 300", 1),
    ],
)
def test_bitfield_counts_the_changes_redis_counts(
    connect: Callable[[], RawConnection], initial: str | None, fields: str, changes: int
) -> None:
    control = connect()
    if initial is not None:
        control("SET", "b", initial)
    before = _changes_since_save(control)
    control("BITFIELD", "b", *fields.split())
    assert control("EXISTS", "b") == b":1\r\n"  # created, even when nothing changed
    assert _changes_since_save(control) - before == changes


def test_expire_seconds_bound_rounds_toward_zero(connect: Callable[[], RawConnection]) -> None:
    control = connect()
    control("SET", "foo", "bar")
    error = b"-ERR invalid expire time in 'expire' command\r\n"
    assert control("EXPIRE", "foo", "-9223372036854776") == error
    assert control("TTL", "foo") == b":-1\r\n"
    assert control("EXPIRE", "foo", "-9223372036854775") == b":1\r\n"


@pytest.mark.parametrize("move", ["RENAME", "RENAMENX", "COPY"])
def test_a_list_moved_into_place_serves_a_parked_pop(
    connect: Callable[[], RawConnection], move: str
) -> None:
    control, waiting = connect(), connect()
    waiting.send("BLPOP", "foo", "0")
    _parked(control, 1)
    control("LPUSH", "bob", "abc", "def", "hij")
    control(move, "bob", "foo")
    assert waiting.reply() == b"*2\r\n$3\r\nfoo\r\n$3\r\nhij\r\n"


def test_a_transaction_serves_parked_pops_with_its_end_state(
    connect: Callable[[], RawConnection],
) -> None:
    control, waiting = connect(), connect()
    waiting.send("BLPOP", "list", "0")
    _parked(control, 1)
    control("MULTI")
    for command in (["LPUSH", "list", "a"], ["DEL", "list"], ["LPUSH", "list", "b", "c"]):
        control(*command)
    control("LPOP", "list")
    assert control("EXEC") == b"*4\r\n:1\r\n:1\r\n:2\r\n$1\r\nc\r\n"
    # Pushed, deleted, pushed again and popped in one step: the waiter gets what is left.
    assert waiting.reply() == b"*2\r\n$4\r\nlist\r\n$1\r\nb\r\n"
    assert control("EXISTS", "list") == b":0\r\n"


def test_client_unblock(connect: Callable[[], RawConnection]) -> None:
    control, waiting = connect(), connect()
    waiting_id = int(waiting("CLIENT", "ID")[1:-2])
    for reason, reply in ((b"TIMEOUT", NIL), (b"ERROR", None)):
        waiting.send("BLPOP", "nothing", "0")
        _parked(control, 1)
        assert control("CLIENT", "UNBLOCK", str(waiting_id), reason) == b":1\r\n"
        answer = waiting.reply()
        if reply is None:
            assert answer == b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
        else:
            assert answer == reply
    assert control("CLIENT", "UNBLOCK", str(waiting_id)) == b":0\r\n"  # not parked now
    assert control("CLIENT", "UNBLOCK", "x") == b"-ERR value is not an integer or out of range\r\n"
    assert control("CLIENT", "UNBLOCK", "1", "later") == (
        b"-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"
    )
    assert control("CLIENT", "UNBLOCK").startswith(b"-ERR wrong number of arguments")
    assert waiting("PING") == b"+PONG\r\n"


def test_save_is_refused_inside_multi(connect: Callable[[], RawConnection]) -> None:
    control = connect()
    control("MULTI")
    assert control("SAVE") == b"-ERR Command not allowed inside a transaction\r\n"
    assert control("EXEC").startswith(b"-EXECABORT")


def test_a_busy_script_fails_the_transactions_it_refuses(
    connect: Callable[[], RawConnection],
) -> None:
    control, looping, queued, late = connect(), connect(), connect(), connect()
    assert control("CONFIG", "SET", "busy-reply-threshold", "10") == OK
    try:
        assert queued("MULTI") == OK
        assert queued("INCR", "x") == b"+QUEUED\r\n"
        looping.send("EVAL", "while true do end", "0")
        assert wait_until(lambda: control("PING") == BUSY, timeout=DEADLINE)
        # MULTI is still accepted (Redis flags it allow_busy); what is refused fails it.
        assert late("MULTI") == OK
        assert late("INCR", "x") == BUSY
        assert queued("EXEC") == b"-EXECABORT Transaction discarded because of: " + BUSY[1:]
        assert control("SCRIPT", "KILL") == OK
        assert looping.reply().startswith(b"-ERR Script killed by user")
        assert wait_until(lambda: control("PING") == b"+PONG\r\n", timeout=DEADLINE)
        assert queued("PING") == b"+PONG\r\n"  # its transaction ended with the EXECABORT
        assert late("EXEC").startswith(b"-EXECABORT Transaction discarded because of previous")
        assert control("GET", "x") == b"$-1\r\n"
    finally:
        control("CONFIG", "SET", "busy-reply-threshold", "5000")


@pytest.mark.parametrize(
    "script", ["redis = function() return 1 end", "_G = {}", "KEYS = {}", "ARGV = nil"]
)
def test_scripts_cannot_replace_globals(connect: Callable[[], RawConnection], script: str) -> None:
    control = connect()
    reply = control("EVAL", script, "1", "k")
    assert reply.startswith(b"-ERR user_script:1: Attempt to modify a readonly table script:")
    assert control("EVAL", "return {redis.call('ping')['ok'], #KEYS}", "1", "k") == (
        b"*2\r\n$4\r\nPONG\r\n:1\r\n"
    )


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ("setmetatable(_G, {})", b"-ERR Attempt to modify a readonly table script:"),
        ("rawset(_G, 'x', 1)", b"-ERR Attempt to modify a readonly table script:"),
        (
            "local g = getmetatable(_G) g.__index = {}",
            b"-ERR user_script:1: Attempt to modify a readonly table script:",
        ),
    ],
)
def test_scripts_cannot_change_the_globals_table(
    connect: Callable[[], RawConnection], script: str, error: bytes
) -> None:
    assert connect()("EVAL", script, "0").startswith(error)


def test_sort_by_a_constant_in_a_script_orders_a_set(connect: Callable[[], RawConnection]) -> None:
    control = connect()
    control("SADD", "s", "c", "aa", "b", "a", "z")
    sort = "return redis.call('sort', KEYS[1], 'by', '_')"
    assert control("EVAL", sort, "1", "s") == (
        b"*5\r\n$1\r\na\r\n$2\r\naa\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nz\r\n"
    )


def test_info_counts_cached_scripts(connect: Callable[[], RawConnection]) -> None:
    control = connect()
    control("SCRIPT", "FLUSH")
    for number in range(3):
        control("SCRIPT", "LOAD", f"return {number}")
    assert b"\r\nnumber_of_cached_scripts:3\r\n" in control("INFO", "memory")
    control("SCRIPT", "FLUSH")
    assert b"\r\nnumber_of_cached_scripts:0\r\n" in control("INFO", "memory")


def test_xread_after_deleted_entries_waits(connect: Callable[[], RawConnection]) -> None:
    control, waiting = connect(), connect()
    control("XADD", "s", "666", "f", "v")
    control("XADD", "s", "667", "f", "v")
    control("XDEL", "s", "667")
    # Only deleted entries follow 666: nothing to read, so BLOCK waits for the next XADD.
    assert control("XREAD", "STREAMS", "s", "666") == NIL
    waiting.send("XREAD", "BLOCK", "0", "STREAMS", "s", "666")
    _parked(control, 1)
    control("XADD", "s", "668", "g", "w")
    assert waiting.reply() == (
        b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$5\r\n668-0\r\n*2\r\n$1\r\ng\r\n$1\r\nw\r\n"
    )


#: BRPOPLPUSH is BLMOVE ... RIGHT LEFT; both answer the same.
BLOCKING_MOVES = [["BRPOPLPUSH", "src", "dst"], ["BLMOVE", "src", "dst", "RIGHT", "LEFT"]]


@pytest.mark.parametrize("move", BLOCKING_MOVES, ids=["brpoplpush", "blmove"])
@pytest.mark.parametrize(
    ("protocol", "null", "null_array"),
    [
        pytest.param("2", b"$-1\r\n", NIL, id="resp2"),
        pytest.param("3", b"_\r\n", b"_\r\n", id="resp3"),
    ],
)
def test_blocking_moves_reply_as_redis(
    connect: Callable[[], RawConnection],
    move: list[str],
    protocol: str,
    null: bytes,
    null_array: bytes,
) -> None:
    control = connect()
    control("HELLO", protocol)
    # Timed out (parked, then answered by the store's timer): a null array, as in Redis.
    assert control(*move, "0.01") == null_array
    # Inside MULTI an empty source answers at once, with a plain null.
    control("MULTI")
    control(*move, "0")
    control("RPUSH", "src", "a", "b")
    control(*move, "0")
    assert control("EXEC") == b"*3\r\n" + null + b":2\r\n$1\r\nb\r\n"
    assert control(*move, "0") == b"$1\r\na\r\n"
    assert control("LRANGE", "dst", "0", "-1") == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    assert control(*move, "-1") == b"-ERR timeout is negative\r\n"
    assert control(*move, "soon") == b"-ERR timeout is not a float or out of range\r\n"
    assert control(*move) == (
        b"-ERR wrong number of arguments for '%s' command\r\n" % move[0].lower().encode()
    )
    control("SET", "str", "x")
    control("RPUSH", "src", "c")
    wrongtype = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    assert control(*[("str" if arg == "src" else arg) for arg in move], "0") == wrongtype
    assert control(*[("str" if arg == "dst" else arg) for arg in move], "0") == wrongtype
    assert control("LRANGE", "src", "0", "-1") == b"*1\r\n$1\r\nc\r\n"  # nothing moved
    quoted = ", ".join(f"'{arg}'" for arg in move)
    script = f"return redis.call({quoted}, 0)"
    sha = hashlib.sha1(script.encode()).hexdigest().encode()
    assert control("EVAL", script, "0") == (
        b"-ERR This Redis command is not allowed from script script: %s, on @user_script:1.\r\n"
        % sha
    )


@pytest.mark.parametrize("move", BLOCKING_MOVES, ids=["brpoplpush", "blmove"])
def test_a_parked_blocking_move_is_woken_by_a_push(
    connect: Callable[[], RawConnection], move: list[str]
) -> None:
    control, waiting = connect(), connect()
    waiting.send(*move, "0")
    _parked(control, 1)
    assert control("RPUSH", "src", "a", "b") == b":2\r\n"
    assert waiting.reply() == b"$1\r\nb\r\n"
    assert control("LRANGE", "dst", "0", "-1") == b"*1\r\n$1\r\nb\r\n"
    assert control("LRANGE", "src", "0", "-1") == b"*1\r\n$1\r\na\r\n"


@pytest.mark.parametrize("move", BLOCKING_MOVES, ids=["brpoplpush", "blmove"])
def test_circular_blocking_moves_each_serve_once(
    connect: Callable[[], RawConnection], move: list[str]
) -> None:
    control, first, second = connect(), connect(), connect()
    first.send(*move, "0")  # src -> dst
    _parked(control, 1)
    second.send(*[{"src": "dst", "dst": "src"}.get(arg, arg) for arg in move], "0")  # dst -> src
    _parked(control, 2)
    control("RPUSH", "src", "foo")
    # The element goes to dst for the first, then back to src for the second (Redis serves
    # the keys a move makes ready after the move, not within it).
    assert first.reply() == b"$3\r\nfoo\r\n"
    assert second.reply() == b"$3\r\nfoo\r\n"
    assert control("LRANGE", "src", "0", "-1") == b"*1\r\n$3\r\nfoo\r\n"
    assert control("EXISTS", "dst") == b":0\r\n"
    assert control("PING") == b"+PONG\r\n"


@pytest.mark.parametrize(
    ("before", "after", "reply"),
    [
        # The moved stream has the group and an entry past its last ID: served at once.
        (["XGROUP CREATE s2 g $ MKSTREAM", "XADD s2 100 f v"], [], ENTRY_100),
        # It has the group, nothing new yet: the reader waits on it, past a timer tick, for
        # the next XADD.
        (["XGROUP CREATE s2 g $ MKSTREAM"], ["XADD s 100 f v"], ENTRY_100),
        # No such group there, or no stream at all.
        (
            ["XADD s2 100 f v"],
            [],
            b"-NOGROUP the consumer group this client was blocked on no longer exists\r\n",
        ),
        (["RPUSH s2 a"], [], b"-UNBLOCKED the stream key no longer exists\r\n"),
    ],
    ids=["new-entries", "waits-for-xadd", "nogroup", "not-a-stream"],
)
@pytest.mark.parametrize("move", ["RENAME", "COPY", "RESTORE"])
def test_a_stream_moved_onto_a_parked_xreadgroup_is_read_as_its_stream(
    connect: Callable[[], RawConnection],
    before: list[str],
    after: list[str],
    reply: bytes,
    move: str,
) -> None:
    control, waiting = connect(), connect()
    control("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    waiting.send("XREADGROUP", "GROUP", "g", "alice", "BLOCK", "0", "STREAMS", "s", ">")
    _parked(control, 1)
    for line in before:
        control(*line.split())
    if move == "RESTORE":
        dump = control("DUMP", "s2")
        payload = dump[dump.index(b"\r\n") + 2 : -2]
        assert control("RESTORE", "s", "0", payload, "REPLACE") == OK
    elif move == "COPY":
        assert control("COPY", "s2", "s", "REPLACE") == b":1\r\n"
    else:
        assert control("RENAME", "s2", "s") == OK
    if after:
        # A timed-out BLPOP is answered by the timer pass that also checks the parked reader.
        assert control("BLPOP", "nothing", "0.01") == NIL
        assert _blocked(control) == 1
        for line in after:
            control(*line.split())
    assert waiting.reply() == reply


@pytest.mark.parametrize(
    "wire",
    [
        b"*1\r\n$4\r\nPING\r\nSET k v\r\n\r\nGET k\r\n*2\r\n$4\r\nECHO\r\n$1\r\na\r\n",
        b"PING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nGET k\n\nECHO a\r\n",
    ],
    ids=["resp-first", "inline-first"],
)
def test_inline_and_resp_requests_mix_on_one_connection(
    connect: Callable[[], RawConnection], wire: bytes
) -> None:
    control = connect()
    control.sock.sendall(wire)
    replies = [control.reply() for _ in range(4)]
    assert replies == [b"+PONG\r\n", OK, b"$1\r\nv\r\n", b"$1\r\na\r\n"]
    assert control("PING") == b"+PONG\r\n"
