"""``LogThrottle``: one log line per interval for an event a client can repeat at will.

A flood (connections over max-connections, oversized requests before AUTH) must not turn into
a flood of log lines; the line that is written says how many events it stands for.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["LogThrottle"]


class LogThrottle:
    """Counts events; :meth:`event` says when a line is due and how many it reports."""

    __slots__ = ("_clock", "_interval", "_logged_at", "_unreported")

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._logged_at: float | None = None
        self._unreported = 0

    def event(self) -> int:
        """Count one event; return the events to report if a line is due now, else 0."""
        self._unreported += 1
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < self._interval:
            return 0
        self._logged_at = now
        count, self._unreported = self._unreported, 0
        return count
