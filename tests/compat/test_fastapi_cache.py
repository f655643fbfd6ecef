"""fastapi-cache2's ``RedisBackend``: responses cached by ``@cache``, and
``FastAPICache.clear(namespace=)`` (a Lua script over ``KEYS``) dropping one namespace only."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import redis.asyncio
from fastapi import FastAPI
from fastapi_cache import FastAPICache
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache

from tests.compat.compat_support import Server


def test_clear_namespace_drops_only_that_namespace(fresh: Server) -> None:
    calls: Counter[str] = Counter()
    app = FastAPI()

    @app.get("/items")
    @cache(expire=60, namespace="items")
    async def items() -> dict[str, int]:
        calls["items"] += 1
        return {"calls": calls["items"]}

    @app.get("/users")
    @cache(expire=60, namespace="users")
    async def users() -> dict[str, int]:
        calls["users"] += 1
        return {"calls": calls["users"]}

    async def scenario() -> None:
        client = redis.asyncio.Redis(unix_socket_path=fresh.unix_path)
        FastAPICache.init(RedisBackend(client), prefix="compat")
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                for _ in range(2):
                    assert (await http.get("/items")).json() == {"calls": 1}
                    assert (await http.get("/users")).json() == {"calls": 1}
                await FastAPICache.clear(namespace="items")
                assert (await http.get("/items")).json() == {"calls": 2}
                assert (await http.get("/users")).json() == {"calls": 1}
        finally:
            FastAPICache.reset()
            await client.aclose()

    asyncio.run(scenario())
