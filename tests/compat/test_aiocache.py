"""aiocache's ``RedisCache`` with its ``RedLock`` and ``OptimisticLock``, on both servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiocache import RedisCache
from aiocache.lock import OptimisticLock, OptimisticLockError, RedLock

from tests.compat.compat_support import Server


def with_cache(server: Server, scenario: Callable[[RedisCache], Awaitable[None]]) -> None:
    """Run ``scenario`` with an aiocache ``RedisCache`` on ``server``'s TCP port."""

    async def run() -> None:
        cache = RedisCache(endpoint=server.host, port=server.port, namespace="compat")
        try:
            await scenario(cache)
        finally:
            await cache.close()

    asyncio.run(run())


def test_get_set_add_and_ttl(fresh: Server) -> None:
    async def scenario(cache: RedisCache) -> None:
        assert await cache.set("user", {"name": "ada"}, ttl=60)
        assert await cache.get("user") == {"name": "ada"}
        assert await cache.add("new", 1)
        with pytest.raises(ValueError):
            await cache.add("new", 2)
        assert await cache.increment("hits", 3) == 3
        assert await cache.multi_get(["user", "missing"]) == [{"name": "ada"}, None]
        assert await cache.delete("user") == 1

    with_cache(fresh, scenario)


def test_redlock_excludes_then_releases_by_script(fresh: Server) -> None:
    async def scenario(cache: RedisCache) -> None:
        lock_key = cache.build_key("expensive-lock")
        with fresh.client() as raw:
            async with RedLock(cache, "expensive", lease=30):
                assert raw.exists(lock_key)
                # Another process's RedLock takes the key by SET NX: it is taken.
                assert not raw.set(lock_key, "other", nx=True, ex=30)
            # Released by its Lua script, not left to the 30 s lease.
            assert not raw.exists(lock_key)
            async with RedLock(cache, "expensive", lease=30):
                assert raw.ttl(lock_key) > 0

    with_cache(fresh, scenario)


def test_optimistic_lock_refuses_a_changed_value(fresh: Server) -> None:
    async def scenario(cache: RedisCache) -> None:
        await cache.set("price", 10)
        async with OptimisticLock(cache, "price") as lock:
            assert await lock.cas(11)
        assert await cache.get("price") == 11
        with pytest.raises(OptimisticLockError):
            async with OptimisticLock(cache, "price") as lock:
                await cache.set("price", 99)
                await lock.cas(12)
        assert await cache.get("price") == 99

    with_cache(fresh, scenario)
