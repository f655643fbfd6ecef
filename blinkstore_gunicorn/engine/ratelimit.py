"""Rate limiting as pure functions of (stored state, now): no clock read, no I/O.

The store's ``BLINK.RATELIMIT`` command, the ``memory://`` backend and the Redis fallback
(:data:`GCRA_LUA`) compute the same answer, so a limit behaves alike wherever the cache lives.

The algorithm is GCRA (the generic cell rate algorithm, a leaky bucket measured in time):
``limit`` requests per ``period`` means one request every ``interval = period / limit`` with a
burst of ``limit``. The only state is the *theoretical arrival time* (TAT) of the next request,
one integer per key; it expires by itself once the bucket is full again. Compared with the
alternatives: a fixed window admits up to ``2 * limit`` across a window boundary, a sliding log
costs ``limit`` timestamps per key (this store has a memory limit), and a sliding-window
counter is an estimate; GCRA is exact, O(1) in time and memory, and yields ``remaining``,
``reset`` and ``retry_after`` directly.

Times are integer microseconds (the store's clock is in milliseconds): integers stay exact in
Lua's doubles (below 2**53) for every accepted argument, so the store and Redis agree to the
microsecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = [
    "GCRA_LUA",
    "MAX_LIMIT",
    "MAX_PERIOD_MS",
    "WINDOW_LUA",
    "Decision",
    "RateLimitReply",
    "Write",
    "argument_error",
    "ceil_ms",
    "decode_state",
    "encode_state",
    "gcra",
    "rate_limit_step",
    "window_step",
]

#: Bounds that keep every intermediate value an exact integer in a Lua double (< 2**53):
#: now (~1.8e15 us) + the bucket's capacity (<= period + limit us).
MAX_LIMIT: Final = 2**31
MAX_PERIOD_MS: Final = 10**12
#: ``(allowed, remaining, reset_ms, retry_after_ms)``: one verdict as the wire carries it.
RateLimitReply: TypeAlias = tuple[bool, int, int, int]
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True)
class Decision:
    """The outcome of one :func:`gcra` step.

    ``tat_us`` is the state to store afterwards; when it is not after ``now`` the bucket is
    full and nothing needs storing.
    """

    allowed: bool
    remaining: int
    reset_us: int
    retry_after_us: int
    tat_us: int

    def reply(self) -> RateLimitReply:
        """``(allowed, remaining, reset_ms, retry_after_ms)``, what ``BLINK.RATELIMIT`` sends."""
        return self.allowed, self.remaining, ceil_ms(self.reset_us), ceil_ms(self.retry_after_us)


@dataclass(frozen=True)
class Write:
    """What a step asks its caller to store at the key: a value and its deadline (absolute ms)."""

    value: bytes
    expire_at_ms: int


def argument_error(limit: int, period_ms: int, cost: int) -> str | None:
    """What is wrong with these arguments (names the argument), or None when they are valid."""
    if not 1 <= limit <= MAX_LIMIT:
        return f"limit must be between 1 and {MAX_LIMIT}"
    if not 1 <= period_ms <= MAX_PERIOD_MS:
        return f"period must be between 1 ms and {MAX_PERIOD_MS} ms"
    if not 0 <= cost <= limit:
        return "cost must be between 0 and the limit"
    return None


def gcra(tat_us: int | None, now_us: int, limit: int, period_ms: int, cost: int = 1) -> Decision:
    """One request of ``cost`` against ``limit`` per ``period_ms``, given the stored TAT.

    ``cost=0`` only looks. The arguments must pass :func:`argument_error`.
    """
    # Rounding the interval up keeps the long-run rate at or under limit/period.
    interval = -(-period_ms * 1000 // limit)
    capacity = interval * limit
    tat = now_us if tat_us is None or tat_us < now_us else tat_us
    wanted = tat + cost * interval
    allowed = wanted - now_us <= capacity
    retry_after = 0
    if allowed:
        tat = wanted
    else:
        retry_after = wanted - capacity - now_us
    remaining = max(0, (capacity - (tat - now_us)) // interval)
    return Decision(allowed, remaining, tat - now_us, retry_after, tat)


def ceil_ms(microseconds: int) -> int:
    """Whole milliseconds, rounded up: waiting that long is always enough."""
    return -(-microseconds // 1000)


def encode_state(tat_us: int) -> bytes:
    """The stored form of a TAT: its decimal digits (readable with ``GET``)."""
    return b"%d" % tat_us


def decode_state(raw: bytes | None) -> int | None:
    """The TAT stored at a key (None when absent); ValueError when the key holds other data."""
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise ValueError("not a rate limit state")
    return int(raw)


def rate_limit_step(
    raw: bytes | None, now_ms: int, limit: int, period_ms: int, cost: int
) -> tuple[Decision, Write | None]:
    """:func:`gcra` on the value stored at a key: the decision and what to store, if anything.

    ValueError when ``raw`` is not a rate limit state.
    """
    now_us = now_ms * 1000
    decision = gcra(decode_state(raw), now_us, limit, period_ms, cost)
    if not (decision.allowed and cost and decision.tat_us > now_us):
        return decision, None
    expire_at = now_ms + ceil_ms(decision.tat_us - now_us)
    return decision, Write(encode_state(decision.tat_us), expire_at)


def window_step(
    raw: bytes | None, expire_at_ms: int | None, now_ms: int, period_ms: int, delta: int
) -> tuple[int, Write]:
    """A fixed-window counter: ``delta`` added to the count stored at a key (``raw``, with its
    deadline); the window opens when the counter is created and keeps its end afterwards.

    ValueError when ``raw`` is not a decimal integer, OverflowError past 64 bits.
    """
    count = delta
    if raw is not None:
        if not (raw.isdigit() or (raw[:1] == b"-" and raw[1:].isdigit())) or len(raw) > 20:
            raise ValueError("not an integer")
        count += int(raw)
    if not _INT64_MIN <= count <= _INT64_MAX:
        raise OverflowError("increment or decrement would overflow")
    # A counter found without a deadline (written by someone else) gets one: none outlives
    # its window.
    if raw is None or expire_at_ms is None:
        expire_at_ms = now_ms + period_ms
    return count, Write(b"%d" % count, expire_at_ms)


#: The Redis/Valkey fallback of :func:`gcra`: KEYS[1], ARGV = limit, period_ms, cost; replies
#: ``{allowed, remaining, reset_ms, retry_after_ms}`` like ``BLINK.RATELIMIT``. The clock is
#: the server's (``TIME``), as the store's is.
GCRA_LUA: Final = """
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = math.ceil(period * 1000 / limit)
local capacity = interval * limit
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = tonumber(stored)
  if tat == nil then
    return redis.error_reply('ERR value is not a rate limit state')
  end
  if tat < now then tat = now end
end
local wanted = tat + cost * interval
local allowed = 0
local retry = 0
if wanted - now <= capacity then
  allowed = 1
  tat = wanted
  if cost > 0 and tat > now then
    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
  end
else
  retry = wanted - capacity - now
end
local remaining = math.max(0, math.floor((capacity - (tat - now)) / interval))
return {allowed, remaining, math.ceil((tat - now) / 1000), math.ceil(retry / 1000)}
"""

#: The Redis/Valkey fallback of ``BLINK.WINDOW``: KEYS[1], ARGV = period_ms, delta. The window
#: opens when the counter is created; a counter found without a TTL gets one, so no counter
#: outlives its window.
WINDOW_LUA: Final = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
"""
