"""Tell the operator that the memory limit is evicting keys: at once, then in summaries.

A cache at its limit evicts as designed, but a limit set too low for the data (the default
64 MiB holds about 50,000 values of 1 KiB) turns a cache into a stream of misses without a
word. The first eviction is logged as a warning with the limit and how to raise it; later
evictions are summed up at most once per :data:`SUMMARY_INTERVAL`, so a store that evicts all
day writes a line a minute, not a line a key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from blinkstore_gunicorn.config import human_size
from blinkstore_gunicorn.engine import ENTRY_OVERHEAD, TTL_OVERHEAD, Engine

__all__ = ["SUMMARY_INTERVAL", "EvictionLog"]

log = logging.getLogger("blinkstore.server")

#: Seconds between two summary lines while the store keeps evicting.
SUMMARY_INTERVAL = 60.0


class EvictionLog:
    """Watches an engine's eviction counter; :meth:`check` is called by the store's tick."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._log = logger
        self._reported = engine.stats().evictions
        self._reported_at: float | None = None

    def check(self) -> None:
        """Log the first eviction at once, later ones at most once per interval."""
        stats = self._engine.stats()
        new = stats.evictions - self._reported
        if new <= 0:
            return
        now = self._clock()
        limit = human_size(stats.memory_limit)
        if self._reported_at is None:
            average = human_size(stats.used_bytes // max(stats.keys, 1))
            self._log.warning(
                "memory limit %s reached: evicting keys to make room (%d keys held, %s per "
                "entry on average). Each entry counts key + value + %d B (+%d B with a TTL). If "
                "evicted keys are missed, raise the limit: --memory-limit or "
                "BLINKSTORE_MEMORY_LIMIT (blinkstore_memory_limit in a gunicorn config); see "
                "'Sizing the memory limit' in docs/configuration.md",
                limit,
                stats.keys,
                average,
                ENTRY_OVERHEAD,
                TTL_OVERHEAD,
            )
        elif now - self._reported_at >= SUMMARY_INTERVAL:
            self._log.info(
                "evicted %d keys in the last %d s to stay within %s (%d since start, %d keys held)",
                new,
                round(now - self._reported_at),
                limit,
                stats.evictions,
                stats.keys,
            )
        else:
            return
        self._reported = stats.evictions
        self._reported_at = now
