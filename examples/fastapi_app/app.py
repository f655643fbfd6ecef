"""blinkstore-gunicorn demo: one cache shared by every gunicorn worker.

Run it with the store (see README.md next to this file)::

    gunicorn -c examples/fastapi_app/gunicorn.conf.py app:app --chdir examples/fastapi_app

Endpoints:

- ``GET /``                  which worker (pid) served you, and the store's stats
- ``GET /weather/{city}``    a slow upstream call (``DEMO_UPSTREAM_DELAY`` s), cached for 30 s
- ``GET|POST /counter``      one counter, incremented by whichever worker serves the POST
- the ``/weather`` and ``/counter`` routes share a per-client rate limit
  (``DEMO_RATE_LIMIT`` requests per ``DEMO_RATE_WINDOW`` s, the store's GCRA limiter)
- ``WS /rooms/{room}``       a chat room: what one WebSocket sends, every socket in the room
  receives, whichever worker holds it
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import os
import time
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, WebSocket
from fastapi.responses import HTMLResponse
from fastapi.websockets import WebSocketDisconnect

from blinkstore_gunicorn.client import AsyncCache, CacheError
from blinkstore_gunicorn.client.aio import AsyncSubscription
from blinkstore_gunicorn.integrations import BlinkStoreMiddleware
from blinkstore_gunicorn.integrations.fastapi import CacheDep

UPSTREAM_DELAY = float(os.environ.get("DEMO_UPSTREAM_DELAY", "1.0"))
WEATHER_TTL = 30
# The backend-independent names the client adds to the store's INFO (GET /stats has them all).
SHOWN_STATS = ("backend", "keys", "used_memory", "memory_limit", "hits", "misses", "evictions")
RATE_LIMIT = int(os.environ.get("DEMO_RATE_LIMIT", "30"))
RATE_WINDOW = int(os.environ.get("DEMO_RATE_WINDOW", "10"))


async def rate_limit(request: Request, response: Response, cache: CacheDep) -> None:
    """Per client address, host-wide: the store's GCRA limiter (``cache.rate_limit``) allows a
    burst of RATE_LIMIT requests, then one every RATE_WINDOW / RATE_LIMIT seconds."""
    client = request.client.host if request.client else "unknown"
    # With the plugin's on_error="miss", a store being restarted lets requests through.
    verdict = await cache.rate_limit(f"ratelimit:{client}", RATE_LIMIT, RATE_WINDOW)
    headers = {
        "RateLimit-Limit": str(verdict.limit),
        "RateLimit-Remaining": str(verdict.remaining),
        "RateLimit-Reset": str(math.ceil(verdict.reset)),
    }
    if not verdict.allowed:
        headers["Retry-After"] = str(math.ceil(verdict.retry_after))
        raise HTTPException(
            status_code=429,
            detail=f"rate limit: {RATE_LIMIT} requests per {RATE_WINDOW} s",
            headers=headers,
        )
    response.headers.update(headers)


async def fetch_weather(city: str) -> dict[str, Any]:
    """Stand-in for a slow upstream API."""
    await asyncio.sleep(UPSTREAM_DELAY)
    return {
        "city": city,
        "forecast": "sunny" if len(city) % 2 else "rain",
        "fetched_at": time.time(),
    }


api = APIRouter(dependencies=[Depends(rate_limit)])


@api.get("/weather/{city}")
async def weather(city: str, cache: CacheDep) -> dict[str, Any]:
    """The upstream answer, computed once per 30 s for all workers together."""
    started = time.perf_counter()
    key = f"weather:{city.lower()}"
    report = await cache.get(key)
    cached = report is not None
    if report is None:
        report = await fetch_weather(city)
        await cache.set(key, report, ttl=WEATHER_TTL)
    return {
        "report": report,
        "cached": cached,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
        "pid": os.getpid(),
    }


@api.get("/counter")
async def read_counter(cache: CacheDep) -> dict[str, int]:
    """The shared counter's value."""
    return {"value": await cache.get("counter", 0), "pid": os.getpid()}


