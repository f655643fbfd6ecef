"""A Starlette app for the gunicorn end-to-end tests: the ASGI twin of ``wsgi_app``.

The cache comes from ``request.state.cache`` (an ``AsyncCache`` put there by the plugin's app
wrapping); ``/local/*`` uses a per-process dict, ``/redis/get`` redis.asyncio. Every reply
carries the worker's pid.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

LOCAL: dict[str, Any] = {}


def _reply(body: dict[str, Any]) -> JSONResponse:
    body["pid"] = os.getpid()
    return JSONResponse(body, headers={"x-pid": str(os.getpid())})


def _cache(request: Request) -> Any:
    return getattr(request.state, "cache", None)


async def set_value(request: Request) -> JSONResponse:
    """Store ``value`` under ``key`` in the shared cache."""
    cache = _cache(request)
    await cache.set(request.query_params.get("key", "key"), request.query_params.get("value", ""))
    return _reply({"wrapped": True})


async def get_value(request: Request) -> JSONResponse:
    """Read ``key`` from the shared cache."""
    cache = _cache(request)
    if cache is None:
        return _reply({"wrapped": False})
    value = await cache.get(request.query_params.get("key", "key"))
    return _reply({"wrapped": True, "value": value})


async def local_set(request: Request) -> JSONResponse:
    """Store ``value`` under ``key`` in this worker's own dict."""
    LOCAL[request.query_params.get("key", "key")] = request.query_params.get("value", "")
    return _reply({"wrapped": _cache(request) is not None})


async def local_get(request: Request) -> JSONResponse:
    """Read ``key`` from this worker's own dict."""
    value = LOCAL.get(request.query_params.get("key", "key"))
    return _reply({"wrapped": _cache(request) is not None, "value": value})


_REDIS: list[Any] = []


async def redis_get(request: Request) -> JSONResponse:
    """Read ``key`` with redis.asyncio from the Redis at ``BENCH_REDIS_URL`` (the same
    endpoint without the plugin's cache, for ``bench/gunicorn.py --upstream``)."""
    if not _REDIS:
        import redis.asyncio  # only the benchmark needs it

        _REDIS.append(redis.asyncio.Redis.from_url(os.environ["BENCH_REDIS_URL"]))
    value = await _REDIS[0].get(request.query_params.get("key", "key"))
    return _reply({"value": None if value is None else value.decode("latin-1")})


async def env(request: Request) -> JSONResponse:
    """Show the BLINKSTORE_URL this worker inherited."""
    return _reply({"wrapped": _cache(request) is not None, "url": os.environ.get("BLINKSTORE_URL")})


app = Starlette(
    routes=[
        Route("/set", set_value),
        Route("/get", get_value),
        Route("/local/set", local_set),
        Route("/local/get", local_get),
        Route("/redis/get", redis_get),
        Route("/env", env),
    ]
)
