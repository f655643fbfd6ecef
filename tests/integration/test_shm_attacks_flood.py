"""Crafted keys against the region's hash table (issue 23, items 3 and 4): keys forged to one
crc32 must not stall the store, and no table state may keep a reader probing forever.

No timings are asserted: a PING must be answered within a generous bound while a flood runs,
and reads (in child processes) must return within one.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest
import redis

from bench.shm_flood import crc32_collisions
from blinkstore_gunicorn.client import Cache
from blinkstore_gunicorn.shm import handout
from harness.processes import StoreProcess, resp_command
from tests.conftest import StoreFactory
from tests.integration.shm_attack_support import (
    CHILD,
    child_answer,
    redis_client,
    started_child,
)
from tests.support.sockets import recv_line

pytestmark = pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)")

# Bounds no healthy store or reader comes near, even on a loaded 2-core machine.
PING_BOUND = 2.0
READ_BOUND = 10.0
TARGET = 0x5EED1234


@pytest.fixture
def store(blinkstore_factory: StoreFactory) -> StoreProcess:
    return blinkstore_factory()


def _flood(path: str, keys: list[bytes]) -> bool:
    """One MSET of every key: the store cannot serve anyone else while it runs."""
    client = redis.Redis(unix_socket_path=path, socket_timeout=600)
    return bool(client.mset(dict.fromkeys(keys, b"v")))


def _region_get(path: str, keys: list[bytes]) -> list[bytes | str | None]:
    reader = handout.attach(path, None, 10)
    return [
        value if value is None or isinstance(value, bytes) else "ask"
        for value in map(reader.get, keys)
    ]


def test_forged_keys_are_one_crc32() -> None:
    keys = crc32_collisions(TARGET, 500)
    assert len(set(keys)) == 500
    assert {zlib.crc32(key) for key in keys} == {TARGET}
    assert len({len(key) for key in keys}) == 1, "one META word: same hash, same length"


def test_a_flood_of_colliding_keys_does_not_stall_the_store(store: StoreProcess) -> None:
    assert store.unix_path is not None
    # On today's main one MSET of these takes several seconds (quadratic probing).
    keys = crc32_collisions(TARGET, 4000)
    # A raw socket: redis-py would retry a PING that timed out.
    with (
        store.connect(timeout=PING_BOUND) as pinger,
        started_child(_flood, store.unix_path, keys) as flood,
    ):
        # PING all along the flood: each must come back within the bound.
        while not flood.poll(0.05):
            pinger.sendall(resp_command("PING"))
            assert recv_line(pinger) == b"+PONG\r\n"
        assert flood.recv() == ("ok", True)
    with redis_client(store) as client:
        assert client.dbsize() == 4000
    # A region read of colliding keys, present and absent, returns (and right).
    absent = crc32_collisions(TARGET, 2, prefix=b"nokey:")
    found = child_answer(
        _region_get, store.unix_path, [keys[0], keys[-1], *absent], timeout=READ_BOUND
    )
    assert found[:2] == [b"v", b"v"] or "ask" in found[:2], found
    assert all(value in (None, "ask") for value in found[2:]), found


def _table_filler(count: int) -> Iterator[bytes]:
    """Keys whose crc32 falls in the first quarter of a 4096-slot table (today's third table,
    in the half the first one was in): they fill the slots an old view of 1024 slots covers."""
    n = 0
    while count:
        key = b"spin:%d" % n
        n += 1
        if zlib.crc32(key) & 4095 < 1024:
            count -= 1
            yield key


def _idle_worker(url: str, channel: Connection) -> object:
    """Read once (the region is mapped, its table adopted), sleep until told, read again."""
    cache = Cache(url)
    assert cache.get("absent") is None
    channel.send("adopted")
    channel.recv()
    return cache.get("absent")


def test_an_idle_worker_with_an_old_table_view_does_not_spin(store: StoreProcess) -> None:
    mine, theirs = CHILD.Pipe()
    with started_child(_idle_worker, store.url, theirs) as outcome:
        assert mine.poll(30) and mine.recv() == "adopted"
        # Two table switches while the worker sleeps, and its old view full of crafted keys.
        with redis_client(store) as client:
            client.mset(dict.fromkeys(_table_filler(1500), b"v"))
        mine.send("go")
        assert outcome.poll(READ_BOUND), "Cache.get('absent') did not return: it spins"
        assert outcome.recv() == ("ok", None)
