"""Short slices of the shared region's torture run against real stores (the long one, >= 10**8
reads: ``python -m bench.shm_torture``).

A writer rewrites self-checking values (random bytes with runs of zeros) between ~1.4 KB and
~4 KB blocks, so that the store's allocator hands pages from one size class to the other,
while reader processes read in tight loops: no reader, and no GET over the socket, may see a
value that differs from one written (issue 23: the readers' visited mark corrupted values).
"""

from __future__ import annotations

import os

import pytest

from bench.shm_torture import check_value, make_value, report, torture
from harness.processes import short_tempdir

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)"),
    pytest.mark.heavy,
]
both_paths = pytest.mark.usefixtures("shm_path")  # the C helper's path, then the Python one


def test_values_check_themselves() -> None:
    value = make_value(b"key:1", 7, 4000)
    assert len(value) == 4000 and check_value(b"key:1", value) is None
    assert bytes(64) in value, "runs of zeros, where a stray 8-byte write shows"
    assert make_value(b"key:1", 7, 4000) == value, "reproducible from key, version and size"
    marked = value[:800] + b"\x01" + value[801:]
    assert check_value(b"key:1", marked) == "corrupted"
    assert check_value(b"key:2", value) == "torn", "another key's value"
    mixed = value[:2000] + make_value(b"key:1", 8, 4000)[2000:]
    assert check_value(b"key:1", mixed) == "torn"
    assert check_value(b"key:1", value[:20]) == "torn"


@pytest.mark.slow
@both_paths
def test_readers_never_corrupt_values_the_store_then_serves() -> None:
    # 25 s of 3 readers on each path (C, Python): the main of issue 23 showed its first
    # corruption after 2-22 s.
    with short_tempdir() as workdir:
        result = torture(str(workdir), readers=3, reads=20_000, seconds=25, stop_at_first_bad=True)
    assert result.bad == 0, report(result, 3) + "\n" + "\n".join(result.examples)
    assert result.hits > 10_000


@pytest.mark.slow
@both_paths
def test_no_wrong_or_stale_read_across_an_unsupervised_restart() -> None:
    with short_tempdir() as workdir:
        result = torture(
            str(workdir), readers=3, reads=30_000, restart=True, reads_after_restart=20_000
        )
    summary = report(result, 3) + "\n" + "\n".join(result.examples)
    assert result.bad == 0, summary
    assert result.stale == 0, summary
    assert result.hits > 1000, summary
