"""BITFIELD and BITFIELD_RO against redis-server 7.0: seeded random programs (every width,
signed and unsigned, plain and ``#N`` offsets, the three overflow modes, values at and past the
limits) on random strings, replies and the resulting string compared byte for byte in RESP2 and
RESP3, then every error the commands give."""

from __future__ import annotations

import itertools
import random
import shlex

import pytest

from blinkstore_gunicorn.shm import handout
from harness.processes import RedisProcess, StoreProcess
from tests.conftest import StoreFactory
from tests.support.differential import RawConnection, compare

Servers = tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]
Script = list[list[str | bytes]]

pytestmark = pytest.mark.redis

PROGRAMS = 400


def _number(rng: random.Random, bits: int) -> int:
    """A SET value or an increment: small, near a width's limits, or anywhere in 64 bits."""
    edge = 1 << rng.choice([bits - 1, bits, 63, rng.randint(1, 63)])
    return rng.choice(
        [
            rng.randint(-300, 300),
            edge - rng.randint(-2, 2),
            -edge + rng.randint(-2, 2),
            rng.randint(-(1 << 63), (1 << 63) - 1),
            (1 << 63) - 1,
            -(1 << 63),
        ]
    )


def _op(rng: random.Random) -> list[str]:
    """One GET, SET, INCRBY or OVERFLOW of a random program."""
    name = rng.choice(["GET", "SET", "INCRBY", "OVERFLOW", "get", "incrby"])
    if name == "OVERFLOW":
        return [name, rng.choice(["WRAP", "SAT", "FAIL", "wrap", "sat", "fail"])]
    signed = rng.random() < 0.5
    bits = rng.randint(1, 64 if signed else 63)
    kind = ("i" if signed else "u") + str(bits)
    offset = f"#{rng.randint(0, 6)}" if rng.random() < 0.3 else str(rng.randint(0, 90))
    if name.upper() == "GET":
        return [name, kind, offset]
    return [name, kind, offset, str(max(min(_number(rng, bits), (1 << 63) - 1), -(1 << 63)))]


def _programs(seed: int, read_only: bool) -> Script:
    """Random strings, each followed by a BITFIELD program on it and a GET of the result."""
    rng = random.Random(seed)
    script: Script = []
    for _ in range(PROGRAMS):
        size = rng.choice([0, 1, 3, 8, 13])
        if size:
            script.append(["SET", "k", rng.randbytes(size)])
        else:
            script.append(["DEL", "k"])
        ops = [_op(rng) for _ in range(rng.randint(1, 6))]
        if read_only:
            ops = [op for op in ops if op[0].upper() == "GET"] or [["GET", "u8", "0"]]
        script.append(["BITFIELD_RO" if read_only else "BITFIELD", "k", *itertools.chain(*ops)])
        script.append(["GET", "k"])
    return script


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_programs_match_redis(redis_and_store: Servers, protocol: int, seed: int) -> None:
    assert compare(redis_and_store, _programs(seed, read_only=False), protocol) == []


@pytest.mark.parametrize("protocol", [2, 3])
def test_random_read_only_programs_match_redis(redis_and_store: Servers, protocol: int) -> None:
    assert compare(redis_and_store, _programs(7, read_only=True), protocol) == []


