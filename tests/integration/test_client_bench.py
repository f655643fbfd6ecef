"""``bench/client.py`` stays runnable: a tiny run returns every scenario and both targets."""

from __future__ import annotations

import pytest

from bench import client as bench_client
from harness.processes import REDIS_SERVER

pytestmark = pytest.mark.redis


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_tiny_run_reports_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench_client.run(runs=1, requests=200, quick=True)
    labels = [row["scenario"] for row in result["rows"]]
    assert labels == [scenario.label for scenario in bench_client.SCENARIOS]
    for row in result["rows"]:
        assert row["ours"] > 0 and row["peer"] > 0 and row["ours_store"] > 0
        assert row["ratio"] == pytest.approx(row["ours"] / row["peer"])
    assert set(result["targets"]) == {"sync_get_p50", "async_get_100_tasks"}
    bench_client.print_table(result)
    out = capsys.readouterr().out
    assert "sync GET 256 B, 1 thread" in out and "target sync_get_p50" in out
