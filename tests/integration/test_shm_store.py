"""Shared-memory reads against a real ``blinkstore serve``: the region a client maps through
``BS.SHM`` follows every write the store acknowledged (set, overwrite, DEL, TTL, FLUSHDB,
eviction), counts in INFO, is refused where it must be, and is abandoned when the store dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest
import redis

from blinkstore_gunicorn.shm import handout
from blinkstore_gunicorn.shm.generation import generation_path
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionReader
from harness.gunicorn import wait_until
from harness.processes import StoreProcess, resp_command
from tests.conftest import StoreFactory

pytestmark = [
    pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)"),
    pytest.mark.usefixtures("shm_path"),  # the C helper's path, then the Python reference
]


def _redis(store: StoreProcess) -> redis.Redis:
    assert store.unix_path is not None
    return redis.Redis(unix_socket_path=store.unix_path, socket_timeout=10)


@pytest.fixture
def store(blinkstore_factory: StoreFactory) -> StoreProcess:
    return blinkstore_factory("--memory-limit", "4MiB")


@pytest.fixture
def peer(store: StoreProcess) -> Iterator[redis.Redis]:
    client = _redis(store)
    yield client
    client.close()


@pytest.fixture
def reader(store: StoreProcess) -> Iterator[RegionReader]:
    assert store.unix_path is not None
    view = handout.attach(store.unix_path, None, 10)
    yield view
    view.close()


def test_every_acknowledged_write_is_visible(peer: redis.Redis, reader: RegionReader) -> None:
    assert reader.get(b"k") is None
    peer.set("k", b"v1")
    assert reader.get(b"k") == b"v1"
    peer.set("k", b"x" * 3000)
    assert reader.get(b"k") == b"x" * 3000
    peer.append("k", b"!")
    assert reader.get(b"k") == b"x" * 3000 + b"!"
    peer.incr("n")
    assert reader.get(b"n") == b"1"
    peer.delete("k")
    assert reader.get(b"k") is None
    peer.set("big", b"b" * 100_000)
    assert reader.get(b"big") is FALLBACK, "above shm_max_value: read over the socket"
    peer.set("t", b"v", px=100_000)
    deadline = reader.expire_at_of(b"t")
    assert isinstance(deadline, int)
    assert 0 < deadline - time.time() * 1000 <= 100_000
    peer.persist("t")
    assert reader.expire_at_of(b"t") == 0
    peer.flushdb()
    assert reader.get(b"n") is None and reader.get(b"t") is None


def test_ttl_is_honoured_by_readers(peer: redis.Redis, reader: RegionReader) -> None:
    peer.set("short", b"v", px=150)
    assert reader.get(b"short") == b"v"
    assert wait_until(lambda: reader.get(b"short") is None, timeout=10)


def test_eviction_is_visible_and_region_hits_count(peer: redis.Redis, reader: RegionReader) -> None:
    for n in range(3000):
        peer.set(f"key:{n}", os.urandom(1500))
    info = peer.info()
    assert info["evicted_keys"] > 0
    held = {n for n in range(3000) if peer.exists(f"key:{n}")}
    assert 0 < len(held) < 3000
    for n in range(3000):
        found = reader.get(b"key:%d" % n)
        if found is FALLBACK and n not in held:
            # A probe that meets MAX_PROBE taken slots (evictions leave tombstones) asks the
            # store, as the client does; the store counts the miss.
            assert peer.get(f"key:{n}") is None, n
            continue
        assert (found is not None) == (n in held), n
    after = peer.info()
    assert after["keyspace_hits"] - info["keyspace_hits"] == len(held)
    assert after["keyspace_misses"] - info["keyspace_misses"] == 3000 - len(held)
    assert after["shm_enabled"] == 1
    assert after["shm_keyspace_hits"] - info["shm_keyspace_hits"] == len(held)


def _read_after_signal(path: str, pipe: Connection) -> None:
    view = handout.attach(path, None, 10)
    pipe.send("attached")
    key = pipe.recv()
    pipe.send(view.get(key))


def test_read_your_write_across_processes(store: StoreProcess, peer: redis.Redis) -> None:
    assert store.unix_path is not None
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_read_after_signal, args=(store.unix_path, theirs))
    child.start()
    try:
        assert ours.poll(30) and ours.recv() == "attached"
        peer.set("fresh", b"written by another process")
        ours.send(b"fresh")
        assert ours.poll(30) and ours.recv() == b"written by another process"
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()


def test_refused_when_off_or_over_tcp(blinkstore_factory: StoreFactory) -> None:
    off = blinkstore_factory("--shm", "off", tcp=True)
    assert off.unix_path is not None
    with pytest.raises(handout.RegionUnavailable, match="shared memory is off"):
        handout.attach(off.unix_path, None, 10)
    on = blinkstore_factory(tcp=True)
    with on.connect("tcp") as sock:
        sock.sendall(resp_command("BS.SHM"))
        assert sock.recv(100) == b"-ERR BS.SHM needs a Unix socket connection\r\n"
    with on.connect("unix") as sock:
        sock.sendall(resp_command("MULTI") + resp_command("BS.SHM"))
        expected = b"+OK\r\n-ERR Command not allowed inside a transaction\r\n"
        received = b""
        while len(received) < len(expected):
            received += sock.recv(100)
        assert received == expected


def test_needs_auth_when_the_store_has_a_password(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory("--password", "s3cret")
    assert store.unix_path is not None
    with pytest.raises(handout.RegionUnavailable):
        handout.attach(store.unix_path, None, 10)
    view = handout.attach(store.unix_path, "s3cret", 10)
    assert view.get(b"nothing") is None
    view.close()


@pytest.mark.parametrize("successor", [[], ["--shm", "off"]], ids=["region-on", "region-off"])
def test_a_killed_store_s_region_is_abandoned_by_its_successor(
    blinkstore_factory: StoreFactory, successor: list[str]
) -> None:
    """No supervisor: the successor alone must make readers of the dead region stop before it
    acknowledges a write, whether it publishes a region itself or not."""
    first = blinkstore_factory()
    assert first.unix_path is not None
    client = _redis(first)
    client.set("k", b"old")
    old = handout.attach(first.unix_path, None, 10)
    assert old.get(b"k") == b"old"
    os.kill(first.pid, signal.SIGKILL)
    first.proc.wait()
    second = blinkstore_factory(*successor, directory=first.directory)
    assert second.unix_path == first.unix_path
    client = _redis(second)
    client.set("k", b"new")
    assert old.get(b"k") is FALLBACK and not old.alive
    if not successor:
        new = handout.attach(second.unix_path, None, 10)
        assert new.get(b"k") == b"new"
        client.close()
        second.stop()
        assert new.get(b"k") is FALLBACK, "a stopped store says so"
        assert not os.path.exists(generation_path(second.unix_path))
        new.close()
    client.close()
    old.close()


@pytest.mark.parametrize("how", ["mset", "multi-exec"])
def test_a_multi_key_read_never_mixes_two_multi_key_writes(
    blinkstore_factory: StoreFactory, how: str
) -> None:
    store = blinkstore_factory()
    assert store.unix_path is not None
    keys = [b"a", b"b", b"c"]
    stop = threading.Event()

    def write() -> None:
        client = _redis(store)
        version = 0
        while not stop.is_set():
            version += 1
            # Values of different sizes, so that blocks move between size classes.
            values = dict.fromkeys(keys, b"%d:" % version + b"x" * (version % 300))
            if how == "mset":
                client.mset(values)
            else:
                with client.pipeline(transaction=True) as pipe:
                    for key, value in values.items():
                        pipe.set(key, value)
                    pipe.execute()
        client.close()

    writer = threading.Thread(target=write)
    reader = handout.attach(store.unix_path, None, 10)
    writer.start()
    try:
        seen = mixed = 0
        deadline = time.monotonic() + 120
        while seen < 20_000 and time.monotonic() < deadline:
            values = reader.get_many(keys)
            if isinstance(values, list) and all(isinstance(v, bytes) for v in values):
                seen += 1
                mixed += len({v.split(b":")[0] for v in values if isinstance(v, bytes)}) > 1
        assert seen == 20_000 and mixed == 0
    finally:
        stop.set()
        writer.join()
        reader.close()
