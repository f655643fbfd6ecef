"""The GCRA limiter as a pure function, and ``BLINK.RATELIMIT`` / ``BLINK.WINDOW`` through the
dispatcher (a fake clock, no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blinkstore_gunicorn.engine.ratelimit import (
    MAX_LIMIT,
    argument_error,
    decode_state,
    encode_state,
    gcra,
)
from tests.unit.test_commands import Harness, err

NOW_US = 1_700_000_000_000_000


@pytest.fixture
def r() -> Harness:
    return Harness()


def run(limit: int, period_ms: int, times_us: list[int], cost: int = 1) -> list[bool]:
    """Feed requests at these times through gcra, carrying the state as a store would."""
    tat: int | None = None
    verdicts = []
    for now in times_us:
        decision = gcra(tat, now, limit, period_ms, cost)
        verdicts.append(decision.allowed)
        tat = decision.tat_us
    return verdicts


def test_a_fresh_key_allows_a_burst_of_limit_then_refuses() -> None:
    assert run(5, 1000, [NOW_US] * 7) == [True] * 5 + [False] * 2


def test_one_request_returns_every_interval() -> None:
    first = gcra(None, NOW_US, 4, 1000)
    assert (first.allowed, first.remaining, first.reset_us, first.retry_after_us) == (
        True,
        3,
        250_000,
        0,
    )
    tat = first.tat_us
    for _ in range(3):
        tat = gcra(tat, NOW_US, 4, 1000).tat_us
    refused = gcra(tat, NOW_US, 4, 1000)
    assert (refused.allowed, refused.remaining, refused.retry_after_us) == (False, 0, 250_000)
    assert refused.reset_us == 1_000_000
    assert refused.tat_us == tat  # a refusal changes nothing
    assert gcra(tat, NOW_US + 249_999, 4, 1000).allowed is False
    later = gcra(tat, NOW_US + 250_000, 4, 1000)
    assert (later.allowed, later.remaining) == (True, 0)


def test_cost_zero_only_looks_and_cost_counts_several() -> None:
    peek = gcra(None, NOW_US, 10, 1000, cost=0)
    assert (peek.allowed, peek.remaining, peek.reset_us) == (True, 10, 0)
    heavy = gcra(None, NOW_US, 10, 1000, cost=7)
    assert (heavy.allowed, heavy.remaining) == (True, 3)
    too_heavy = gcra(heavy.tat_us, NOW_US, 10, 1000, cost=4)
    assert (too_heavy.allowed, too_heavy.retry_after_us) == (False, 100_000)


def test_a_state_from_a_larger_limit_reports_nothing_remaining() -> None:
    tat = gcra(None, NOW_US, 100, 1000, cost=100).tat_us
    assert gcra(tat, NOW_US, 10, 1000, cost=0).remaining == 0


@given(
    limit=st.integers(1, 50),
    period_ms=st.integers(1, 5000),
    gaps=st.lists(st.integers(0, 400_000), min_size=1, max_size=200),
)
def test_never_more_than_limit_plus_the_refill_in_any_period(
    limit: int, period_ms: int, gaps: list[int]
) -> None:
    times = []
    now = NOW_US
    for gap in gaps:
        now += gap
        times.append(now)
    allowed_at = [t for t, ok in zip(times, run(limit, period_ms, times), strict=True) if ok]
    interval = -(-period_ms * 1000 // limit)
    for i, start in enumerate(allowed_at):
        # In [start, start + span) GCRA admits the burst plus one per elapsed interval.
        span = period_ms * 1000
        inside = sum(1 for t in allowed_at[i:] if t < start + span)
        assert inside <= limit + -(-span // interval) - 1


def test_argument_bounds_name_the_argument() -> None:
    assert argument_error(1, 1, 0) is None
    assert argument_error(0, 1000, 1) == f"limit must be between 1 and {MAX_LIMIT}"
    assert argument_error(5, 0, 1) == "period must be between 1 ms and 1000000000000 ms"
    assert argument_error(5, 1000, 6) == "cost must be between 0 and the limit"


def test_state_round_trip_and_foreign_values() -> None:
    assert decode_state(encode_state(NOW_US)) == NOW_US
    assert decode_state(None) is None
    for foreign in (b"abc", b"-5", b"1.5", b"9" * 20):
        with pytest.raises(ValueError):
            decode_state(foreign)


def test_blink_ratelimit_command(r: Harness) -> None:
    assert r("BLINK.RATELIMIT", "rl", "2", "1000") == b"*4\r\n:1\r\n:1\r\n:500\r\n:0\r\n"
    assert r("blink.ratelimit", "rl", "2", "1000") == b"*4\r\n:1\r\n:0\r\n:1000\r\n:0\r\n"
    assert r("BLINK.RATELIMIT", "rl", "2", "1000") == b"*4\r\n:0\r\n:0\r\n:1000\r\n:500\r\n"
    assert r("PTTL", "rl") == b":1000\r\n"  # the state lives until the bucket is full again
    r.clock.now += 500
    assert r("BLINK.RATELIMIT", "rl", "2", "1000", "0") == b"*4\r\n:1\r\n:1\r\n:500\r\n:0\r\n"
    r.clock.now += 500
    assert r("EXISTS", "rl") == b":0\r\n"
    assert r("BLINK.RATELIMIT", "peek", "2", "1000", "0") == b"*4\r\n:1\r\n:2\r\n:0\r\n:0\r\n"
    assert r("EXISTS", "peek") == b":0\r\n"


@pytest.mark.parametrize(
    ("args", "reply"),
    [
        (("k",), "ERR wrong number of arguments for 'blink.ratelimit' command"),
        (("k", "1", "1000", "1", "x"), "ERR syntax error"),
        (("k", "x", "1000"), "ERR value is not an integer or out of range"),
        (("k", "1", "1000", "1.5"), "ERR value is not an integer or out of range"),
        (("k", "0", "1000"), f"ERR limit must be between 1 and {MAX_LIMIT} in 'blink.ratelimit'"),
        (("k", "3", "1000", "4"), "ERR cost must be between 0 and the limit in 'blink.ratelimit'"),
        (("s", "3", "1000"), "ERR value is not a rate limit state"),
    ],
)
def test_blink_ratelimit_errors_keep_the_connection(
    r: Harness, args: tuple[str, ...], reply: str
) -> None:
    r("SET", "s", "text")
    assert r("BLINK.RATELIMIT", *args).startswith(err(reply).rstrip(b"\r\n"))
    assert r("PING") == b"+PONG\r\n"


def test_blink_window_command(r: Harness) -> None:
    assert r("BLINK.WINDOW", "w", "1000") == b":1\r\n"
    r.clock.now += 600
    assert r("BLINK.WINDOW", "w", "1000", "5") == b":6\r\n"
    assert r("PTTL", "w") == b":400\r\n"  # the window does not move
    r.clock.now += 400
    assert r("BLINK.WINDOW", "w", "1000") == b":1\r\n"
    r("SET", "forever", "7")
    assert r("BLINK.WINDOW", "forever", "1000") == b":8\r\n"
    assert r("PTTL", "forever") == b":1000\r\n"  # a counter without TTL gets one
    r("SET", "s", "text")
    assert r("BLINK.WINDOW", "s", "1000") == err("ERR value is not an integer or out of range")
    assert r("BLINK.WINDOW", "w", "0") == err(
        "ERR period must be between 1 ms and 1000000000000 ms in 'blink.window' command"
    )
    assert r("BLINK.WINDOW", "w", "10", "x") == err("ERR value is not an integer or out of range")
    assert r("BLINK.WINDOW", "w", "10", "1", "2") == err("ERR syntax error")
    r("SET", "big", "9223372036854775807")
    assert r("BLINK.WINDOW", "big", "10") == err("ERR increment or decrement would overflow")
