"""Unit tests of what keeps readers from hurting the store and each other: a read-only, sealed
region, marks of their own, close-on-exec descriptors, the keyed hash with bounded probes, the
heartbeat's generation file, the multi-key write epoch and the checksum over the deadline."""

from __future__ import annotations

import errno
import mmap
import os
import random
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.shm import handout, layout
from blinkstore_gunicorn.shm.fds import make_undumpable, recv_fds
from blinkstore_gunicorn.shm.generation import Generation
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)"),
    pytest.mark.usefixtures("shm_path"),  # the C helper's path, then the Python reference
]


@pytest.fixture
def region() -> Iterator[RegionWriter]:
    writer = RegionWriter(8 * 2**20, max_value=4096)
    yield writer
    writer.close()


def _received(region: RegionWriter) -> list[int]:
    """The descriptors as a client receives them from the store (over a socket pair)."""
    client, store = socket.socketpair()
    with client, store:
        socket.send_fds(store, [b"x"], list(region.fds))
        _data, fds = recv_fds(client, 16, 2)
    return fds


def test_received_descriptors_are_close_on_exec(region: RegionWriter) -> None:
    fds = _received(region)
    assert len(fds) == 2
    try:
        assert not any(os.get_inheritable(fd) for fd in fds)
    finally:
        for fd in fds:
            os.close(fd)


def test_a_reader_can_neither_write_resize_nor_remap_the_region(region: RegionWriter) -> None:
    region.publish(b"k", b"value", 0, 0)
    data_fd, marks_fd = _received(region)
    try:
        with pytest.raises(PermissionError):
            mmap.mmap(data_fd, layout.HEADER_BYTES)  # a writable shared mapping
        for fd in (data_fd, marks_fd):
            for size in (0, os.fstat(fd).st_size + 4096):
                with pytest.raises(OSError) as caught:
                    os.ftruncate(fd, size)
                assert caught.value.errno in (errno.EPERM, errno.EINVAL, errno.EBADF)
        reader = RegionReader(data_fd, marks_fd, 0)
    finally:
        os.close(data_fd)
        os.close(marks_fd)
    with pytest.raises(TypeError):
        reader._mm[layout.HEADER_BYTES] = 1
    assert reader.lookup(b"k") == b"value"
    reader.close()


def test_whatever_a_reader_writes_in_its_marks_the_store_keeps_serving() -> None:
    writer = RegionWriter(256 * 1024, max_value=600)
    engine = MemoryEngine(memory_limit=256 * 1024)
    engine.attach_region(writer)
    reader = RegionReader(*writer.fds, 0)
    other = RegionReader(*writer.fds, 1)
    rng = random.Random(3)
    expected: dict[bytes, bytes] = {}
    for round_ in range(30):
        # The worst a reader can do: random bytes, or all ones (counters about to wrap), over
        # all it can write.
        size = len(reader._marks)
        reader._marks[:] = rng.randbytes(size) if round_ % 2 else b"\xff" * size
        for _ in range(300):
            key = b"k%d" % rng.randrange(2000)
            value = rng.randbytes(rng.randrange(1, 500))
            engine.set(key, value)
            expected[key] = value
        writer.beat(time.monotonic_ns())  # the store's ticker, which this test replaces
        for key in rng.sample(sorted(expected), 50):
            got = other.lookup(key)
            now = engine.get(key)
            assert got in (FALLBACK, None) or got == now, round_
            assert now in (None, expected[key]), "evicted, or the value last written"
        hits, misses = writer.reader_counts()
        assert hits >= 0 and misses >= 0
    for view in (reader, other):
        view.close()
    writer.close()


def _forge_crc32(prefix: bytes, target: int) -> bytes:
    """4 bytes that make crc32(prefix + them) == target (crc32 is affine over GF(2))."""
    base = zlib.crc32(prefix + bytes(4))
    columns = [zlib.crc32(prefix + (1 << bit).to_bytes(4, "little")) ^ base for bit in range(32)]
    # Solve sum(x_bit * columns[bit]) == target ^ base by Gaussian elimination.
    basis: dict[int, tuple[int, int]] = {}
    for bit in range(32):
        value, combo = columns[bit], 1 << bit
        for pivot in sorted(basis, reverse=True):
            if value >> pivot & 1:
                value ^= basis[pivot][0]
                combo ^= basis[pivot][1]
        if value:
            basis[value.bit_length() - 1] = (value, combo)
    want, x = target ^ base, 0
    for pivot in sorted(basis, reverse=True):
        if want >> pivot & 1:
            want ^= basis[pivot][0]
            x ^= basis[pivot][1]
    assert not want
    return x.to_bytes(4, "little")


