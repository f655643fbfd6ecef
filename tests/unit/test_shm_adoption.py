"""A successor store adopting a dead store's region (``shm/adoption.py``, ``server/adoption.py``):
handed over the real control channel, checked slot by slot, never trusted for control flow.
Here each adoption is finished at once; adopting lazily while serving is
``test_shm_adoption_lazy.py``."""

from __future__ import annotations

import logging
import mmap
import os
import random
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.engine.hashes import hset
from blinkstore_gunicorn.server.adoption import start_adoption
from blinkstore_gunicorn.shm import layout as L
from blinkstore_gunicorn.shm.adoption import Inheritance
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter
from blinkstore_gunicorn.supervision.handover import (
    StoreChannel,
    channel_pair,
    hand_over_region,
    wait_for_go,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)")

LIMIT = 8 * 2**20
NOW = 1_900_000_000_000
HOUR = 3_600_000


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def _store(
    checksum: bool = False, max_value: int = 1024, clock: _Clock | None = None
) -> MemoryEngine:
    """An engine publishing into a region of its own, as a store has (clock at NOW)."""
    engine = MemoryEngine(memory_limit=LIMIT, clock_ms=clock or _Clock())
    engine.attach_region(RegionWriter(LIMIT, max_value=max_value, checksum=checksum))
    return engine


def adopt_region(engine: MemoryEngine, inheritance: Inheritance) -> int:
    """What a successor store does, finished at once: how many entries it adopted."""
    adoption = start_adoption(engine, inheritance)
    return 0 if adoption is None else adoption.finish()


def _region(engine: MemoryEngine) -> RegionWriter:
    assert engine.region is not None
    return engine.region


def _inherit(dead: RegionWriter) -> Inheritance:
    """What the successor receives: ``dead`` handed to a supervisor's channel, revoked when the
    store exits, then sent on with the next store's GO."""
    ours, theirs = channel_pair()
    channel = StoreChannel(ours)
    # The store waits for the supervisor's answer (then it seals the region).
    handed: list[bool] = []
    store = threading.Thread(target=lambda: handed.append(hand_over_region(theirs, dead.owner_fd)))
    store.start()
    deadline = time.monotonic() + 30
    while store.is_alive() and time.monotonic() < deadline:
        channel.receive()
        store.join(0.01)
    assert handed == [True]
    dead.seal()
    theirs.close()  # the store exits
    assert channel.revoke()
    held = channel.take_region()
    channel.close()
    assert held is not None
    ours, theirs = channel_pair()
    successor = StoreChannel(ours)
    lifeline_r, lifeline_w = os.pipe()
    try:
        assert successor.go(1234, held)
        go = wait_for_go(theirs, lifeline_r)
    finally:
        held.close()
        successor.close()
        theirs.close()
        os.close(lifeline_r)
        os.close(lifeline_w)
    assert go is not None and go[0] == 1234 and go[1] is not None
    return go[1]


@pytest.fixture
def successor() -> Iterator[MemoryEngine]:
    engine = _store()
    yield engine
    _region(engine).close()


def _words(region: RegionWriter) -> tuple[mmap.mmap, memoryview]:
    """A writable view of ``region``: what a stray writer (or the test) can reach."""
    size = os.fstat(region.owner_fd).st_size
    mm = mmap.mmap(region.owner_fd, size)
    return mm, memoryview(mm).cast("Q")


def _slot_of(w: memoryview, key: bytes) -> int:
    """The word index of ``key``'s live slot."""
    table, slots = L.unpack_table_word(w[L.H_TABLE])
    h = L.key_hash(key, w[L.H_HASH_MUL], w[L.H_HASH_PRIME])
    for i in range(slots):
        b = (table >> 3) + ((h + i) & (slots - 1)) * L.SLOT_WORDS
        if w[b + L.META] == h << 32 | len(key):
            return b
    raise AssertionError(f"{key!r} is not in the table")


