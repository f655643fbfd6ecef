"""Bounded probes, for real: every key the writer places is within MAX_PROBE slots of its home,
so a reader finds every published key (issue 23, item 3).

Keys crafted against a writer's own hash secret pile onto one home slot, deterministically:
the writer must grow the table (at once while it is small), or leave the keys it cannot place
near home out of the table (the store answers them, readers ask it: their probe meets
MAX_PROBE taken slots) until the migration into a larger table places them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from blinkstore_gunicorn.engine import TTL_OVERHEAD, EngineError, MemoryEngine
from blinkstore_gunicorn.engine.hashes import hset
from blinkstore_gunicorn.shm import layout
from blinkstore_gunicorn.shm import writer as writer_module
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)"),
    pytest.mark.usefixtures("shm_path"),  # the C helper's path, then the Python reference
]

_FIRST = 1024  # the first table's slots (writer._FIRST_SLOTS)
_CLUSTER = 40  # keys on one home: more than MAX_PROBE


@pytest.fixture
def writer() -> Iterator[RegionWriter]:
    region = RegionWriter(0, max_value=64)
    # The store's ticker, which these tests replace: an hour ahead, so that a slow loop on a
    # loaded machine never makes the region look abandoned.
    region.beat(time.monotonic_ns() + 3600 * 10**9)
    yield region
    region.close()


@pytest.fixture
def store(writer: RegionWriter) -> Iterator[tuple[MemoryEngine, RegionReader]]:
    """An engine publishing into ``writer`` and a reader of that region (closed after)."""
    engine = MemoryEngine(memory_limit=0)
    engine.attach_region(writer)
    reader = RegionReader(*writer.fds, 0)
    yield engine, reader
    reader.close()


def _crafted(writer: RegionWriter) -> list[bytes]:
    """Keys whose hash has the same low 10 bits (one home in a table of 1024 slots), half of
    them with bit 10 set, half without (two homes, 20 keys each, in a table of 2048)."""
    target = layout.key_hash(b"crafted", writer._mul, writer._prime) & (_FIRST - 1)
    halves: tuple[list[bytes], list[bytes]] = ([], [])
    n = 0
    while min(len(half) for half in halves) < _CLUSTER // 2:
        key = b"crafted:%d" % n
        n += 1
        h = layout.key_hash(key, writer._mul, writer._prime)
        half = halves[h >> 10 & 1]
        if h & (_FIRST - 1) == target and len(half) < _CLUSTER // 2:
            half.append(key)
    return [key for pair in zip(*halves, strict=True) for key in pair]


def shrink(writer: RegionWriter) -> None:
    """Make the first table the largest the writer may build: full at ~700 keys, not millions."""
    writer._max_slots = _FIRST
    writer._pub.cap = _FIRST * 7 // 10


def _far_slots(writer: RegionWriter) -> list[int]:
    """Slots of the live table (and of the one being built) whose key lies MAX_PROBE or more
    slots past its home: a reader would never find it."""
    far = []
    tables = [(writer._t, writer._slots)]
    if writer._migration is not None:
        tables.append((writer._migration.table, writer._migration.slots))
    for table, slots in tables:
        for slot in range(slots):
            meta = table[slot * layout.SLOT_WORDS]
            home = (meta >> 32) & (slots - 1)
            if meta and meta != layout.TOMBSTONE and (slot - home) % slots >= layout.MAX_PROBE:
                far.append(slot)
    return far


def _fill_until_grown(engine: MemoryEngine, writer: RegionWriter, slots: int) -> list[bytes]:
    """Set filler keys until the live table has ``slots`` slots and no migration runs."""
    fillers: list[bytes] = []
    while writer._slots < slots or writer._migration is not None:
        fillers.append(b"filler:%d" % len(fillers))
        engine.set(fillers[-1], b"f")
    return fillers


def test_keys_piled_on_one_home_are_placed_within_max_probe(
    writer: RegionWriter, store: tuple[MemoryEngine, RegionReader]
) -> None:
    engine, reader = store
    keys = _crafted(writer)
    for n, key in enumerate(keys):
        engine.set(key, b"v%d" % n)
        assert _far_slots(writer) == []
    # The key that found no slot near home grew the (small) table at once: 20 keys per home.
    assert writer._slots == 2 * _FIRST and writer._migration is None
    for n, key in enumerate(keys):
        assert engine.get(key) == b"v%d" % n
        assert reader.lookup(key) == b"v%d" % n
        engine.set(key, b"w%d" % n)  # an overwrite in place
        assert reader.lookup(key) == b"w%d" % n


def test_a_large_table_leaves_a_key_out_until_its_migration_places_it(
    writer: RegionWriter,
    store: tuple[MemoryEngine, RegionReader],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past ``_GROW_AT_ONCE`` slots (lowered here), a table grows by a migration, during which
    the keys that found no slot near home are in no table: the store answers them."""
    monkeypatch.setattr(writer_module, "_GROW_AT_ONCE", 0)
    engine, reader = store
    keys = _crafted(writer)
    for n, key in enumerate(keys):
        engine.set(key, b"v%d" % n)
    assert _far_slots(writer) == [] and writer._migration is not None
    out = [key for key in keys if reader.lookup(key) is FALLBACK]
    assert len(out) == _CLUSTER - layout.MAX_PROBE
    for n, key in enumerate(keys):
        assert engine.get(key) == b"v%d" % n, "the store answers every key"
    engine.set(out[0], b"again")  # a write to a key out of the table: still out
    assert engine.get(out[0]) == b"again" and reader.lookup(out[0]) is FALLBACK
    _fill_until_grown(engine, writer, 2 * _FIRST)
    assert _far_slots(writer) == []
    for n, key in enumerate(keys):
        assert reader.lookup(key) == (b"again" if key == out[0] else b"v%d" % n)