def test_forged_crc32_collisions_spread_over_the_keyed_table(region: RegionWriter) -> None:
    keys = [b"rate:%06d:" % n + _forge_crc32(b"rate:%06d:" % n, 0xDEADBEEF) for n in range(3000)]
    assert {zlib.crc32(key) for key in keys} == {0xDEADBEEF}
    for key in keys:
        region.publish(key, b"v", 0, 0)
    region.beat(time.monotonic_ns())  # the store's ticker, which this test replaces
    reader = RegionReader(*region.fds, 0)
    answers = [reader.lookup(key) for key in keys]
    assert set(answers) <= {b"v", FALLBACK} and answers.count(b"v") > len(keys) * 0.9
    homes = {layout.key_hash(key, region._mul, region._prime) & (region._slots - 1) for key in keys}
    assert len(homes) > len(keys) // 2, "the keyed hash spreads what crc32 piles up"
    reader.close()


def test_a_reader_on_a_full_table_gives_up_after_max_probe(region: RegionWriter) -> None:
    """A table whose every slot is taken by other keys (what an old view of a reused half can
    look like) must not make a reader spin: after MAX_PROBE slots it asks the store. Written
    into the live table, so that the C lookup and the Python one both meet it."""
    reader = RegionReader(*region.fds, 0)
    assert reader.alive
    t = region._t
    for slot in range(region._slots):
        t[slot * 4] = layout.TOMBSTONE - 1 - slot  # neither empty nor anyone's key
        t[slot * 4 + 1] = 2
    answers: list[object] = []
    thread = threading.Thread(target=lambda: answers.append(reader.lookup(b"absent")), daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert answers == [FALLBACK]
    reader.close()


def test_a_paused_store_is_not_trusted_and_a_beating_one_is(region: RegionWriter) -> None:
    region.publish(b"k", b"v", 0, 0)
    reader = RegionReader(*region.fds, 0)
    assert reader.lookup(b"k") == b"v"
    region.beat(time.monotonic_ns() - layout.STALE_NS - 1)
    assert reader.lookup(b"k") is FALLBACK
    assert reader.lookup(b"absent") is FALLBACK, "no miss from a dead region either"
    region.beat(time.monotonic_ns())
    assert reader.lookup(b"k") == b"v"
    reader.close()


def test_the_generation_file_bounds_the_successor_s_wait(tmp_path: Path) -> None:
    path = str(tmp_path / "store.sock.shm")
    assert Generation(path).wait_for_previous() == 0, "no previous store"
    owner = Generation(path)
    owner.claim(time.monotonic_ns())
    wait = Generation(path).wait_for_previous()
    assert 0 < wait <= layout.STALE_NS / 1e9, "the owner just beat"
    owner.beat(time.monotonic_ns() - layout.STALE_NS)
    assert Generation(path).wait_for_previous() == 0, "its heartbeat is stale already"
    os.truncate(path, 0)  # what anyone of this user can do to the file: a full wait, no crash
    assert Generation(path).wait_for_previous() == pytest.approx(layout.STALE_NS / 1e9, abs=0.2)
    owner.beat(time.monotonic_ns() + 10**15)  # a forged far future: still at most STALE_NS
    assert Generation(path).wait_for_previous() <= layout.STALE_NS / 1e9
    owner.release()
    assert not os.path.exists(path), "a clean stop: the next store need not wait"


def test_a_multi_key_read_never_spans_a_multi_key_write(region: RegionWriter) -> None:
    a = region.publish(b"a", b"1", 0, 0)
    b = region.publish(b"b", b"1", 0, 0)
    reader = RegionReader(*region.fds, 0)
    assert reader.get_many([b"a", b"b"]) == [b"1", b"1"]
    region.begin_batch()
    region.publish(b"a", b"2", 0, a)
    assert reader.get_many([b"a", b"b"]) is FALLBACK, "half of the batch is published"
    region.begin_batch()  # nested: an MSET inside EXEC
    region.publish(b"b", b"2", 0, b)
    region.end_batch()
    assert reader.get_many([b"a", b"b"]) is FALLBACK, "the outer batch is not complete"
    region.end_batch()
    assert reader.get_many([b"a", b"b"]) == [b"2", b"2"]
    reader.close()


def test_the_checksum_covers_the_deadline() -> None:
    writer = RegionWriter(2**20, checksum=True)
    reader = RegionReader(*writer.fds, 0)
    handle = writer.publish(b"k", b"value", 0, 0)
    far = time.time_ns() // 1_000_000 + 10**9
    writer.set_expire(b"k", handle, far)
    assert reader.lookup(b"k") == b"value" and reader.expire_at_of(b"k") == far
    # What a weakly ordered CPU could show: the new deadline with the old checksum.
    block = handle >> 3
    writer._w[block + layout.BLOCK_CHECKSUM] ^= 1
    assert reader.lookup(b"k") is FALLBACK
    reader.close()
    writer.close()


def test_the_store_process_can_be_made_undumpable() -> None:
    def child() -> None:
        os._exit(0 if make_undumpable() and _dumpable() == 0 else 1)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        child()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _dumpable() -> int:
    import ctypes

    return int(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE


def test_the_region_handout_closes_what_it_received(region: RegionWriter) -> None:
    before = set(os.listdir("/proc/self/fd"))
    client, store = socket.socketpair()
    with client, store:
        thread = threading.Thread(target=_serve_one, args=(store, region))
        thread.start()
        reader = handout.request_region(client)
        thread.join()
    reader.close()
    assert set(os.listdir("/proc/self/fd")) <= before


def _serve_one(sock: socket.socket, region: RegionWriter) -> None:
    assert sock.recv(100) == handout.REQUEST
    handout.send_reply(sock, handout.region_reply(region), region)


def test_the_table_grows_by_migration_with_every_write_seen() -> None:
    """Sets, overwrites (in place and not), deletes, deadlines and "ask the store" entries
    while the table migrates: a reader agrees with a model after every step, and marks and
    block slots follow their entries into the new table."""
    writer = RegionWriter(0, max_value=64)
    reader = RegionReader(*writer.fds, 0)
    rng = random.Random(11)
    model: dict[bytes, tuple[bytes, int]] = {}  # key -> (value, handle)
    migrations = fallbacks = 0
    migrating = False
    # The store's ticker, which this test replaces: a beat an hour ahead, because under load
    # the loops take longer than a heartbeat stays fresh, and a stale region answers FALLBACK.
    writer.beat(time.monotonic_ns() + 3600 * 10**9)
    for step in range(12_000):
        key = b"k%d" % rng.randrange(6000)
        roll = rng.random()
        old = model.get(key, (b"", 0))[1]
        if roll < 0.6:
            value = rng.randbytes(rng.choice([3, 5, 40, 100]))  # 100 > max_value: ask
            if key in model or not old:
                handle = writer.publish(key, value, 0, old if key in model else 0)
                model[key] = (value, handle)
        elif roll < 0.8 and key in model:
            writer.unpublish(key, model.pop(key)[1])
        elif key in model:
            writer.set_expire(key, model[key][1], 0)
        migrations += not migrating and writer._migration is not None
        migrating = writer._migration is not None
        if step % 97 == 0:
            for probe in [*rng.sample(sorted(model), min(40, len(model))), b"absent"]:
                got = reader._any_get(probe, 1)
                expected = model[probe][0] if probe in model else None
                if expected is not None and len(expected) > 64:
                    assert got is FALLBACK
                else:
                    assert got in (expected, FALLBACK), (step, probe)
                    fallbacks += got is FALLBACK
    assert migrations >= 2 and fallbacks < 50
    # A key the table could not place near its home is in no table until the migration that
    # it started places it: let that one finish.
    n = 0
    while writer._migration is not None:
        model[b"f%d" % n] = (b"f", writer.publish(b"f%d" % n, b"f", 0, 0))
        n += 1
    for key, (value, handle) in model.items():
        # Every key is found, none more than MAX_PROBE slots from home: no read asks the store
        # but those of values too large for the region.
        assert reader._any_get(key, 1) == (value if len(value) <= 64 else FALLBACK), key
        if handle:
            assert reader.lookup(key) == value
            assert writer.take_visited(handle), "the mark is where the store looks"
        writer.unpublish(key, handle)
    assert reader.lookup(next(iter(model))) is None
    reader.close()
    writer.close()
