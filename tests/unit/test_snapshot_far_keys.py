"""A background snapshot saves the strings the region holds far from their home.

A key the writer could not place within ``MAX_PROBE`` slots of its home is in no table until a
migration places it: every probe answers "ask the store". The forked child then reads it by
the block its engine holds, validated against the region's checksum; before, such a key was
counted as "changed during the save" and left out of every snapshot.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.shm import layout
from blinkstore_gunicorn.shm import writer as writer_module
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter
from blinkstore_gunicorn.storage.saving import Snapshots
from blinkstore_gunicorn.storage.snapshot import load_file
from tests.unit.test_shm_probes import _crafted

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)"),
    pytest.mark.usefixtures("shm_path"),
]

_HOUR_MS = 3600 * 1000


@pytest.fixture
def far(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[MemoryEngine, RegionWriter, list[bytes]]]:
    """An engine publishing into a checksummed region, with crafted keys piled on one home and
    a growth by migration (``_GROW_AT_ONCE`` 0): the keys past ``MAX_PROBE`` wait in no table.
    Returns the engine, its region and those far keys (the first with a deadline)."""
    monkeypatch.setattr(writer_module, "_GROW_AT_ONCE", 0)
    region = RegionWriter(0, max_value=64, checksum=True)
    # No ticker here: the heartbeat an hour ahead keeps the region alive for the readers.
    region.beat(time.monotonic_ns() + 3600 * 10**9)
    engine = MemoryEngine(memory_limit=0)
    engine.attach_region(region)
    reader = RegionReader(*region.fds, 0)
    try:
        keys = _crafted(region)
        deadline = int(time.time() * 1000) + _HOUR_MS
        for key in keys:
            engine.set(key, b"value of " + key, expire_at_ms=deadline if key == keys[-1] else None)
        out = [key for key in keys if reader.get(key, 1) is FALLBACK]
        assert len(out) == len(keys) - layout.MAX_PROBE and keys[-1] in out
        yield engine, region, out[::-1]
    finally:
        reader.close()
        region.close()


def _blocks(engine: MemoryEngine) -> dict[bytes, int]:
    return {key: value for key, value, _ in engine.items() if isinstance(value, int)}


async def _background_save(snapshots: Snapshots) -> None:
    """A real forked save; returns once the store read the child's report."""
    assert snapshots.background()
    deadline = time.monotonic() + 120  # the child runs at nice 19: slow on a loaded host
    while snapshots.in_progress:
        assert time.monotonic() < deadline, "the snapshot child never reported"
        await asyncio.sleep(0.01)


def _saved(path: Path) -> dict[bytes, tuple[object, int | None]]:
    parsed = load_file(str(path), int(time.time() * 1000))
    assert parsed is not None
    return {key: (value, deadline) for key, _, value, deadline in parsed.records}


def test_a_key_far_from_home_is_in_the_background_snapshot(
    far: tuple[MemoryEngine, RegionWriter, list[bytes]], tmp_path: Path
) -> None:
    engine, _, out = far
    snapshots = Snapshots(str(tmp_path / "dump.rdb"), engine)
    asyncio.run(_background_save(snapshots))
    assert snapshots.last_status == "ok"
    assert snapshots.changes_since_save == 0, "no key counted as changed during the save"
    saved = _saved(tmp_path / "dump.rdb")
    assert len(saved) == len(engine) == snapshots.keys
    for key in out:
        assert saved[key][0] == b"value of " + key
    assert saved[out[0]][1] == engine.expire_at(out[0])


def test_a_far_block_changed_under_its_handle_is_left_out(
    far: tuple[MemoryEngine, RegionWriter, list[bytes]], tmp_path: Path
) -> None:
    """The block no longer holds what its checksum says (as when the store refills it while
    the child reads): the key is left out and counted, so the next interval saves again."""
    engine, region, out = far
    block = _blocks(engine)[out[1]]
    start = block + layout.BLOCK_HEADER + len(out[1])
    region._mm[start : start + 5] = b"OTHER"  # same length, the checksum of the old value
    snapshots = Snapshots(str(tmp_path / "dump.rdb"), engine)
    asyncio.run(_background_save(snapshots))
    assert snapshots.last_status == "ok" and snapshots.changes_since_save == 1
    saved = _saved(tmp_path / "dump.rdb")
    assert out[1] not in saved and out[0] in saved and len(saved) == len(engine) - 1


def test_read_block_validates_what_it_reads(
    far: tuple[MemoryEngine, RegionWriter, list[bytes]],
) -> None:
    engine, region, out = far
    blocks = _blocks(engine)
    reader = RegionReader(*region.fds, 0)
    try:
        key, block = out[1], blocks[out[1]]
        assert reader.read_block(key, block, 0) == b"value of " + key
        assert reader.read_block(out[2], block, 0) is None, "another key's block"
        assert reader.read_block(key, block, 1) is None, "another deadline"
        assert reader.read_block(key, block + 8, 0) is None
        assert reader.read_block(key, len(region._mm), 0) is None, "past the mapping"
        # A region without checksums cannot tell a torn block: no second chance there.
        reader._checksum = False
        assert reader.read_block(key, block, 0) is None
    finally:
        reader.close()
