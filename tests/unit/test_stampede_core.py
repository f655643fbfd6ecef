"""Stampede building blocks without a server: envelope, refresh rule, options, coalescing."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from blinkstore_gunicorn.client.errors import CacheStampedeTimeout
from blinkstore_gunicorn.client.stampede import (
    AsyncLocalFlights,
    FlightPlan,
    LocalFlights,
    should_refresh,
    unwrap,
    wrap,
)
from harness.gunicorn import wait_until


def plan(**options: object) -> FlightPlan:
    defaults: dict[str, object] = {
        "lock_timeout": 10.0,
        "wait_timeout": 10.0,
        "stale_ttl": None,
        "early_refresh": None,
        "on_wait_timeout": "raise",
    }
    defaults.update(options)
    fresh = defaults.pop("fresh_ms", 1000)
    return FlightPlan.make(fresh, **defaults)  # type: ignore[arg-type]


def test_envelope_round_trips_and_plain_values_pass_through() -> None:
    raw = wrap(b"\xfbpayload", fresh_until_ms=1_700_000_000_123, compute_ms=250)
    assert raw[0] == 0xFE
    assert unwrap(raw) == (b"\xfbpayload", 1_700_000_000_123, 250)
    assert unwrap(b"\xfbplain") == (b"\xfbplain", None, 0)
    assert unwrap(b"\xfe") == (b"\xfe", None, 0)


def test_refresh_rule_stale_and_xfetch() -> None:
    assert should_refresh(2000, 1000, 10, None)
    assert not should_refresh(500, 1000, 10, None)
    # U close to 0: -ln(1-U) ~ 0, so no early refresh long before expiry.
    assert not should_refresh(500, 1000, 100, 1.0, rand=lambda: 0.0)
    # U close to 1: -ln(1-U) is large: refresh early.
    assert should_refresh(500, 1000, 100, 1.0, rand=lambda: 0.999999)
    # A larger beta or a slower loader refreshes earlier.
    assert not should_refresh(0, 1000, 100, 1.0, rand=lambda: 0.9)
    assert should_refresh(0, 1000, 100, 10.0, rand=lambda: 0.9)


def test_flight_plan_validates_and_derives() -> None:
    simple = plan()
    assert (simple.lease_ms, simple.wait_ms, simple.store_px) == (10000, 10000, 1000)
    assert not simple.enveloped
    assert simple.encode(b"x", 5) == b"x"
    swr = plan(stale_ttl=30)
    assert swr.enveloped and swr.store_px == 31000
    payload, fresh_until, compute = unwrap(swr.encode(b"x", 5))
    assert payload == b"x" and compute == 5 and fresh_until is not None
    assert fresh_until - time.time() * 1000 == pytest.approx(1000, abs=200)
    cases: list[tuple[dict[str, object], str]] = [
        ({"lock_timeout": 0}, "lock_timeout"),
        ({"wait_timeout": -1}, "wait_timeout"),
        ({"stale_ttl": 0}, "stale_ttl"),
        ({"early_refresh": -1.0}, "early_refresh"),
        ({"on_wait_timeout": "hope"}, "on_wait_timeout"),
        ({"stale_ttl": 5, "fresh_ms": None}, "need a ttl"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            plan(**bad)


def test_local_flights_run_once_for_concurrent_threads() -> None:
    flights = LocalFlights()
    calls = []
    barrier = threading.Barrier(8)
    results: list[int] = []

    def flight() -> int:
        calls.append(1)
        time.sleep(0.2)
        return 42

    def caller() -> None:
        barrier.wait()
        results.append(flights.run("k", flight, 5.0, plan()))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [42] * 8
    assert len(calls) == 1


def _waits_on_a_future(thread: threading.Thread) -> bool:
    """Whether ``thread`` is inside ``Future.result``: a follower parked on the leader's flight."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "result" and "concurrent" in code.co_filename:
            return True
        frame = frame.f_back
    return False


def test_local_flights_share_the_leaders_error_then_forget_it() -> None:
    flights = LocalFlights()
    started = threading.Event()
    errors: list[BaseException] = []

    def failing() -> int:
        started.set()
        # Fail only once the follower waits on this flight: a fixed pause here lost the race
        # to a follower thread that a loaded machine scheduled late.
        assert wait_until(lambda: _waits_on_a_future(thread), 10.0), "the follower never joined"
        raise RuntimeError("database down")

    def follower() -> None:
        started.wait(5)
        try:
            flights.run("k", lambda: 1, 5.0, plan())
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=follower)
    thread.start()
    with pytest.raises(RuntimeError, match="database down"):
        flights.run("k", failing, 5.0, plan())
    thread.join(5)
    assert len(errors) == 1
    assert flights.run("k", lambda: 7, 5.0, plan()) == 7


def test_local_follower_times_out_or_computes() -> None:
    flights = LocalFlights()
    started = threading.Event()
    release = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "leader"

    leader = threading.Thread(target=lambda: flights.run("k", slow, 5.0, plan()))
    leader.start()
    started.wait(5)
    try:
        with pytest.raises(CacheStampedeTimeout, match="on_wait_timeout"):
            flights.run("k", lambda: "me", 0.05, plan())
        assert flights.run("k", lambda: "me", 0.05, plan(on_wait_timeout="compute")) == "me"
    finally:
        release.set()
        leader.join(5)


def test_async_flights_run_once_and_survive_a_cancelled_leader() -> None:
    async def scenario() -> None:
        flights = AsyncLocalFlights()
        calls = 0

        async def flight() -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.1)
            return calls

        results = await asyncio.gather(*(flights.run("k", flight, 5.0, plan()) for _ in range(50)))
        assert results == [1] * 50

        leader = asyncio.ensure_future(flights.run("j", flight, 5.0, plan()))
        await asyncio.sleep(0.01)
        follower = asyncio.ensure_future(flights.run("j", flight, 5.0, plan()))
        await asyncio.sleep(0.01)
        leader.cancel()
        # The cancelled leader's flight was call 2; the follower led a fresh one.
        assert await follower == 3

    asyncio.run(scenario())