def test_a_rebuild_into_a_smaller_table_keeps_every_key_within_max_probe(
    writer: RegionWriter, store: tuple[MemoryEngine, RegionReader]
) -> None:
    """Keys on two homes of a table of 2048 slots share one in the table of 1024 that a rebuild
    shedding tombstones makes: the migration cannot place all of them near home either."""
    engine, reader = store
    fillers = _fill_until_grown(engine, writer, 2 * _FIRST)
    keys = _crafted(writer)
    for n, key in enumerate(keys):
        engine.set(key, b"v%d" % n)
    for key in fillers:
        engine.delete(key)
    # Keys set and deleted at once leave tombstones, until a rebuild sheds them.
    n = 0
    while writer._slots > _FIRST or writer._migration is not None:
        engine.set(b"churn:%d" % n, b"c")
        engine.delete(b"churn:%d" % n)
        n += 1
    assert _far_slots(writer) == []
    expire_at = int(time.time() * 1000) + 3_600_000
    for n, key in enumerate(keys):
        assert reader.lookup(key) in (b"v%d" % n, FALLBACK)
        assert engine.get(key) == b"v%d" % n
        # The store's writes to a key out of the table: a TTL, an overwrite, a delete.
        assert engine.set_expire_at(key, expire_at)
        engine.set(key, b"w%d" % n, keep_ttl=True)
        assert engine.get(key) == b"w%d" % n
        assert reader.lookup(key) in (b"w%d" % n, FALLBACK)
    assert engine.delete(keys[-1]) and reader.lookup(keys[-1]) in (None, FALLBACK)
    _fill_until_grown(engine, writer, 2 * _FIRST)
    assert _far_slots(writer) == []
    for n, key in enumerate(keys[:-1]):
        assert reader.lookup(key) == b"w%d" % n
        assert reader.expire_at_of(key) == expire_at
    assert reader.lookup(keys[-1]) is None


def costs(engine: MemoryEngine) -> int:
    """What ``used_bytes`` must be: the sum of the entries' costs."""
    entries = [*engine._ahead.items(), *engine._behind.items()]
    return sum(engine._cost(k, v) for k, v in entries) + TTL_OVERHEAD * len(engine._deadlines)


def _check_consistent(
    engine: MemoryEngine, reader: RegionReader, values: dict[bytes, bytes]
) -> None:
    """The account is the sum of the entries' costs, the store answers every key with its
    value, and a reader answers it or asks the store (never "absent")."""
    assert engine.used_bytes == costs(engine)
    for key, value in values.items():
        assert engine.get(key) == value
        assert reader.lookup(key) in (value, FALLBACK), key


