"""``Ticker``: periodic housekeeping that leaves the loop without a pending timer (Linux)."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from blinkstore_gunicorn.config import StoreSettings
from blinkstore_gunicorn.server.store import StoreServer
from blinkstore_gunicorn.server.ticker import Ticker
from harness.processes import short_tempdir

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux")


def pending_timers(loop: asyncio.AbstractEventLoop) -> int:
    """Timers the default asyncio loop would wake up for (what makes ``epoll_wait`` time out)."""
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    return sum(not handle.cancelled() for handle in scheduled)


async def ticks_within(seconds: float, kernel_timer: bool) -> int:
    """How often a 20 ms ticker fires in ``seconds``; checks it is silent once closed."""
    loop = asyncio.get_running_loop()
    calls: list[float] = []
    ticker = Ticker(loop, 0.02, lambda: calls.append(loop.time()), kernel_timer=kernel_timer)
    try:
        await asyncio.sleep(seconds)
    finally:
        ticker.close()
    count = len(calls)
    await asyncio.sleep(0.06)
    assert len(calls) == count, "ticks after close()"
    return count


@pytest.mark.parametrize("kernel_timer", [True, False])
def test_ticks_until_closed(kernel_timer: bool) -> None:
    count = asyncio.run(ticks_within(0.3, kernel_timer))
    # 15 periods; a loaded 2-core machine may merge or delay some, never all.
    assert 3 <= count <= 16


@linux_only
def test_kernel_timer_leaves_no_loop_timer_pending() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ticker = Ticker(loop, 0.05, lambda: None)
        try:
            assert ticker.uses_kernel_timer
            assert pending_timers(loop) == 0
            fd = ticker._fd
            assert fd is not None
        finally:
            ticker.close()
        ticker.close()  # idempotent
        with pytest.raises(OSError):
            os.fstat(fd)

        fallback = Ticker(loop, 0.05, lambda: None, kernel_timer=False)
        try:
            assert not fallback.uses_kernel_timer
            assert pending_timers(loop) == 1
        finally:
            fallback.close()
        assert pending_timers(loop) == 0

    asyncio.run(main())


@pytest.mark.parametrize("kernel_timer", [True, False])
def test_a_failing_callback_does_not_stop_the_ticks(kernel_timer: bool) -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        errors: list[object] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
        calls = 0

        def fail() -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("housekeeping bug")

        ticker = Ticker(loop, 0.02, fail, kernel_timer=kernel_timer)
        try:
            deadline = loop.time() + 10
            while calls < 2 and loop.time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            ticker.close()
        assert len(errors) == calls
        return calls

    assert asyncio.run(main()) >= 2


def test_interval_must_be_positive() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="positive"):
            Ticker(asyncio.get_running_loop(), 0, lambda: None)

    asyncio.run(main())


@linux_only
def test_a_started_store_sleeps_without_a_timeout() -> None:
    """The store's own loop has no timer pending between requests: see ticker.py for why."""

    async def main(path: str) -> None:
        server = StoreServer(StoreSettings(unix=path))
        await server.start()
        try:
            await asyncio.sleep(0.25)  # a few expiry ticks
            assert pending_timers(asyncio.get_running_loop()) == 0
        finally:
            await server.stop()

    with short_tempdir() as directory:
        asyncio.run(main(str(directory / "s.sock")))
