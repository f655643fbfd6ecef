"""``bench/locks.py`` stays runnable: a tiny run reports every peer with both figures."""

from __future__ import annotations

import pytest

from bench import locks as bench_locks
from harness.processes import REDIS_SERVER

pytestmark = pytest.mark.redis


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_tiny_run_reports_every_peer() -> None:
    rows = bench_locks.run(iterations=20, processes=2, turns=5, rounds=1)
    assert [row["lock"] for row in rows] == [name for name, _ in bench_locks.PEERS]
    for row in rows:
        assert row["round_trip_us"] > 0 and row["contended_per_s"] > 0  # type: ignore[operator]
    assert rows[-1]["trip_speedup"] == 1.0 and rows[-1]["contended_speedup"] == 1.0
