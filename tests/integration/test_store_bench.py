"""``bench/store.py`` stays runnable: a tiny run reports every one-connection scenario."""

from __future__ import annotations

import pytest

from bench import store as bench_store
from harness.processes import REDIS_SERVER

pytestmark = pytest.mark.redis


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_tiny_run_reports_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench_store.run(requests=1000, quick=True, rounds=4, floor=True)
    labels = [row["scenario"] for row in rows]
    assert labels == [scenario.label for scenario in bench_store.scenarios(quick=True)]
    for row in rows:
        assert row["blinkstore_p50_us"] > 0 and row["redis_p50_us"] > 0  # type: ignore[operator]
        assert 0 < row["p50_ratio"] < 100  # type: ignore[operator]
        lower, rounds = str(row["p50_lower"]).split("/")
        assert rounds == "4" and 0 <= int(lower) <= 4
        # The bare uvloop server runs beside them for small values only.
        assert ("floor_p50_us" in row) == (" 256 B," in str(row["scenario"]))
    bench_store.print_table(rows)
    assert "GET 256 B, 1 conn" in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        bench_store.main(["--rounds", "0"])
    assert info.value.code == 2
    assert "--rounds must be at least 1" in capsys.readouterr().err
