"""How the store backends live through outages, without I/O: one deadline per call, the pace
of connect attempts while the store is away, and the probe of a store that stopped answering.
Both store backends (``store.py``, ``store_async.py``) drive it; ``_resp.py`` has the rest of
what they share."""

from __future__ import annotations

import math
import time
from typing import Any, Final

from blinkstore_gunicorn.client.errors import CacheConnectionError, CacheTimeoutError

__all__ = ["PROBE_INTERVAL", "RETRY_INTERVAL", "Reconnect", "deadline", "step_timeout"]

#: While the store restarts, waiting callers try to connect this often (see :class:`Reconnect`).
RETRY_INTERVAL: Final = 0.01
#: During a longer outage, one connect attempt this often finds the store once it is back.
PROBE_INTERVAL: Final = 0.1


def deadline(timeout: float | None) -> float:
    """When a call that starts now must be over (``math.inf`` without a timeout): connecting,
    waiting for a restarting store, sending, reading and resending all share it."""
    return math.inf if timeout is None else time.monotonic() + timeout


def step_timeout(limit: float | None, until: float) -> float | None:
    """A socket timeout for one step of a call that ends at ``until``: ``limit`` (None: no
    limit) or what is left of the call, whichever is shorter; never 0, which would make a
    socket non-blocking instead of timing out."""
    left = until - time.monotonic()
    if left == math.inf:
        return limit
    left = max(left, 0.001)
    return left if limit is None else min(limit, left)


class Reconnect:
    """Connect pacing while the store is unreachable (one per backend).

    A failed connect starts an outage. For its first ``grace`` seconds (the client timeout; a
    supervised store is back in ~150 ms) the store counts as restarting: callers that may wait
    try again every :data:`RETRY_INTERVAL` until their deadline, so they reach the new store
    as soon as it listens. A longer outage makes every call fail at once, except one probe
    every :data:`PROBE_INTERVAL`: a dead store costs no waiting and no connect per request.

    A store that accepts connections but does not answer (stopped, or stuck) is the other
    kind of outage, ``unanswered``: a restarting store refuses connections, so there is no
    grace. From the first request it leaves unanswered for the client timeout, every call
    fails at once while the backend keeps one ``PING`` on a connection of its own as a
    ``probe`` (sent without waiting, looked at by later calls, replaced only when its
    connection fails: a new connection per probe would fill the listen backlog of a stopped
    store, and then connects would wait) and the outage ends when the store answers it.
    """

    __slots__ = (
        "display",
        "down_since",
        "grace",
        "last_error",
        "next_attempt",
        "probe",
        "unanswered",
    )

    def __init__(self, display: str, grace: float | None) -> None:
        self.display = display
        self.grace = grace
        self.down_since: float | None = None
        self.next_attempt = 0.0
        self.last_error: CacheConnectionError | None = None
        self.unanswered = False
        #: The pending probe of an unanswered outage (the backend's connection), if any.
        self.probe: Any = None

    def wait_time(self, deadline: float | None) -> float:
        """Seconds until the next connect attempt (0: now); raise the outage's error when a
        caller with ``deadline`` cannot wait that long."""
        if self.down_since is None:
            return 0.0
        if self.unanswered:
            raise self.error()
        now = time.monotonic()
        delay = self.next_attempt - now
        if delay <= 0:
            return 0.0
        if deadline is None or now + delay > deadline or not self._restarting(now):
            raise self.error()
        return delay

    def error(self) -> CacheConnectionError:
        """A fresh copy of the outage's error, to raise."""
        error = self.last_error
        assert error is not None
        return type(error)(str(error))

    def _restarting(self, now: float) -> bool:
        return self.down_since is None or self.grace is None or now - self.down_since < self.grace

    def failed(self, error: CacheConnectionError) -> None:
        """Record a failed connect."""
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
        self.unanswered = False
        self.last_error = error
        self.next_attempt = now + (RETRY_INTERVAL if self._restarting(now) else PROBE_INTERVAL)

    def succeeded(self) -> None:
        """Record a successful connect: the outage, if any, is over."""
        self.down_since = None

    def timed_out(self, error: CacheTimeoutError) -> None:
        """Record a request the store left unanswered for the client timeout."""
        if self.down_since is None:
            self.down_since = time.monotonic()
        self.unanswered = True
        self.last_error = error

    def probe_due(self) -> bool:
        """Whether a new probe may go out now (at most one per :data:`PROBE_INTERVAL`); if
        so, the caller sends it and the next one waits."""
        now = time.monotonic()
        if now < self.next_attempt:
            return False
        self.next_attempt = now + PROBE_INTERVAL
        return True

    def probing(self, probe: Any) -> None:
        """Record the probe just sent."""
        self.probe = probe

    def answered(self) -> None:
        """The store answered a probe: the outage is over."""
        self.probe = None
        self.unanswered = False
        self.down_since = None
