"""The optional C helper (``shm/_native.c``) against the pure-Python reference.

The shm tests run every case on both paths (``shm_path``); these check what only the pair
can show: the C helper is built where a compiler is, it computes exactly what layout.py does,
a C reader and a Python reader of one region give the same answers under random writes from
either writer, and without the helper everything falls back to Python.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blinkstore_gunicorn import shm
from blinkstore_gunicorn.shm import layout
from blinkstore_gunicorn.shm import writer as writer_module
from blinkstore_gunicorn.shm.native import ENV, native
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)")


def _can_build() -> bool:
    """Whether this interpreter can compile an extension: a C compiler and Python's headers
    (Debian's python3 needs python3-dev for them; without, the build skips the helper)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return shutil.which(cc) is not None and headers.exists()


# A few secrets, made once (a random 62-bit prime costs a few milliseconds).
SECRETS = [layout.hash_secret() for _ in range(4)]


@pytest.fixture
def c(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.delenv(ENV, raising=False)
    module = native()
    if module is None:
        pytest.skip("the C helper is not built")
    yield module


def test_the_helper_is_built_wherever_a_compiler_is() -> None:
    # `make install` (uv's editable build) compiles it; CI must not silently test Python twice.
    if not _can_build() or sys.byteorder != "little" or not sys.platform.startswith("linux"):
        pytest.skip("no C compiler or Python headers, or a platform the helper does not target")
    from blinkstore_gunicorn.shm import _native

    assert _native.constants() == {
        name: getattr(layout, name)
        for name in (
            "H_TOKEN",
            "H_HEARTBEAT",
            "H_WRITE_EPOCH",
            "META",
            "SEQ",
            "LOC",
            "EXPIRE",
            "SLOT_WORDS",
            "BLOCK_LENGTHS",
            "BLOCK_SLOT",
            "BLOCK_CHECKSUM",
            "BLOCK_HEADER",
            "LOC_SHIFT",
            "MAX_PROBE",
            "STALE_NS",
            "COUNTER_BYTES",
            "HASH_MIX",
        )
    }


@given(key=st.binary(max_size=300), secret=st.sampled_from(SECRETS))
def test_key_hash_is_layouts(key: bytes, secret: tuple[int, int]) -> None:
    module = native()
    if module is None:
        pytest.skip("the C helper is not built")
    mul, prime = secret
    assert module.key_hash(key, mul, prime) == layout.key_hash(key, mul, prime)


@given(key=st.binary(max_size=100), value=st.binary(max_size=600), at=st.integers(0, 2**64 - 1))
def test_entry_checksum_is_layouts(key: bytes, value: bytes, at: int) -> None:
    module = native()
    if module is None:
        pytest.skip("the C helper is not built")
    assert module.entry_checksum(key, value, at) == layout.entry_checksum(key, value, at)


def test_block_size_is_layouts(c: object) -> None:
    module = native()
    assert module is not None
    sizes = [*range(5000), *(2**n + d for n in range(12, 40) for d in (-1, 0, 1))]
    assert [module.block_size(n) for n in sizes] == [layout.block_size(n) for n in sizes]


@pytest.mark.parametrize("writer_path", ["native", "python"])
@pytest.mark.parametrize("checksum", [False, True])
def test_c_and_python_readers_agree_under_random_writes(
    c: object, monkeypatch: pytest.MonkeyPatch, writer_path: str, checksum: bool
) -> None:
    monkeypatch.setenv(ENV, "1" if writer_path == "native" else "0")
    # Small: the table grows (a migration, then switches) and blocks change size classes.
    writer = RegionWriter(256 * 1024, max_value=600, checksum=checksum)
    monkeypatch.setenv(ENV, "1")
    fast = RegionReader(*writer.fds, 0)
    monkeypatch.setenv(ENV, "0")
    slow = RegionReader(*writer.fds, 1)
    assert fast.native and not slow.native
    rng = random.Random(7)
    handles: dict[bytes, int] = {}
    # Enough keys that the table migrates to a larger one while overwrites go on.
    keys = [b"k:%d" % n for n in range(1100)] + [b"", b"x" * 200]
    migrated = False
    try:
        for _ in range(8000):
            key = rng.choice(keys)
            op = rng.random()
            if op < 0.6:
                value = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 5, 60, 300, 700])))
                expire_at = rng.choice([0, 0, 1, 2**40])
                handles[key] = writer.publish(key, value, expire_at, handles.get(key, 0))
            elif op < 0.7 and key in handles:
                writer.unpublish(key, handles.pop(key))
            elif op < 0.75 and key in handles:
                writer.set_expire(key, handles[key], rng.choice([0, 1, 2**40]))
            probe = rng.choice(keys)
            # The store's ticker: else the region goes stale between the two readers' reads.
            writer.beat(time.monotonic_ns())
            assert fast.lookup(probe) == slow.get(probe), probe
            assert fast.exists(probe) == slow.exists(probe), probe
            assert fast.expire_at_of(probe) == slow.expire_at_of(probe), probe
            migrated = migrated or writer._migration is not None
            if rng.random() < 0.0005:
                writer.flush()
                handles.clear()
        assert migrated
        assert fast.get_many(keys[:20]) == slow.get_many(keys[:20])
        # Both count their hits and misses in their own counter slot.
        hits, misses = writer.reader_counts()
        assert hits > 0 and misses > 0
    finally:
        fast.close()
        slow.close()
        writer.close()


