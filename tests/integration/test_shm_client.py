"""The clients' shared-memory reads against a real ``blinkstore serve``: hits and misses from
the region (counted by the store), ``?shm=off``, fork, a store killed and restarted, churn."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import pytest
import redis

from blinkstore_gunicorn.client import AsyncCache, Cache
from blinkstore_gunicorn.shm import handout
from harness.processes import StoreProcess
from tests.conftest import StoreFactory

pytestmark = [
    pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)"),
    pytest.mark.usefixtures("shm_path"),  # the C helper's path, then the Python reference
]


def _info(store: StoreProcess) -> dict[str, Any]:
    assert store.unix_path is not None
    peer = redis.Redis(unix_socket_path=store.unix_path, socket_timeout=10)
    try:
        return peer.info()
    finally:
        peer.close()


@pytest.fixture
def store(blinkstore_factory: StoreFactory) -> StoreProcess:
    return blinkstore_factory("--memory-limit", "4MiB")


def test_reads_come_from_the_region(store: StoreProcess) -> None:
    with Cache(store.url) as cache:
        cache.set("k", {"a": 1})
        cache.set("big", b"x" * 100_000)
        cache.set("t", "v", ttl=100)
        before = _info(store)
        assert cache.get("k") == {"a": 1}
        assert cache.get("missing", "default") == "default"
        assert cache.get("big") == b"x" * 100_000
        assert cache.get_many(["k", "missing", "big"]) == {"k": {"a": 1}, "big": b"x" * 100_000}
        assert cache.exists("k") and not cache.exists("missing")
        left = cache.ttl("t")
        assert left is not None and 99 <= left <= 100
        assert cache.ttl("k") == math.inf and cache.ttl("missing") is None
        after = _info(store)
    assert after["shm_keyspace_hits"] - before["shm_keyspace_hits"] == 2
    assert after["shm_keyspace_misses"] - before["shm_keyspace_misses"] == 2
    socket_hits = after["keyspace_hits"] - after["shm_keyspace_hits"]
    # "big" twice, and "k" and "missing" once more: a get_many with one key the region cannot
    # answer asks the store for all of them (values from two moments could mix two MSETs).
    assert socket_hits - (before["keyspace_hits"] - before["shm_keyspace_hits"]) == 3
    assert after["keyspace_misses"] - before["keyspace_misses"] == 3


def test_async_reads_come_from_the_region(store: StoreProcess) -> None:
    before: dict[str, Any] = {}

    async def scenario() -> tuple[Any, Any, bool]:
        async with AsyncCache(store.url) as cache:
            await cache.set("k", [1, 2])
            # The first read maps the region in a thread (so the event loop never waits for
            # it) and may itself go over the socket.
            assert await cache.get("k") == [1, 2]
            shared = cache._shared
            assert shared is not None
            deadline = time.monotonic() + 10
            while not shared.attached:
                assert time.monotonic() < deadline, "the region was never mapped"
                await asyncio.sleep(0.01)
            before.update(_info(store))
            return await cache.get("k"), await cache.get("missing"), await cache.exists("k")

    assert asyncio.run(scenario()) == ([1, 2], None, True)
    after = _info(store)
    assert after["shm_keyspace_hits"] - before["shm_keyspace_hits"] == 1
    assert after["shm_keyspace_misses"] - before["shm_keyspace_misses"] == 1


def test_shm_off_on_the_url_reads_over_the_socket(store: StoreProcess) -> None:
    with Cache(store.url + "?shm=off") as cache:
        cache.set("k", 1)
        before = _info(store)
        assert cache.get("k") == 1
        after = _info(store)
    assert after["shm_keyspace_hits"] == before["shm_keyspace_hits"]
    assert after["keyspace_hits"] - before["keyspace_hits"] == 1


def _child_reads(url: str, pipe: Connection) -> None:
    cache = pipe.recv()
    assert isinstance(cache, str)
    with Cache(url) as fresh:
        pipe.send((fresh.get(cache), _FORKED_CACHE.get(cache)))


_FORKED_CACHE: Cache


def test_a_forked_child_maps_the_region_again(store: StoreProcess) -> None:
    global _FORKED_CACHE
    _FORKED_CACHE = Cache(store.url)
    _FORKED_CACHE.set("k", "parent")
    assert _FORKED_CACHE.get("k") == "parent"  # the parent has the region mapped
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_child_reads, args=(store.url, theirs))
    child.start()
    try:
        _FORKED_CACHE.set("k", "written after the fork")
        ours.send("k")
        assert ours.poll(30)
        assert ours.recv() == ("written after the fork", "written after the fork")
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
        _FORKED_CACHE.close()


def test_a_killed_store_s_values_are_not_served_after_its_successor_writes(
    blinkstore_factory: StoreFactory,
) -> None:
    first = blinkstore_factory()
    with Cache(first.url) as cache:
        cache.set("k", "old")
        assert cache.get("k") == "old"
        os.kill(first.pid, signal.SIGKILL)
        first.proc.wait()
        second = blinkstore_factory(directory=first.directory)
        with Cache(second.url) as writer:
            writer.set("k", "new")
        assert cache.get("k") == "new"
        # The read after that maps the new store's region.
        before = _info(second)["shm_keyspace_hits"]
        assert cache.get("k") == "new"
        assert _info(second)["shm_keyspace_hits"] == before + 1


def test_churn_at_four_times_the_limit_keeps_working(store: StoreProcess) -> None:
    value = os.urandom(2000)
    with Cache(store.url, serializer=None) as cache:
        for n in range(8000):  # ~4x the 4 MiB limit
            cache.set(f"key:{n}", value)
            recent = cache.get(f"key:{n}")
            assert recent == value
        found = sum(cache.get(f"key:{n}") is not None for n in range(8000))
    info = _info(store)
    assert info["evicted_keys"] > 0 and 0 < found < 8000
    assert info["shm_keyspace_hits"] >= 8000


_GEVENT_READER = """
from gevent import monkey; monkey.patch_all()
import sys, gevent
from blinkstore_gunicorn.client import Cache
cache = Cache(sys.argv[1])
cache.set("k", "v")
print([g.value for g in gevent.joinall([gevent.spawn(cache.get, "k") for _ in range(5)])])
"""


def test_reads_from_the_region_under_gevent(store: StoreProcess) -> None:
    pytest.importorskip("gevent")
    before = _info(store)["shm_keyspace_hits"]
    result = subprocess.run(
        [sys.executable, "-c", _GEVENT_READER, store.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['v', 'v', 'v', 'v', 'v']"
    assert _info(store)["shm_keyspace_hits"] - before == 5
