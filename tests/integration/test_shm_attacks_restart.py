"""A store that dies unsupervised (kill -9, no supervisor to revoke its region): its readers
must not go on answering from the dead region, whatever replaces it (issue 23, item 2).

A successor with the region off, a successor whose region cannot be created (a low address
space limit, as ``ulimit -v`` sets), and no successor at all (the store's heartbeat stops).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from blinkstore_gunicorn.client import Cache
from blinkstore_gunicorn.client._core import OnError
from blinkstore_gunicorn.shm import handout
from harness.gunicorn import wait_until
from harness.processes import StoreProcess
from tests.conftest import StoreFactory
from tests.integration.shm_attack_support import redis_client, startup_hook

pytestmark = pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)")

# A sitecustomize that gives the interpreter (the store) a small address space, as
# ``ulimit -v`` would: Python starts, a region of a few GiB cannot be mapped.
_LOW_ADDRESS_SPACE = """\
import resource
resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
"""


def _cache_that_read_v1(store: StoreProcess, on_error: OnError = "raise") -> Cache:
    """A client that wrote ``price=v1`` and read it back from the store's region."""
    cache = Cache(store.url, on_error=on_error)
    cache.set("price", "v1")
    with redis_client(store) as client:
        before = client.info()["shm_keyspace_hits"]
        assert cache.get("price") == "v1"
        assert client.info()["shm_keyspace_hits"] == before + 1, "read from the region"
    return cache


def _set_acknowledged(cache: Cache, value: str, successor: StoreProcess) -> None:
    """``cache.set`` (its connection to the dead store is replaced without an error)."""
    cache.set("price", value)
    with redis_client(successor) as client:
        assert client.exists("price"), "the successor acknowledged it"


@pytest.mark.parametrize("shm", ["off", "on"])
def test_read_your_write_after_an_unsupervised_restart(
    blinkstore_factory: StoreFactory, shm: str
) -> None:
    first = blinkstore_factory("--memory-limit", "4MiB")
    cache = _cache_that_read_v1(first)
    try:
        first.stop(signal.SIGKILL)
        second = blinkstore_factory(
            "--memory-limit", "4MiB", "--shm", shm, directory=first.directory
        )
        _set_acknowledged(cache, "v3", second)
        assert cache.get("price") == "v3", "read its own acknowledged write"
        assert cache.get_many(["price"]) == {"price": "v3"}
    finally:
        cache.close()


def test_read_your_write_when_the_successor_cannot_create_its_region(
    blinkstore_factory: StoreFactory, tmp_path: Path
) -> None:
    first = blinkstore_factory("--memory-limit", "4MiB")
    cache = _cache_that_read_v1(first)
    try:
        first.stop(signal.SIGKILL)
        second = blinkstore_factory(
            "--memory-limit",
            "4GiB",
            directory=first.directory,
            env=startup_hook(tmp_path, _LOW_ADDRESS_SPACE),
        )
        with redis_client(second) as client:
            assert client.info()["shm_enabled"] == 0, "its region was not created"
        _set_acknowledged(cache, "v3", second)
        assert cache.get("price") == "v3"
    finally:
        cache.close()


def test_a_dead_store_s_region_stops_answering_when_nobody_replaces_it(
    blinkstore_factory: StoreFactory,
) -> None:
    store = blinkstore_factory("--memory-limit", "4MiB")
    cache = _cache_that_read_v1(store, on_error="miss")
    assert store.unix_path is not None
    reader = handout.attach(store.unix_path, None, 10)
    try:
        assert reader.get(b"price") is not None
        os.kill(store.pid, signal.SIGKILL)
        store.proc.wait()
        # Nothing revokes the region and no store takes the socket over: only the store's
        # heartbeat, which stopped, can tell its readers.
        assert wait_until(lambda: cache.get("price") is None, timeout=15), "still read v1"
        assert wait_until(lambda: not isinstance(reader.get(b"price"), bytes), timeout=15)
    finally:
        cache.close()
        reader.close()
