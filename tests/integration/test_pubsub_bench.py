"""``bench/pubsub.py`` stays runnable: a tiny run measures both servers."""

from __future__ import annotations

import pytest

from bench import pubsub as bench_pubsub
from harness.processes import REDIS_SERVER


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_tiny_run_reports_every_measure() -> None:
    rows = bench_pubsub.run(subscribers=5, messages=40, size=10, rounds=1, batch=7)
    assert [row["measure"] for row in rows] == ["deliveries/s", "fan-out p50 us", "CPU ns/delivery"]
    for row in rows:
        assert row["redis"] > 0 and row["blinkstore"] > 0
        assert 0 < row["ratio"] < 1000


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        bench_pubsub.main(["--subscribers", "0"])
    assert info.value.code == 2
    assert "--subscribers must be at least 1" in capsys.readouterr().err
