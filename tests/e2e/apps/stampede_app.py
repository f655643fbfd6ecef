"""A Starlette app whose one endpoint is an expensive, cached computation (stampede tests).

``/report?key=K`` returns ``get_or_set(K, loader)``. The loader counts its runs in the
shared cache (``K:loads``), records the computing worker's pid (``K:holder``), and takes
``delay`` seconds the first time (``retry_delay`` once a previous holder is recorded, so a
takeover after a killed holder finishes quickly).
"""

from __future__ import annotations

import asyncio
import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def report(request: Request) -> JSONResponse:
    """The cached computation."""
    cache = request.state.cache
    key = request.query_params["key"]
    delay = float(request.query_params.get("delay", "0.2"))
    retry_delay = float(request.query_params.get("retry_delay", str(delay)))

    async def loader() -> dict[str, int]:
        previous = await cache.get(key + ":holder")
        await cache.set(key + ":holder", os.getpid())
        await cache.incr(key + ":loads")
        await asyncio.sleep(delay if previous is None else retry_delay)
        return {"computed_by": os.getpid()}

    # Which workers hold a waiting request: a test that kills the holder needs one elsewhere.
    await cache.incr(f"{key}:arrived:{os.getpid()}")
    started = time.perf_counter()
    value = await cache.get_or_set(key, loader, ttl=60, lock_timeout=30, wait_timeout=30)
    took = time.perf_counter() - started
    return JSONResponse({"value": value, "pid": os.getpid(), "seconds": took})


async def counters(request: Request) -> JSONResponse:
    """How often the loader ran for ``key``, which worker ran it last, which of the workers
    named in ``workers`` (comma-separated pids) received a ``/report`` for it, and how many
    callers wait in the store."""
    cache = request.state.cache
    key = request.query_params["key"]
    workers = [pid for pid in request.query_params.get("workers", "").split(",") if pid]
    arrived = await cache.get_many(f"{key}:arrived:{pid}" for pid in workers)
    return JSONResponse(
        {
            "loads": await cache.get(key + ":loads"),
            "holder": await cache.get(key + ":holder"),
            "arrived": sorted(int(name.rsplit(":", 1)[1]) for name in arrived),
            "parked": (await cache.stats()).get("blocked_clients"),
            "pid": os.getpid(),
        }
    )


async def env(request: Request) -> JSONResponse:
    """Readiness probe for the harness."""
    return JSONResponse({"pid": os.getpid()})


app = Starlette(routes=[Route("/report", report), Route("/counters", counters), Route("/env", env)])
