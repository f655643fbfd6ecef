"""A short slice of the shared region's torture run (the long one is ``python -m bench.shm``).

A writer process publishes values of 1 B to 64 KiB as fast as it can while reader processes
read in tight loops; no read may return a torn or foreign value, and once a writer started
after a SIGKILL has published, no old reader may answer from the dead writer's region.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.shm_torture import check_value, make_value, torture

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd (Linux)")


def test_values_check_themselves() -> None:
    for size in (1, 5, 17, 18, 100, 65536):
        value = make_value(b"key:1", 7, size)
        assert len(value) == size and check_value(b"key:1", value) is None
    big = make_value(b"key:1", 7, 1000)
    assert check_value(b"key:2", big) == "foreign value"
    torn = big[:500] + make_value(b"key:1", 8, 1000)[500:]
    assert check_value(b"key:1", torn) == "torn value"
    assert check_value(b"key:2", make_value(b"key:1", 7, 3)) is not None


@pytest.mark.slow
def test_readers_never_see_torn_values_even_across_a_kill(tmp_path: Path) -> None:
    result = torture(str(tmp_path), readers=2, reads=40_000, kill_after=0.5)
    assert result.bad == []
    assert result.stale_after_restart == 0
    assert result.hits > 1000 and result.misses > 100