def test_a_c_hit_sets_the_visited_mark_and_counts(c: object) -> None:
    writer = RegionWriter(2**20)
    reader = RegionReader(*writer.fds, 3)
    try:
        handle = writer.publish(b"k", b"v", 0, 0)
        assert not writer.take_visited(handle)
        assert reader.lookup(b"k") == b"v"
        assert reader.lookup(b"absent") is None
        assert writer.take_visited(handle)
        assert writer.reader_counts() == (1, 1)
    finally:
        reader.close()
        writer.close()


def test_a_dropped_reader_frees_its_mapping_without_the_cycle_collector(c: object) -> None:
    # The C lookup calls the reader back through a weak reference: no cycle keeps a dead
    # store's region mapped until the collector runs.
    import gc
    import weakref

    writer = RegionWriter(2**20)
    try:
        reader = RegionReader(*writer.fds, 0)
        assert reader.lookup(b"k") is None
        gone = weakref.ref(reader)
        gc.disable()
        try:
            del reader
            assert gone() is None
        finally:
            gc.enable()
    finally:
        writer.close()


def test_without_the_helper_everything_is_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # As after an install without a C compiler: the module cannot be imported.
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setitem(sys.modules, "blinkstore_gunicorn.shm._native", None)
    monkeypatch.delattr(shm, "_native", raising=False)
    assert native() is None
    writer = RegionWriter(2**20)
    reader = RegionReader(*writer.fds, 0)
    try:
        assert not reader.native
        writer.publish(b"k", b"v", 0, 0)
        assert reader.lookup(b"k") == b"v"
    finally:
        reader.close()
        writer.close()


#: A new seed each run (SHM_NATIVE_SEED=N replays one); failure messages name it.
GARBLE_SEED = int(os.environ.get("SHM_NATIVE_SEED") or int.from_bytes(os.urandom(4), "little"))


def _seeded_secret(rng: random.Random) -> tuple[int, int]:
    """``layout.hash_secret`` drawn from ``rng``, so that a seed replays the same slots."""
    while True:
        prime = rng.getrandbits(61) | 1 << 61 | 1
        if layout._is_prime(prime):
            return rng.randrange(1, prime), prime


def _nasty_words(rng: random.Random, size: int, data: int) -> list[int]:
    """Words that mean something to a reader: empty, odd, "deleted", past or at the mapping's
    end, block offsets whose key or value would run past it, huge deadlines and heartbeats."""
    end_blocks = [
        (size - back) << layout.LOC_SHIFT | length
        for back in (0, 8, 24, 32, 64)
        for length in (0, 1, 40, layout.MAX_INLINE_VALUE)
    ]
    return [
        0, 1, 2, 2**63, 2**63 + 1, 2**64 - 1, 2**32, size, size - 8, data << layout.LOC_SHIFT,
        *end_blocks, rng.getrandbits(64), rng.getrandbits(40) << layout.LOC_SHIFT,
    ]  # fmt: skip


