"""cashews on ``redis://``: ``@cache.locked`` (and its unlock), ``rate_limit`` and
``slice_rate_limit`` that refuse past the limit, ``incr(expire=)``, on both servers.

cashews logs a refused command and goes on, so each test checks the effect (a refusal, a
freed lock), not only the absence of an exception; ``suppress=False`` makes errors raise too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from cashews import Cache
from cashews.exceptions import LockedError, RateLimitError

from tests.compat.compat_support import Server


def with_cache(server: Server, scenario: Callable[[Cache], Awaitable[None]]) -> None:
    """Run ``scenario`` with a cashews cache set up on ``server``, closed afterwards."""

    async def run() -> None:
        cache = Cache()
        cache.setup(server.url, suppress=False)
        try:
            await scenario(cache)
        finally:
            await cache.close()

    asyncio.run(run())


def test_locked_excludes_then_unlocks(fresh: Server) -> None:
    async def scenario(cache: Cache) -> None:
        inside, leave = asyncio.Event(), asyncio.Event()

        @cache.locked(ttl="1m", key="report", wait=False)
        async def build_report(hold: bool) -> str:
            if hold:
                inside.set()
                await leave.wait()
            return "built"

        holder = asyncio.create_task(build_report(True))
        await asyncio.wait_for(inside.wait(), 30)
        assert await cache.is_locked("locked:report")
        with pytest.raises(LockedError):
            await build_report(False)
        leave.set()
        assert await holder == "built"
        # The lock went with the call (unlock by script), not with its one-minute TTL.
        assert not await cache.is_locked("locked:report")
        assert await build_report(False) == "built"

    with_cache(fresh, scenario)


def test_set_lock_and_unlock_only_by_its_owner(fresh: Server) -> None:
    async def scenario(cache: Cache) -> None:
        assert await cache.set_lock("job", "owner", expire=60)
        assert not await cache.set_lock("job", "thief", expire=60)
        await cache.unlock("job", "thief")
        assert await cache.is_locked("job")
        await cache.unlock("job", "owner")
        assert not await cache.is_locked("job")

    with_cache(fresh, scenario)


@pytest.mark.parametrize("kind", ["rate_limit", "slice_rate_limit"])
def test_rate_limits_refuse_past_the_limit(fresh: Server, kind: str) -> None:
    async def scenario(cache: Cache) -> None:
        limiter = getattr(cache, kind)

        @limiter(limit=3, period="1m", key="user:{user}")
        async def endpoint(user: str) -> str:
            return user

        assert [await endpoint("ada") for _ in range(3)] == ["ada"] * 3
        with pytest.raises(RateLimitError):
            await endpoint("ada")
        assert await endpoint("bob") == "bob"

    with_cache(fresh, scenario)


def test_incr_with_expire(fresh: Server) -> None:
    async def scenario(cache: Cache) -> None:
        assert await cache.incr("visits", expire=60) == 1
        assert await cache.incr("visits", value=4, expire=60) == 5
        assert 0 < await cache.get_expire("visits") <= 60

    with_cache(fresh, scenario)