EDGES = [
    shlex.split(line)
    for line in """
    BITFIELD missing
    BITFIELD missing GET u8 0
    BITFIELD_RO missing GET i64 0
    BITFIELD k SET u8 0 255 GET u4 4 GET i4 4
    BITFIELD k SET i64 0 -9223372036854775808 INCRBY i64 0 -1
    BITFIELD k OVERFLOW SAT INCRBY i64 0 -1 INCRBY i64 0 9223372036854775807
    BITFIELD k OVERFLOW FAIL SET u1 0 2 INCRBY u63 0 -1 GET u63 0
    BITFIELD k OVERFLOW SAT SET i8 0 -9223372036854775808 SET u8 0 -1 GET i8 0
    BITFIELD k INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 5 OVERFLOW FAIL INCRBY u2 104 5
    BITFIELD k SET i8 #3 -1 GET u8 #3 GET u16 #1
    BITFIELD grown OVERFLOW FAIL SET u8 8 256
    EXISTS grown
    STRLEN grown
    BITFIELD k GET u8 4294967295
    BITFIELD k GET u8 #536870911
    BITFIELD k GET u8 #-1
    BITFIELD k GET u8 -1
    BITFIELD k GET u8 -0
    BITFIELD k GET u8 08
    BITFIELD k GET u8 1.5
    BITFIELD k GET u8 #
    BITFIELD k GET u8 #1152921504606846976
    BITFIELD k GET i8 0x
    BITFIELD k GET u64 0
    BITFIELD k GET i65 0
    BITFIELD k GET u0 0
    BITFIELD k GET I8 0
    BITFIELD k GET 8 0
    BITFIELD k GET u08 0
    BITFIELD k GET "" 0
    BITFIELD k SET u8 0 abc
    BITFIELD k SET u8 0 -0
    BITFIELD k INCRBY u8 0 99999999999999999999
    BITFIELD k GET u8
    BITFIELD k SET u8 0
    BITFIELD k INCRBY u8 0
    BITFIELD k OVERFLOW
    BITFIELD k OVERFLOW NONE GET u8 0
    BITFIELD k FOO u8 0
    BITFIELD k GET u8 0 GET u64 0 OVERFLOW NONE
    BITFIELD k OVERFLOW NONE GET u64 0
    BITFIELD_RO k SET u8 0 1
    BITFIELD_RO k GET u8 0 INCRBY u8 0 1
    BITFIELD_RO k GET u64 0
    BITFIELD_RO
    BITFIELD
    HSET h f v
    BITFIELD h GET u8 0
    BITFIELD h SET u8 0 1
    BITFIELD_RO h GET u8 0
    BITFIELD_RO h SET u8 0 1
    BITFIELD h
    """.strip().splitlines()
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_edges_and_errors_match_redis(redis_and_store: Servers, protocol: int) -> None:
    assert compare(redis_and_store, [["SET", "k", "abc"], *EDGES], protocol) == []


IN_SCRIPTS_AND_TRANSACTIONS: Script = [
    ["DEL", "k"],
    [
        "EVAL",
        "return redis.call('BITFIELD', KEYS[1], 'OVERFLOW', 'FAIL', 'INCRBY', 'u2', 0, 5,"
        " 'INCRBY', 'i8', 8, -3, 'GET', 'u16', 0)",
        "1",
        "k",
    ],
    ["EVAL_RO", "return redis.call('BITFIELD_RO', KEYS[1], 'GET', 'i8', 8)", "1", "k"],
    ["EVAL_RO", "return redis.pcall('BITFIELD', KEYS[1], 'GET', 'i8', 8)", "1", "k"],
    [
        "EVAL_RO",
        "return redis.pcall('BITFIELD', KEYS[1], 'SET', 'u8', 0, 1).err:sub(1, 50)",
        "1",
        "k",
    ],
    ["MULTI"],
    ["BITFIELD", "k", "SET", "u8", "0", "200", "GET", "u4", "0"],
    ["BITFIELD_RO", "k", "GET", "u8", "0", "GET", "u64", "0"],
    ["BITFIELD_RO", "k", "GET", "u8", "0"],
    ["EXEC"],
    ["GET", "k"],
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_in_scripts_and_transactions_as_in_redis(redis_and_store: Servers, protocol: int) -> None:
    assert compare(redis_and_store, IN_SCRIPTS_AND_TRANSACTIONS, protocol) == []


def test_a_null_byte_ends_the_width_as_in_redis(redis_and_store: Servers) -> None:
    script: Script = [["BITFIELD", "k", "SET", b"u8\0junk", "0", "200"], ["GET", "k"]]
    assert compare(redis_and_store, script, 2) == []


def test_writes_keep_the_ttl_and_break_a_watch_as_in_redis(redis_and_store: Servers) -> None:
    for server in redis_and_store:
        watcher, writer = RawConnection(server), RawConnection(server)
        try:
            watcher("FLUSHALL")
            assert watcher("SET", "k", "a", "EX", "100") == b"+OK\r\n"
            assert watcher("WATCH", "k") == b"+OK\r\n"
            assert writer("BITFIELD", "k", "GET", "u8", "0") == b"*1\r\n:97\r\n"
            assert writer("BITFIELD", "k", "SET", "u8", "0", "97") == b"*1\r\n:97\r\n"
            watcher("MULTI")
            watcher("GET", "k")
            assert watcher("EXEC") == b"*1\r\n$1\r\na\r\n"  # nothing changed: WATCH holds
            watcher("WATCH", "k")
            assert writer("BITFIELD", "k", "INCRBY", "u8", "0", "1") == b"*1\r\n:98\r\n"
            watcher("MULTI")
            watcher("GET", "k")
            assert watcher("EXEC") == b"*-1\r\n"
            ttl = int(watcher("TTL", "k")[1:])
            assert 0 < ttl <= 100
        finally:
            watcher.close()
            writer.close()


def _used_memory(connection: RawConnection) -> int:
    return int(connection("INFO", "memory").split(b"used_memory:")[1].split(b"\r\n")[0])


@pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)")
def test_writes_are_accounted_published_and_bounded(blinkstore_factory: StoreFactory) -> None:
    """SET's write path: the memory account grows with the padded string, the shared-memory
    region serves the new bytes at once, and a field past ``--max-value-size`` is refused
    before anything is built."""
    store = blinkstore_factory("--memory-limit", "4MiB", "--max-value-size", "4096")
    assert store.unix_path is not None
    connection, reader = RawConnection(store), handout.attach(store.unix_path, None, 10)
    try:
        before = _used_memory(connection)
        assert connection("BITFIELD", "k", "SET", "u8", "#999", "65") == b"*1\r\n:0\r\n"
        assert _used_memory(connection) - before >= 1000
        assert reader.get(b"k") == b"\0" * 999 + b"A"
        assert connection("BITFIELD", "k", "INCRBY", "i16", "0", "-1") == b"*1\r\n:-1\r\n"
        assert reader.get(b"k") == b"\xff\xff" + b"\0" * 997 + b"A"
        assert connection("BITFIELD", "k", "SET", "u8", "#4096", "1") == (
            b"-ERR value too large: value of 4097 bytes exceeds max value size 4096\r\n"
        )
        assert connection("STRLEN", "k") == b":1000\r\n"
    finally:
        connection.close()
        reader.close()
