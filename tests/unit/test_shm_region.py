"""Unit tests of the shared region: layout helpers, writer + reader in one process, and the
engine publishing every mutation (set, overwrite, delete, TTL, eviction, flush) into it."""

from __future__ import annotations

import mmap
import os
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.shm import handout, layout
from blinkstore_gunicorn.shm.handout import request_region
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionError, RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)")
# Each test once with the C helper's path, then with the Python reference (a module-wide mark
# would reach the state machine's unittest case, which cannot take a parametrized fixture: it
# runs both paths as two machines instead).
both_paths = pytest.mark.usefixtures("shm_path")


class Clock:
    """A hand-driven wall clock in milliseconds."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture(params=[False, True], ids=["unsealed", "sealed"])
def region(request: pytest.FixtureRequest) -> Iterator[RegionWriter]:
    """A writer as a unit sees it, and sealed against other writers as a store runs it."""
    writer = RegionWriter(8 * 2**20, max_value=4096)
    if request.param:
        writer.seal()
    yield writer
    writer.close()


@pytest.fixture
def reader(region: RegionWriter) -> Iterator[RegionReader]:
    view = RegionReader(*region.fds, region.assign_counter())
    yield view
    view.close()


def test_block_sizes_waste_at_most_a_sixteenth() -> None:
    for n in range(1, 70_000, 7):
        size = layout.block_size(n)
        assert size >= n and size % 16 == 0
        assert size - n < max(16, size // 16)


def test_table_word_round_trips() -> None:
    assert layout.unpack_table_word(layout.table_word(0x12345000, 20)) == (0x12345000, 1 << 20)


@both_paths
def test_publish_read_overwrite_delete(region: RegionWriter, reader: RegionReader) -> None:
    handle = region.publish(b"k", b"v1", 0, 0)
    assert handle and reader.lookup(b"k") == b"v1"
    same = region.publish(b"k", b"v2", 0, handle)
    assert same == handle, "a value of the same block size is rewritten in place"
    assert reader.lookup(b"k") == b"v2"
    moved = region.publish(b"k", b"x" * 1000, 0, same)
    assert moved != handle and reader.lookup(b"k") == b"x" * 1000
    region.unpublish(b"k", moved)
    assert reader.lookup(b"k") is None
    assert region.reader_counts() == (3, 1)


@both_paths
def test_large_values_and_the_empty_key_ask_the_store(
    region: RegionWriter, reader: RegionReader
) -> None:
    assert region.publish(b"big", b"x" * 5000, 0, 0) == 0
    assert reader.lookup(b"big") is FALLBACK
    assert reader.exists(b"big") is FALLBACK
    assert region.publish(b"", b"v", 0, 0) == 0
    assert reader.lookup(b"") is FALLBACK
    region.unpublish(b"big", 0)
    assert reader.lookup(b"big") is None


@both_paths
def test_expired_entries_are_misses(region: RegionWriter, reader: RegionReader) -> None:
    handle = region.publish(b"old", b"v", 1, 0)
    assert reader.lookup(b"old") is None
    region.set_expire(b"old", handle, 0)
    assert reader.lookup(b"old") == b"v"
    assert reader.expire_at_of(b"old") == 0
    region.set_expire(b"old", handle, 2**62)
    assert reader.expire_at_of(b"old") == 2**62


@both_paths
def test_reader_hit_sets_the_visited_mark(region: RegionWriter, reader: RegionReader) -> None:
    handle = region.publish(b"k", b"v", 0, 0)
    assert not region.take_visited(handle)
    assert reader.exists(b"k") is True
    assert not region.take_visited(handle), "exists does not count as a read"
    reader.lookup(b"k")
    assert region.take_visited(handle)
    assert not region.take_visited(handle)


@both_paths
def test_growth_flush_and_close_are_seen_by_readers(
    region: RegionWriter, reader: RegionReader
) -> None:
    handles = {b"k%d" % n: region.publish(b"k%d" % n, b"v%d" % n, 0, 0) for n in range(5000)}
    # The store's ticker, which this test replaces: a beat an hour ahead keeps the region
    # fresh however long a loaded machine takes over these loops (freshness is not tested here).
    region.beat(time.monotonic_ns() + 3600 * 10**9)
    for n in range(0, 5000, 97):
        assert reader.lookup(b"k%d" % n) == b"v%d" % n
    for n in range(0, 5000, 2):
        region.unpublish(b"k%d" % n, handles.pop(b"k%d" % n))
    for n in range(5000):
        found = reader.lookup(b"k%d" % n)
        if n % 2:
            assert found == b"v%d" % n
        else:
            # Deleted: absent, or "ask the store" when the probe meets MAX_PROBE taken slots
            # (tombstones count; with some hash secrets these keys cluster: 1 region in ~150).
            assert found is None or found is FALLBACK, n
    region.flush()
    assert reader.lookup(b"k1") is None
    assert reader.alive
    region.publish(b"after", b"flush", 0, 0)
    assert reader.lookup(b"after") == b"flush"


@both_paths
def test_a_closed_or_silent_region_is_not_trusted() -> None:
    first = RegionWriter(2**20)
    first.publish(b"k", b"old", 0, 0)
    reader = RegionReader(*first.fds, 0)
    assert reader.lookup(b"k") == b"old"
    # The store died (kill -9): no heartbeat for STALE_NS, and the reader asks the socket.
    first.beat(time.monotonic_ns() - layout.STALE_NS - 1)
    assert reader.lookup(b"k") is FALLBACK and not reader.alive
    assert reader.lookup(b"absent") is FALLBACK
    first.beat(time.monotonic_ns())
    assert reader.lookup(b"k") == b"old", "beating again"
    first.close()
    second = RegionWriter(2**20)
    new_reader = RegionReader(*second.fds, 1)
    second.close()
    assert new_reader.lookup(b"k") is FALLBACK and not new_reader.alive, "closed: token 0"
    for view in (reader, new_reader):
        view.close()


@both_paths
def test_a_foreign_descriptor_is_refused(region: RegionWriter) -> None:
    fd = os.memfd_create("not-a-region")
    os.ftruncate(fd, 8192)
    try:
        with pytest.raises(RegionError):
            RegionReader(fd, region.fds[1], 0)
    finally:
        os.close(fd)


@both_paths
def test_checksum_mode_reads_the_same() -> None:
    writer = RegionWriter(2**20, checksum=True)
    view = RegionReader(*writer.fds, 0)
    handle = writer.publish(b"k", b"value", 0, 0)
    assert view.lookup(b"k") == b"value"
    writer.publish(b"k", b"other", 0, handle)
    assert view.lookup(b"k") == b"other"
    view.close()
    writer.close()


class EngineWithRegion(RuleBasedStateMachine):
    """Every key the engine holds reads the same through the region; nothing else does."""

    native = "1"  # BLINKSTORE_NATIVE for the writer and reader
    sealed = False

    def __init__(self) -> None:
        super().__init__()
        # Ahead of the real clock, which the reader uses for TTLs: the engine removes a key
        # before the reader could see its deadline pass.
        self.clock = Clock(time.time_ns() // 1_000_000 + 10**9)
        with pytest.MonkeyPatch.context() as env:
            env.setenv(NATIVE_ENV, self.native)
            self.writer = RegionWriter(64 * 1024, max_value=600)
            if self.sealed:
                self.writer.seal()
            self.reader = RegionReader(*self.writer.fds, 0)
        self.engine = MemoryEngine(memory_limit=64 * 1024, clock_ms=self.clock)
        self.engine.attach_region(self.writer)
        self.seen: set[bytes] = set()

    keys = st.sampled_from([b"k%d" % n for n in range(40)] + [b""])
    values = st.binary(max_size=900)

    @rule(key=keys, value=values, ttl=st.sampled_from([None, 5, 50]))
    def set(self, key: bytes, value: bytes, ttl: int | None) -> None:
        self.seen.add(key)
        expire = None if ttl is None else self.clock.now + ttl
        self.engine.set(key, value, expire_at_ms=expire)

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        self.engine.delete(key)

    @rule(key=keys, ttl=st.sampled_from([None, 1, 30]))
    def expire(self, key: bytes, ttl: int | None) -> None:
        self.engine.set_expire_at(key, None if ttl is None else self.clock.now + ttl)

    @rule(key=keys)
    def read_through_the_reader(self, key: bytes) -> None:
        self.reader.lookup(key)

    @rule(ms=st.integers(1, 40))
    def tick(self, ms: int) -> None:
        self.clock.now += ms
        self.engine.expire_due()

    @rule()
    def flush(self) -> None:
        self.engine.flush()

    @invariant()
    def reader_agrees_with_engine(self) -> None:
        self.writer.beat(time.monotonic_ns())  # the store's ticker, which this test replaces
        for key in self.seen:
            expected = self.engine.peek(key)  # removes a key past its deadline, as a read would
            got = self.reader._any_get(key, 1)  # a read that leaves marks and counters alone
            if got is FALLBACK:
                # Only values the region does not hold (too large, no free block) and the
                # empty key send a reader to the store.
                assert expected is not None or key == b""
            else:
                assert got == expected
                if expected is not None:
                    assert self.reader.expire_at_of(key) == (self.engine.expire_at(key) or 0)

    def teardown(self) -> None:
        self.reader.close()
        self.writer.close()


class PythonEngineWithRegion(EngineWithRegion):
    """The same machine on the pure-Python reader and writer."""

    native = "0"


class EngineWithSealedRegion(EngineWithRegion):
    """The same with the region sealed, as a store runs it: pages reused, not given back."""

    sealed = True


TestEngineWithRegion = EngineWithRegion.TestCase
TestEngineWithRegion.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
TestPythonEngineWithRegion = PythonEngineWithRegion.TestCase
TestPythonEngineWithRegion.settings = TestEngineWithRegion.settings
TestEngineWithSealedRegion = EngineWithSealedRegion.TestCase
TestEngineWithSealedRegion.settings = TestEngineWithRegion.settings


def test_a_sealed_region_cannot_be_written_by_anyone_else() -> None:
    writer = RegionWriter(2**20)
    writer.seal()
    try:
        assert writer.sealed
        for fd in (writer.owner_fd, os.open(f"/proc/self/fd/{writer.owner_fd}", os.O_RDWR)):
            with pytest.raises(PermissionError):
                mmap.mmap(fd, 4096)
            with pytest.raises(PermissionError):
                os.pwrite(fd, b"x", 0)
            if fd != writer.owner_fd:
                os.close(fd)
        # The store's own mapping still writes; freed pages are taken again, for any size.
        first = writer.publish(b"k", b"v" * 3000, 0, 0)
        second = writer.publish(b"k", b"w" * 100, 0, first)
        assert writer.read(second) == b"w" * 100
        assert writer.read(writer.publish(b"j", b"u" * 3000, 0, 0)) == b"u" * 3000
        writer.flush()
        assert writer.read(writer.publish(b"k", b"x" * 5000, 0, 0)) == b"x" * 5000
    finally:
        writer.close()


@both_paths
def test_engine_accounting_with_region_returns_to_zero() -> None:
    writer = RegionWriter(256 * 1024)
    engine = MemoryEngine(memory_limit=256 * 1024)
    engine.attach_region(writer)
    rng = random.Random(7)
    for _ in range(20_000):
        key = b"k%d" % rng.randrange(3000)
        if rng.random() < 0.2:
            engine.delete(key)
        else:
            engine.set(key, bytes(rng.randrange(2000)))
        assert engine.used_bytes <= 256 * 1024
    assert engine.stats().evictions > 0
    for key in engine._all_keys():
        engine.delete(key)
    assert engine.used_bytes == 0
    writer.close()


@both_paths
def test_the_region_travels_over_a_unix_socket(region: RegionWriter) -> None:
    region.publish(b"k", b"v", 0, 0)
    client, store = socket.socketpair()
    with client, store:
        done = threading.Thread(target=lambda: _serve_one(store, region))
        done.start()
        reader = request_region(client)
        done.join()
    assert reader.lookup(b"k") == b"v"
    reader.close()


def _serve_one(sock: socket.socket, region: RegionWriter) -> None:
    assert sock.recv(100) == handout.REQUEST
    handout.send_reply(sock, handout.region_reply(region), region)


@both_paths
def test_a_refusal_is_region_unavailable() -> None:
    client, store = socket.socketpair()
    with client, store:
        store.sendall(b"-ERR shared memory is off\r\n")
        with pytest.raises(handout.RegionUnavailable, match="shared memory is off"):
            request_region(client)
