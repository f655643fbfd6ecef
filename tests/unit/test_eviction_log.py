"""EvictionLog: the first eviction is logged at once, later ones in rate-limited summaries."""

from __future__ import annotations

import logging

import pytest

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.server.eviction_log import SUMMARY_INTERVAL, EvictionLog

LIMIT = 64 * 1024


def fill(engine: MemoryEngine, prefix: str, count: int) -> None:
    for i in range(count):
        engine.set(f"{prefix}{i}".encode(), b"x" * 1024)


def test_first_eviction_then_one_summary_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="blinkstore")
    now = [100.0]
    engine = MemoryEngine(memory_limit=LIMIT)
    watcher = EvictionLog(engine, clock=lambda: now[0])
    fill(engine, "a", 40)  # fits: nothing to say
    watcher.check()
    assert caplog.records == []

    fill(engine, "b", 100)
    watcher.check()
    (first,) = caplog.records
    assert first.levelno == logging.WARNING
    message = first.getMessage()
    assert "memory limit 64 KiB reached" in message
    assert "--memory-limit" in message and "BLINKSTORE_MEMORY_LIMIT" in message

    # More evictions within the interval: quiet; a check after it sums them up once.
    fill(engine, "c", 100)
    now[0] += SUMMARY_INTERVAL / 2
    watcher.check()
    assert len(caplog.records) == 1
    now[0] += SUMMARY_INTERVAL / 2
    watcher.check()
    watcher.check()
    assert len(caplog.records) == 2
    summary = caplog.records[1].getMessage()
    assert summary.startswith("evicted 100 keys in the last 60 s to stay within 64 KiB")

    # No new evictions: no line, however long it has been.
    now[0] += 10 * SUMMARY_INTERVAL
    watcher.check()
    assert len(caplog.records) == 2


def test_an_unlimited_engine_never_logs(caplog: pytest.LogCaptureFixture) -> None:
    engine = MemoryEngine(memory_limit=0)
    watcher = EvictionLog(engine)
    fill(engine, "k", 200)
    watcher.check()
    assert caplog.records == []
