"""A Starlette app whose endpoints take one host-wide lock (the lock tests).

``/bump?name=N&key=K`` increments the integer at ``K`` *non-atomically* (read, yield to the
event loop, write) under the lock ``N``: the count ends exact only if the lock admits one
holder at a time across workers. ``/hold?name=N`` takes ``N`` without timeout, records the
worker's pid under ``N:holder`` and never answers (the test kills that worker).
``/take?name=N`` counts itself under ``N:waiting:<pid>``, then waits up to 30 s for ``N``.
"""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

#: How long /take waits for the lock; the test expects far quicker.
TAKE_TIMEOUT = 30


async def bump(request: Request) -> JSONResponse:
    """One read-modify-write of the counter, under the lock."""
    cache = request.state.cache
    key = request.query_params["key"]
    async with cache.lock(request.query_params["name"], timeout=30):
        value = await cache.get(key, 0)
        await asyncio.sleep(0)  # let any other request of this worker run in between
        await cache.set(key, value + 1)
    return JSONResponse({"pid": os.getpid()})


async def hold(request: Request) -> JSONResponse:
    """Take the lock without timeout and keep it until this worker dies."""
    cache = request.state.cache
    name = request.query_params["name"]
    lock = cache.lock(name)
    await lock.acquire()
    await cache.set(name + ":holder", os.getpid())
    await asyncio.Event().wait()
    return JSONResponse({"pid": os.getpid()})  # never reached: the worker is killed


async def take(request: Request) -> JSONResponse:
    """Wait for the lock, then give it back at once."""
    cache = request.state.cache
    name = request.query_params["name"]
    await cache.incr(f"{name}:waiting:{os.getpid()}")
    async with cache.lock(name, blocking_timeout=TAKE_TIMEOUT):
        return JSONResponse({"pid": os.getpid()})


async def state(request: Request) -> JSONResponse:
    """What the test polls: the holder's pid, the counter, and the /take requests that
    arrived at each of the workers named in ``workers`` (comma-separated pids)."""
    cache = request.state.cache
    name = request.query_params["name"]
    workers = [pid for pid in request.query_params.get("workers", "").split(",") if pid]
    waiting = await cache.get_many(f"{name}:waiting:{pid}" for pid in workers)
    return JSONResponse(
        {
            "holder": await cache.get(name + ":holder"),
            "waiting": {key.rsplit(":", 1)[1]: count for key, count in waiting.items()},
            "count": await cache.get(request.query_params.get("key", name + ":count")),
            "pid": os.getpid(),
        }
    )


async def env(request: Request) -> JSONResponse:
    """Readiness probe for the harness."""
    return JSONResponse({"pid": os.getpid()})


app = Starlette(
    routes=[
        Route("/bump", bump),
        Route("/hold", hold),
        Route("/take", take),
        Route("/state", state),
        Route("/env", env),
    ]
)