def test_a_full_table_refuses_new_keys_only_and_changes_nothing(
    writer: RegionWriter, store: tuple[MemoryEngine, RegionReader]
) -> None:
    """Unlimited memory, the table at its largest (shrunk here to the first table, full at
    ~700 keys): a new key is refused (RegionFull, an error reply; SET, COPY) with nothing
    changed, a RENAME is not, and a key the region holds already, even out of the table (a
    block, or "ask the store" for a long value), is overwritten, given a TTL and deleted as
    ever (issue 23)."""
    engine, reader = store
    shrink(writer)
    values = {key: b"v%d" % n for n, key in enumerate(_crafted(writer))}
    for key in list(values)[-2:]:
        values[key] = b"long" * 20  # over max_value: "ask the store"
    for key, value in values.items():
        engine.set(key, value)
    n = 0
    with pytest.raises(EngineError, match="shared-memory table is full"):
        while True:
            values[b"filler:%d" % n] = b"f"
            engine.set(b"filler:%d" % n, b"f")
            n += 1
    del values[b"filler:%d" % n]
    engine.delete(b"filler:1")  # room for the hash
    del values[b"filler:1"]
    assert hset(engine, b"hash", [(b"f", b"v")]) == 1
    out = [key for key in values if reader.lookup(key) is FALLBACK]
    assert writer._far and -1 in writer._ask.values() and len(out) > len(writer._far)
    before = (engine.used_bytes, engine.watched.changes, len(engine), writer._pub.live)
    for key in (b"new", b"new:long"):
        with pytest.raises(EngineError, match="shared-memory table is full"):
            engine.set(key, b"v" if key == b"new" else b"long" * 20)
        with pytest.raises(EngineError, match="shared-memory table is full"):
            engine.copy(b"hash" if key == b"new" else b"filler:0", key)
    assert (engine.used_bytes, engine.watched.changes, len(engine), writer._pub.live) == before
    # A key deleted makes room for one added: RENAME (a string, a hash) is never refused.
    assert engine.rename(b"filler:0", b"renamed") and engine.rename(b"hash", b"renamed:hash")
    values[b"renamed"] = values.pop(b"filler:0")
    assert engine.kind(b"renamed:hash") == b"hash" and engine.kind(b"hash") is None
    _check_consistent(engine, reader, values)
    expire_at = int(time.time() * 1000) + 3_600_000
    for key in out:
        values[key] = b"w" if len(values[key]) > writer.max_value else b"long" * 20
        engine.set(key, values[key])  # a block of another size, or none
        assert engine.set_expire_at(key, expire_at)
        assert reader.expire_at_of(key) in (expire_at, FALLBACK)
    _check_consistent(engine, reader, values)
    assert writer._pub.live == before[3]
    for key in out:
        assert engine.delete(key)
        del values[key]
    _check_consistent(engine, reader, values)
    for key in out:
        assert engine.get(key) is None and reader.lookup(key) in (None, FALLBACK)


@pytest.mark.parametrize("container", [False, True], ids=["string", "hash"])
def test_renaming_the_empty_key_onto_a_full_table_is_refused_and_keeps_it(
    writer: RegionWriter, store: tuple[MemoryEngine, RegionReader], container: bool
) -> None:
    """The empty key holds no slot of the table, so deleting it makes no room for its new
    name: a full table refuses that RENAME, and the key stays, with its value and TTL."""
    engine, reader = store
    shrink(writer)
    expire_at = int(time.time() * 1000) + 3_600_000
    if container:
        assert hset(engine, b"", [(b"f", b"v")]) == 1
        assert engine.set_expire_at(b"", expire_at)
    else:
        engine.set(b"", b"value", expire_at_ms=expire_at)
    n = 0
    with pytest.raises(EngineError, match="shared-memory table is full"):
        while True:
            engine.set(b"filler:%d" % n, b"f")
            n += 1
    before = (engine.used_bytes, len(engine), writer._pub.live)
    with pytest.raises(EngineError, match="shared-memory table is full"):
        engine.rename(b"", b"renamed")
    assert (engine.used_bytes, len(engine), writer._pub.live) == before
    assert engine.kind(b"") == (b"hash" if container else b"string")
    assert engine.kind(b"renamed") is None and reader.lookup(b"renamed") in (None, FALLBACK)
    assert engine.expire_at(b"") == expire_at
    if not container:
        assert engine.get(b"") == b"value"
