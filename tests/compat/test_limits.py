"""``limits`` and slowapi with ``redis://`` storage: the fixed window, the moving window and
the sliding-window counter each let exactly the limit through, across 4 processes hitting
the same key at once, on both servers."""

from __future__ import annotations

import contextlib
import json
from collections import Counter

import pytest

from tests.compat.compat_apps import LIMIT_STRATEGIES
from tests.compat.compat_support import Server, wait_output
from tests.integration.integration_support import process_output, running_process

# Several processes, seconds each: left out of `make test-fast`.
pytestmark = pytest.mark.slow

PROCESSES = 4
LIMIT = 25
# A day, so that no window turns over while the test runs (the sliding-window counter would
# then let through part of the last window's count again).
PERIOD = "day"


def test_exact_counts_across_processes(fresh: Server) -> None:
    program = ["-m", "tests.compat.compat_apps", "rate-limits", fresh.url, f"{LIMIT}/{PERIOD}"]
    # Each process tries the whole limit: four times the limit in all, and exactly it passes.
    attempts = str(LIMIT)
    totals: Counter[str] = Counter()
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(running_process([*program, attempts])) for _ in range(PROCESSES)
        ]
        for proc in procs:
            wait_output(proc, "ready")
        with fresh.client() as client:
            client.rpush("compat:go", *["go"] * PROCESSES)
        for proc in procs:
            assert proc.wait(90) == 0, process_output(proc)
            totals.update(json.loads(process_output(proc).splitlines()[-1]))
    expected = {
        f"{library} {name}": LIMIT for library in ("limits", "slowapi") for name in LIMIT_STRATEGIES
    }
    assert dict(totals) == expected
