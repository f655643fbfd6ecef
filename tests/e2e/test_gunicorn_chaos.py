"""A short slice of ``python -m bench.chaos``: reads under gunicorn while the store is killed."""

from __future__ import annotations

import pytest

from bench.chaos import run

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def test_reads_never_fail_while_the_store_is_killed(capsys: pytest.CaptureFixture[str]) -> None:
    # 8 s: the store is SIGKILLed once (at 5 s), a worker once (at 7 s); no read may be a 5xx
    # and nothing may be left running once the master is stopped.
    status = run(seconds=8, worker_class="sync", readers=2)
    report = capsys.readouterr().out
    print(report)
    assert "store restarts: 1," in report
    assert status == 0, report
