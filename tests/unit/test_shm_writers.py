"""The C writer against the Python reference: the same operations make the same region.

Two writers with one hash secret, one on the C helper and one on pure Python, take the same
random operations: new keys, overwrites that keep or change the block size, values of zero
bytes and of every size class up to past ``max_value`` (so pages are emptied and reused for
other sizes, and some entries say "ask the store"), deletes, deadlines, visited marks, batches,
FLUSHDB, and enough keys that the table migrates, again and again, while writes go on; among
them keys piled on one home, more than fit within MAX_PROBE slots of it, so that some are kept
in no table and placed by a later one. Their answers must be equal and, at every checkpoint,
their regions and marks byte for byte, and what they keep out of the table.
A failure prints the seed (``SHM_WRITERS_SEED=N`` replays it) and the first differing word.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from blinkstore_gunicorn.shm import layout
from blinkstore_gunicorn.shm import writer as writer_module
from blinkstore_gunicorn.shm.native import ENV, native
from blinkstore_gunicorn.shm.writer import RegionFull, RegionWriter
from tests.unit.test_shm_probes import shrink

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)")

_LIMIT = 512 * 1024  # 4 KiB pages: few enough that sizes compete for them
_MAX_VALUE = 1500
# Around block-size boundaries (16-byte steps, then 16 per doubling), zero and past max_value.
_SIZES = [0, 1, 7, 8, 9, 40, 100, 232, 233, 250, 400, 700, 1000, 1400, 1500, 1501, 3000]


@pytest.fixture(params=[False, True], ids=["plain", "checksum"])
def pair(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RegionWriter, RegionWriter]]:
    """``(C writer, Python writer)`` of one size and one hash secret, with or without the
    checksum words."""
    if native() is None:
        pytest.skip("the C helper is not built")
    secret = layout.hash_secret()
    monkeypatch.setattr(writer_module, "hash_secret", lambda: secret)
    # A key too far from home grows a small table at once; here every growth is a migration
    # that writes go on during, so that keys wait out of the table (test_shm_probes covers
    # the growth at once, which is the same migration run to its end in one call).
    monkeypatch.setattr(writer_module, "_GROW_AT_ONCE", 0)
    made: list[RegionWriter] = []
    try:
        for path in ("1", "0"):
            monkeypatch.setenv(ENV, path)
            made.append(RegionWriter(_LIMIT, max_value=_MAX_VALUE, checksum=request.param))
        assert made[0]._pub.__class__ is not made[1]._pub.__class__
        yield made[0], made[1]
    finally:
        for writer in made:
            writer.close()


def _piled(writer: RegionWriter, n: int = 48) -> list[bytes]:
    """``n`` keys on one home slot of the first table (1024 slots) of ``writer``'s secret."""
    home = layout.key_hash(b"piled", writer._mul, writer._prime) & 1023
    keys = (b"piled:%d" % i for i in range(10**7))
    piled = (key for key in keys if layout.key_hash(key, writer._mul, writer._prime) & 1023 == home)
    return [next(piled) for _ in range(n)]


def _first_difference(a: bytes, b: bytes) -> str:
    at = next(i for i in range(len(a)) if a[i] != b[i])
    start = at - at % 8
    return f"byte {at}: C {a[start : start + 8].hex()}, Python {b[start : start + 8].hex()}"


def _assert_same(c: RegionWriter, py: RegionWriter, seed: int, step: int) -> None:
    for writer in (c, py):
        writer.beat(0)  # the one word that differs by nature
    for name in ("_mm", "_marks_mm"):
        a, b = bytes(getattr(c, name)), bytes(getattr(py, name))
        if a != b:
            pytest.fail(f"seed {seed}, step {step}: {name} differ at {_first_difference(a, b)}")
    assert (c._ask, c._far) == (py._ask, py._far), (seed, step)


