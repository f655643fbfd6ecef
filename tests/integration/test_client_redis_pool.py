"""The redis-py backend waits for a free connection instead of failing under concurrency."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from blinkstore_gunicorn.client import AsyncCache, Cache
from harness.processes import RedisProcess

pytestmark = pytest.mark.redis

CALLERS = 200
#: Far fewer connections than callers: every caller but a few must wait for one.
POOL = 4


def connected_clients(redis_server: RedisProcess) -> int:
    with Cache(redis_server.redis_url) as probe:
        return int(probe.stats()["connected_clients"])


def test_async_callers_wait_for_a_connection(redis_server: RedisProcess) -> None:
    async def main() -> int | None:
        # 10 s, not the default 2: the callers' event loop also connects the pool, and on a
        # loaded machine that alone can pass 2 s; the test is about waiting for a connection.
        url = redis_server.redis_url
        async with AsyncCache(url, max_connections=POOL, timeout=10.0) as cache:
            await asyncio.gather(*(cache.incr("hits") for _ in range(CALLERS)))
            return await cache.get("hits")

    assert asyncio.run(main()) == CALLERS


def test_async_default_pool_serves_more_callers_than_redis_py_allows(
    redis_server: RedisProcess,
) -> None:
    # redis-py 8's asyncio pool refuses the 101st concurrent command by default.
    async def main() -> int | None:
        async with AsyncCache(redis_server.redis_url) as cache:
            await asyncio.gather(*(cache.incr("hits") for _ in range(CALLERS)))
            return await cache.get("hits")

    assert asyncio.run(main()) == CALLERS


def test_threads_wait_for_a_connection(redis_server: RedisProcess) -> None:
    with Cache(redis_server.redis_url, max_connections=POOL) as cache:

        def work(_: int) -> None:
            for _ in range(10):
                cache.incr("hits")

        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(work, range(CALLERS // 10)))
        assert cache.get("hits") == CALLERS
        # The pool stayed within its bound (plus the probe's own connection).
        assert connected_clients(redis_server) <= POOL + 1