def test_every_region_held_string_is_adopted_with_its_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    clock.now = NOW + 10
    successor = _store(clock=clock)
    dead = _store(max_value=64)
    rng = random.Random(7)
    values = {b"k%d" % i: rng.randbytes(rng.randrange(0, 60)) + b"\0" for i in range(500)}
    for i, (key, value) in enumerate(values.items()):
        dead.set(key, value, expire_at_ms=NOW + HOUR + i if i % 3 == 0 else None)
    dead.set(b"big", b"x" * 65)  # over the region's threshold: in the dead store's heap
    hset(dead, b"hash", [(b"f", b"v")])  # another type: also the heap
    dead.set(b"soon", b"gone", expire_at_ms=NOW + 10)
    inheritance = _inherit(_region(dead))
    reader = RegionReader(*_region(dead).fds, 0)
    with caplog.at_level(logging.INFO, logger="blinkstore"):
        assert adopt_region(successor, inheritance) == len(values)
    for i, (key, value) in enumerate(values.items()):
        assert successor.get(key) == value
        assert successor.expire_at(key) == (NOW + HOUR + i if i % 3 == 0 else None)
    for key in (b"big", b"hash", b"soon"):
        assert not successor.contains(key)
    assert "adopted 500 keys" in caplog.text
    assert "0 in doubt, 2 held outside the region, 1 expired" in caplog.text
    # The old region stays revoked for its readers; the successor's own region serves.
    assert reader.get(b"k1") is FALLBACK
    reader.close()
    _region(successor).beat(time.monotonic_ns())  # the store's ticker, in a store
    fresh = RegionReader(*_region(successor).fds, 0)
    assert fresh.get(b"k1") == values[b"k1"]
    fresh.close()
    _region(dead).close()
    _region(successor).close()


def test_a_torn_slot_and_a_key_that_does_not_hash_to_its_slot_are_dropped(
    successor: MemoryEngine, caplog: pytest.LogCaptureFixture
) -> None:
    dead = _store()
    for key in (b"torn", b"moved", b"fine"):
        dead.set(key, key * 3)
    mm, w = _words(_region(dead))
    # The store was killed between the two sequence steps of a write to "torn".
    w[_slot_of(w, b"torn") + L.SEQ] += 1
    # A stray writer changed the key bytes of "moved" in its block.
    block = w[_slot_of(w, b"moved") + L.LOC] >> L.LOC_SHIFT
    mm[block + L.BLOCK_HEADER] ^= 0xFF
    w.release()
    mm.close()
    caplog.set_level(logging.INFO, logger="blinkstore")
    adoption = start_adoption(successor, _inherit(_region(dead)))
    assert adoption is not None and adoption.finish() == 1
    assert "2 in doubt" in caplog.text
    assert successor.get(b"fine") == b"fine" * 3
    assert not successor.contains(b"torn") and not successor.contains(b"moved")
    _region(dead).close()


def test_with_checksums_a_changed_value_or_deadline_is_dropped(
    successor: MemoryEngine, caplog: pytest.LogCaptureFixture
) -> None:
    dead = _store(checksum=True)
    for key in (b"value", b"deadline", b"fine"):
        dead.set(key, b"\0" + key, expire_at_ms=NOW + HOUR)
    mm, w = _words(_region(dead))
    block = w[_slot_of(w, b"value") + L.LOC] >> L.LOC_SHIFT
    mm[block + L.BLOCK_HEADER + len(b"value")] ^= 1
    w[_slot_of(w, b"deadline") + L.EXPIRE] += 1
    w.release()
    mm.close()
    caplog.set_level(logging.INFO, logger="blinkstore")
    adoption = start_adoption(successor, _inherit(_region(dead)))
    assert adoption is not None and adoption.finish() == 1
    assert "2 in doubt" in caplog.text
    assert successor.get(b"fine") == b"\0fine"
    _region(dead).close()


def test_a_region_in_the_middle_of_a_table_migration_is_adopted_whole(
    successor: MemoryEngine,
) -> None:
    dead = _store()
    # The table (1024 slots) starts migrating at 513 keys, 16 slots per insert.
    keys = [b"m%d" % i for i in range(530)]
    for key in keys:
        dead.set(key, key)
    assert adopt_region(successor, _inherit(_region(dead))) == len(keys)
    assert all(successor.get(key) == key for key in keys)
    _region(dead).close()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda w: w.__setitem__(L.H_MAGIC, 0), "layout version"),
        (lambda w: w.__setitem__(L.H_VERSION, L.VERSION + 1), "layout version"),
        (lambda w: w.__setitem__(L.H_DATA_END, 2**63), "out of bounds"),
        (lambda w: w.__setitem__(L.H_TABLE, w[L.H_TABLE] + 4096), "live table"),
        (lambda w: w.__setitem__(L.H_TABLE, w[L.H_TABLE] | 63), "live table"),
        (lambda w: w.__setitem__(L.H_HASH_PRIME, 0), "hash secret"),
    ],
)
def test_a_region_whose_header_does_not_check_out_is_refused(
    successor: MemoryEngine, caplog: pytest.LogCaptureFixture, damage: object, reason: str
) -> None:
    dead = _store()
    dead.set(b"k", b"v")
    mm, w = _words(_region(dead))
    token = w[L.H_TOKEN]
    damage(w)  # type: ignore[operator]
    w.release()
    mm.close()
    # Directly: the supervisor's revocation refuses a foreign magic or version already.
    inheritance = Inheritance(os.dup(_region(dead).owner_fd), token)
    assert adopt_region(successor, inheritance) == 0
    assert reason in caplog.text and len(successor) == 0
    with pytest.raises(OSError):
        os.fstat(inheritance.fd)  # closed all the same
    _region(dead).close()