@pytest.mark.parametrize("checksum", [False, True])
def test_a_garbled_region_reads_the_same_on_both_paths_and_never_out_of_bounds(
    c: object, monkeypatch: pytest.MonkeyPatch, checksum: bool
) -> None:
    # Only the store writes the region, but a reader must survive any content all the same:
    # this test writes through the store's own mapping what a bug, a torn write or a hostile
    # store could leave (slots that name a probed key and point past the mapping's end,
    # random words in the table, the data and the header) and asks both readers. Neither may
    # raise or read outside the mapping (the C one would crash the process), and the C
    # lookup must answer exactly what the reference answers.
    seed = GARBLE_SEED + checksum
    rng = random.Random(seed)
    monkeypatch.setattr(writer_module, "hash_secret", lambda: _seeded_secret(rng))
    writer = RegionWriter(64 * 1024, max_value=600, checksum=checksum)
    monkeypatch.setenv(ENV, "1")
    fast = RegionReader(*writer.fds, 0)
    monkeypatch.setenv(ENV, "0")
    slow = RegionReader(*writer.fds, 1)
    w = writer._w
    size = len(w) * 8
    data = w[layout.H_DATA]
    mul, prime = w[layout.H_HASH_MUL], w[layout.H_HASH_PRIME]
    keys = [b"", b"k", b"x" * 9, b"y" * 200, *(b"g:%d" % n for n in range(40))]
    try:
        for key in keys[1:20]:
            writer.publish(key, bytes(rng.getrandbits(8) for _ in range(30)), 0, 0)
        for round_ in range(300):
            writer.beat(time.monotonic_ns())
            table = w[layout.H_TABLE] & ~63
            slots = 1 << (w[layout.H_TABLE] & 63)
            nasty = _nasty_words(rng, size, data)
            for _ in range(4):
                kind = rng.random()
                if kind < 0.5 and slots <= 2**20:
                    # A slot that names a probed key, near its home, with garbled words.
                    key = rng.choice(keys)
                    h = layout.key_hash(key, mul, prime)
                    slot = ((h & (slots - 1)) + rng.randrange(3)) & (slots - 1)
                    at = table // 8 + slot * layout.SLOT_WORDS
                    if at + layout.SLOT_WORDS <= len(w):
                        w[at + layout.META] = (h << 32) + len(key)
                        w[at + layout.SEQ] = rng.choice([0, 2, 4, 1, rng.getrandbits(64)])
                        w[at + layout.LOC] = rng.choice(nasty)
                        w[at + layout.EXPIRE] = rng.choice(nasty)
                elif kind < 0.8:
                    # Any word past the header: the table area and the data.
                    w[rng.randrange(512, len(w))] = rng.choice(nasty)
                elif kind < 0.95:
                    # A header word a read or a table adoption looks at.
                    header = [layout.H_TOKEN, layout.H_TABLE, layout.H_TABLE_AREA,
                              layout.H_TABLE_BYTES, layout.H_MARKS_BYTES, layout.H_HEARTBEAT,
                              layout.H_WRITE_EPOCH]  # fmt: skip
                    w[rng.choice(header)] = rng.choice(nasty)
                else:
                    writer.beat(time.monotonic_ns())
            for key in keys:
                where = f"seed {seed} (SHM_NATIVE_SEED={GARBLE_SEED}), round {round_}, {key!r}"
                assert fast.lookup(key) == slow.get(key), where
                assert fast.exists(key) == slow.exists(key), where
                assert fast.expire_at_of(key) == slow.expire_at_of(key), where
            assert fast.get_many(keys) == slow.get_many(keys), seed
    finally:
        fast.close()
        slow.close()
        writer.close()


def test_a_miss_in_a_partial_table_asks_the_store_on_both_paths(
    c: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A near cache's table holds part of the upstream's keys: a miss there is not an answer.
    writer = RegionWriter(2**20, partial=True)
    monkeypatch.setenv(ENV, "1")
    fast = RegionReader(*writer.fds, 0)
    monkeypatch.setenv(ENV, "0")
    slow = RegionReader(*writer.fds, 1)
    try:
        writer.publish(b"k", b"v", 0, 0)
        for reader in (fast, slow):
            assert reader.lookup(b"k") == b"v"
            assert reader.lookup(b"absent") is FALLBACK
            assert reader.exists(b"absent") is FALLBACK
    finally:
        fast.close()
        slow.close()
        writer.close()