@api.post("/counter")
async def bump_counter(cache: CacheDep) -> dict[str, int]:
    """Add one to the shared counter, atomically, whichever worker serves the request."""
    try:
        value = await cache.incr("counter")
    except CacheError as exc:
        # A counter cannot be served from a miss: say so, and when to come back.
        raise HTTPException(
            status_code=503,
            detail=f"the store is unavailable, it is being restarted: {exc}",
            headers={"Retry-After": "1"},
        ) from None
    return {"value": value, "pid": os.getpid()}


app = FastAPI(title="blinkstore-gunicorn demo")
app.include_router(api)
# Under `gunicorn -c python:blinkstore_gunicorn.conf` the plugin wraps the app too; the
# middleware keeps the cache that is already there, so this line costs nothing there and makes
# plain `uvicorn app:app` work as well (with a per-process memory:// cache and a warning).
app.add_middleware(BlinkStoreMiddleware)


@app.get("/", response_class=HTMLResponse)
async def index(cache: CacheDep) -> str:
    """Which worker served this page, and what the store holds."""
    stats = await cache.stats()
    rows = "".join(
        f"<tr><th>{name}</th><td>{html.escape(str(stats.get(name, '-')))}</td></tr>"
        for name in SHOWN_STATS
    )
    return f"""<!doctype html>
<title>blinkstore demo</title>
<h1>Served by worker pid {os.getpid()}</h1>
<p>Reload: the pid changes between workers, the counter and the cached weather do not.</p>
<ul>
  <li><a href="/weather/paris">/weather/paris</a> (slow the first time, then cached for all)</li>
  <li><code>curl -X POST localhost:8000/counter</code> then <a href="/counter">/counter</a></li>
</ul>
<h2>Store stats (<a href="/stats">all of them</a>)</h2>
<table>{rows}</table>
"""


@app.get("/stats")
async def stats(cache: CacheDep) -> dict[str, Any]:
    """The store's stats as JSON, with the serving worker's pid."""
    return {"pid": os.getpid(), "stats": await cache.stats()}


# -- WebSocket rooms across workers ------------------------------------------------------------
# Each worker holds some of the sockets. What a socket sends is published on the store; every
# worker subscribes once (a pattern for all rooms) and hands each message to its own sockets in
# that room, so a message sent to worker 1 reaches the sockets held by worker 2.

ROOM_PREFIX = "room:"
#: This worker's sockets, by room.
_room_sockets: dict[str, set[WebSocket]] = {}
_relay: asyncio.Task[None] | None = None
_relay_lock = asyncio.Lock()


async def _relay_rooms(subscription: AsyncSubscription) -> None:
    """Hand every room message to this worker's sockets in that room."""
    async with subscription:
        async for message in subscription:
            room = message.channel.removeprefix(ROOM_PREFIX)
            for socket in list(_room_sockets.get(room, ())):
                # A socket closing meanwhile is removed by its own handler.
                with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                    await socket.send_json(message.data)


async def _start_relay(cache: AsyncCache) -> None:
    """Subscribe this worker to every room, once (again if the relay stopped)."""
    global _relay
    async with _relay_lock:
        if _relay is None or _relay.done():
            subscription = cache.subscribe(patterns=[ROOM_PREFIX + "*"])
            # Confirmed by the store before anyone here publishes: no message is missed.
            await subscription.open()
            _relay = asyncio.create_task(_relay_rooms(subscription))


@app.websocket("/rooms/{room}")
async def chat_room(websocket: WebSocket, room: str, cache: CacheDep) -> None:
    """Join ``room``: every text sent is broadcast as ``{"text", "pid"}`` to the whole room."""
    await websocket.accept()
    await _start_relay(cache)
    members = _room_sockets.setdefault(room, set())
    members.add(websocket)
    try:
        await websocket.send_json({"joined": room, "pid": os.getpid()})
        while True:
            text = await websocket.receive_text()
            await cache.publish(ROOM_PREFIX + room, {"text": text, "pid": os.getpid()})
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(websocket)
        if not members:
            _room_sockets.pop(room, None)