@pytest.mark.parametrize(("token", "reason"), [(0, "closed or revoked"), (3, "FLUSHALL")])
def test_a_region_closed_or_dying_in_a_flush_is_refused(
    successor: MemoryEngine, caplog: pytest.LogCaptureFixture, token: int, reason: str
) -> None:
    dead = _store()
    dead.set(b"k", b"v")
    inheritance = Inheritance(os.dup(_region(dead).owner_fd), token)
    assert adopt_region(successor, inheritance) == 0
    assert reason in caplog.text
    _region(dead).close()


@pytest.mark.parametrize("seed", range(6))
def test_garbage_never_crashes_the_adoption(successor: MemoryEngine, seed: int) -> None:
    """A stray writer filled the table and blocks with random words (a valid header left):
    at worst entries are dropped, by a lookup or by the pass; what is adopted came through
    every check."""
    dead = _store()
    for i in range(200):
        dead.set(b"g%d" % i, b"v%d" % i)
    mm, w = _words(_region(dead))
    rng = random.Random(seed)
    table, slots = L.unpack_table_word(w[L.H_TABLE])
    data = w[L.H_DATA]
    for _ in range(3000):
        i = (table >> 3) + rng.randrange(slots * L.SLOT_WORDS)
        w[i] = rng.choice([rng.getrandbits(64), rng.getrandbits(16), (w[i] + 1) % 2**64, 2**64 - 1])
    for _ in range(3000):
        i = (data >> 3) + rng.randrange(4096)
        w[i] = rng.getrandbits(64)
    w.release()
    mm.close()
    adoption = start_adoption(successor, _inherit(_region(dead)))
    assert adoption is not None
    for i in range(0, 200, 2):  # half of them looked up one by one, the rest by the pass
        assert successor.peek(b"g%d" % i) in (None, b"v%d" % i)
    adopted = adoption.finish()
    assert adopted == len(successor) <= 200
    for i in range(200):
        value = successor.peek(b"g%d" % i)
        assert value in (None, b"v%d" % i)
    _region(dead).close()


def test_a_region_full_of_random_bytes_is_refused(successor: MemoryEngine) -> None:
    fd = os.memfd_create("garbage")
    os.write(fd, random.Random(1).randbytes(64 * 1024))
    assert adopt_region(successor, Inheritance(fd, 2)) == 0
    tiny = os.memfd_create("tiny")
    assert adopt_region(successor, Inheritance(tiny, 2)) == 0


def test_a_slot_claiming_a_giant_entry_is_dropped_without_copying_it(
    successor: MemoryEngine,
) -> None:
    dead = MemoryEngine(memory_limit=0)  # unlimited: a sparse data area of 64 GiB
    dead.attach_region(RegionWriter(0))
    dead.set(b"giant", b"v")
    dead.set(b"fine", b"v")
    mm, w = _words(_region(dead))
    slot = _slot_of(w, b"giant")
    block = w[slot + L.LOC] >> L.LOC_SHIFT
    # Lengths that agree with each other and stay inside the area: 2 GiB of key.
    w[slot + L.META] = w[slot + L.META] & ~0xFFFFFFFF | 2**31
    w[block >> 3] = 2**31 << 32 | 1
    w.release()
    mm.close()
    tracemalloc.start()
    try:
        assert adopt_region(successor, _inherit(_region(dead))) == 1
        assert tracemalloc.get_traced_memory()[1] < 2**26
    finally:
        tracemalloc.stop()
    assert successor.get(b"fine") == b"v"
    _region(dead).close()
