"""What :meth:`Cache.rate_limit` returns, and the argument checks both clients share (the
limiter itself runs in the store; see docs/rate-limits.md)."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

from blinkstore_gunicorn.engine.ratelimit import MAX_PERIOD_MS, argument_error

__all__ = ["RateLimit", "rate_limit_args", "window_args"]

Period = float | datetime.timedelta


@dataclass(frozen=True)
class RateLimit:
    """One :meth:`Cache.rate_limit` verdict.

    ``allowed``: the request fits (its cost was taken). ``remaining``: requests that would
    still fit right now. ``reset``: seconds until the whole ``limit`` is available again.
    ``retry_after``: seconds until this request would fit (0.0 when allowed), what an HTTP
    ``Retry-After`` header wants.
    """

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float

    @classmethod
    def from_reply(cls, limit: int, reply: tuple[bool, int, int, int]) -> RateLimit:
        """Build from a backend's ``(allowed, remaining, reset_ms, retry_after_ms)``."""
        allowed, remaining, reset_ms, retry_ms = reply
        return cls(bool(allowed), limit, remaining, reset_ms / 1000, retry_ms / 1000)

    @classmethod
    def unchecked(cls, limit: int) -> RateLimit:
        """The verdict while the store is unreachable with ``on_error="miss"``: let it pass
        (an outage must not turn into refused requests)."""
        return cls(True, limit, limit, 0.0, 0.0)


def _period_ms(period: Period) -> int:
    if isinstance(period, datetime.timedelta):
        seconds = period.total_seconds()
    elif isinstance(period, (int, float)) and not isinstance(period, bool):
        seconds = float(period)
    else:
        raise TypeError(f"period must be seconds (a number) or a timedelta, not {period!r}")
    if not 0 < seconds * 1000 <= MAX_PERIOD_MS or math.isnan(seconds):
        raise ValueError(
            f"period must be > 0 and at most {MAX_PERIOD_MS // 1000} s; got {period!r}"
        )
    return max(1, round(seconds * 1000))


def _whole(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    return value


def rate_limit_args(limit: int, period: Period, cost: int) -> int:
    """Check :meth:`Cache.rate_limit`'s arguments before any I/O; return the period in ms."""
    period_ms = _period_ms(period)
    problem = argument_error(_whole("limit", limit), period_ms, _whole("cost", cost))
    if problem is not None:
        raise ValueError(problem)
    return period_ms


def window_args(period: Period, delta: int) -> int:
    """Check :meth:`Cache.incr_window`'s arguments; return the period in ms."""
    _whole("delta", delta)
    return _period_ms(period)