@pytest.mark.parametrize("sealed", [False, True], ids=["unsealed", "sealed"])
def test_the_c_and_python_writers_make_the_same_region(
    pair: tuple[RegionWriter, RegionWriter], sealed: bool
) -> None:
    c, py = pair
    if sealed:
        for writer in pair:
            writer.seal()
    seed = int(os.environ.get("SHM_WRITERS_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    handles: dict[bytes, int] = {}  # the same for both, checked at every step
    deadlines = [0, 0, 0, 1, 2**40]
    migrations = flushes = out_of_table = 0
    migrating = False
    piled = _piled(c)
    for step in range(30_000):
        # A pool of keys that grows in waves: tables of 1024 to 4096 slots, each grown into.
        key = b"key:%d" % rng.randrange(200 + step // 10 % 2500)
        if rng.random() < 0.03:
            key = rng.choice(piled)
        roll = rng.random()
        if roll < 0.55:
            value = rng.randbytes(rng.choice(_SIZES))
            if rng.random() < 0.3:
                value = bytes(len(value))  # zero bytes
            expire_at = rng.choice(deadlines)
            got = [w.publish(key, value, expire_at, handles.get(key, 0)) for w in pair]
            assert got[0] == got[1], (seed, step, key)
            handles[key] = got[0]
        elif roll < 0.75 and key in handles:
            handle = handles.pop(key)
            for writer in pair:
                writer.unpublish(key, handle)
        elif roll < 0.85 and key in handles:
            expire_at = rng.choice(deadlines)
            for writer in pair:
                writer.set_expire(key, handles[key], expire_at)
        elif roll < 0.95 and handles.get(key) and c._slot_of(handles[key]) >= 0:
            # A reader's visited mark (as a reader writes it), then SIEVE's look at it.
            mark = c._mark_base + c._slot_of(handles[key])
            for writer in pair:
                writer._marks[mark] = 1
            assert c.take_visited(handles[key]) == py.take_visited(handles[key])
        elif roll < 0.96:
            for writer in pair:
                writer.begin_batch()
                writer.end_batch()
        elif roll < 0.9603:
            for writer in pair:
                writer.flush()
            handles.clear()
            flushes += 1
        out_of_table += bool(c._far)
        migrations += not migrating and c._migration is not None
        migrating = c._migration is not None
        assert (py._migration is not None) == migrating, (seed, step)
        if step % 1000 == 0 or (migrating and step % 50 == 0):
            _assert_same(c, py, seed, step)
    _assert_same(c, py, seed, step)
    assert migrations >= 3, f"seed {seed}: the table migrated {migrations} times"
    assert out_of_table, f"seed {seed}: no entry was ever kept out of the table"


@pytest.mark.parametrize("path", ["1", "0"], ids=["c", "python"])
def test_an_overwrite_of_an_entry_the_migration_moved_stays_in_the_publisher(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the table grows, about one SET in 20 of a fill overwrites an entry the migration
    already moved (its block names its slot in the new table): the publisher's own in-place
    overwrite takes it, not the writer's general path (a Python detour per such SET)."""
    if path == "1" and native() is None:
        pytest.skip("the C helper is not built")
    monkeypatch.setenv(ENV, path)
    detours: list[bytes] = []
    general = RegionWriter._general

    def counted(writer: RegionWriter, key: bytes, value: bytes, expire_at: int, handle: int) -> int:
        if handle:
            detours.append(key)
        return general(writer, key, value, expire_at, handle)

    monkeypatch.setattr(RegionWriter, "_general", counted)
    writer = RegionWriter(_LIMIT, max_value=_MAX_VALUE)
    try:
        handles: dict[bytes, int] = {}
        moved: list[bytes] = []
        while not moved:
            assert len(handles) < 10_000, "no migration moved an entry"
            key = b"key:%d" % len(handles)
            handles[key] = writer.publish(key, b"old", 0, 0)
            migration = writer._migration
            if migration is not None:
                moved = [
                    k
                    for k, handle in handles.items()
                    if writer._w[(handle >> 3) + layout.BLOCK_SLOT] >> 62 == migration.half
                ]
        for key in moved:
            assert writer.publish(key, b"new", 0, handles[key]) == handles[key]
            assert writer.read(handles[key]) == b"new"
        assert detours == []
    finally:
        writer.close()


def test_both_writers_refuse_the_same_new_keys_and_keep_every_entry(
    pair: tuple[RegionWriter, RegionWriter],
) -> None:
    """The table at its largest (shrunk to the first table): both writers refuse the same new
    keys with RegionFull, changing nothing, and take every write to a key they hold, also out
    of the table (issue 23): the same regions, the same entries kept out of the table."""
    c, py = pair
    for writer in pair:
        shrink(writer)
    handles: dict[bytes, int] = {}
    keys = _piled(c) + [b"key:%d" % i for i in range(1000)]
    for step, key in enumerate(keys):
        value = b"long" * 400 if step % 7 == 0 else b"v"  # past max_value: "ask the store"
        got = []
        for writer in pair:
            try:
                got.append(writer.publish(key, value, 0, 0))
            except RegionFull:
                got.append(-1)
        assert got[0] == got[1], (step, key)
        if got[0] >= 0:
            handles[key] = got[0]
    assert len(handles) < len(keys), "nothing was refused"
    assert c._far and -1 in c._ask.values()
    _assert_same(c, py, 0, 0)
    for value in (b"w" * 100, b"long" * 400, b"x"):  # another block size, none, a block again
        for key, handle in handles.items():
            got = [writer.publish(key, value, 0, handle) for writer in pair]
            assert got[0] == got[1], key
            handles[key] = got[0]
        _assert_same(c, py, 0, 0)
    for writer in pair:
        for key, handle in handles.items():
            writer.set_expire(key, handle, 2**40)
            writer.unpublish(key, handle)
        assert not writer._far and not writer._ask and not writer._pub.live
    _assert_same(c, py, 0, 0)
