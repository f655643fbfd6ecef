"""The programs the compatibility tests run in processes of their own (``python -m
tests.compat.compat_apps NAME URL ...``), and the job functions their workers import.

Each program prints ``ready`` once it is set up, so a test waits on that line rather than
on time, and ends by itself within its own deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx
import redis
from arq.connections import RedisSettings
from celery import Celery
from channels_redis.core import RedisChannelLayer
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import STRATEGIES
from rq import Worker
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

DEADLINE = 60.0
LIMIT_STRATEGIES = ("fixed-window", "moving-window", "sliding-window-counter")


def add(a: int, b: int) -> int:
    """The job every queue runs: its result proves the worker ran it."""
    return a + b


class PromptExitWorker(Worker):
    """RQ's worker, its pubsub thread waking every second instead of every 60 s.

    A burst worker's exit joins that thread (redis-py 8.2's ``PubSubWorkerThread.stop``) while
    it waits out its ``sleep_time`` for a subscription that never comes back: RQ 3.0 passes
    60 s, a minute per test on either server, and nothing the test checks.
    """

    def subscribe(self) -> None:
        """Subscribe to this worker's channel, as RQ does, with a 1 s poll."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        # RQ's __init__ sets it to None, which is all mypy infers for the attribute.
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )


async def arq_add(ctx: dict[str, Any], a: int, b: int) -> int:
    """:func:`add` as an arq job."""
    return add(a, b)


class ArqWorker:
    """arq's worker settings (``arq tests.compat.compat_apps.ArqWorker``): the server is the
    one in ``COMPAT_REDIS_URL``."""

    functions = [arq_add]
    redis_settings = RedisSettings.from_dsn(os.environ.get("COMPAT_REDIS_URL", "redis://"))


# Celery's app for ``celery -A tests.compat.compat_apps worker``: the server is both broker and
# result backend.
celery_app = Celery(
    "compat",
    broker=os.environ.get("COMPAT_REDIS_URL", "redis://"),
    backend=os.environ.get("COMPAT_REDIS_URL", "redis://"),
)
celery_app.task(name="compat.add")(add)


async def channels_receive(url: str, group: str) -> None:
    """Join ``group`` on a new channel, say ``ready``, print the first message received."""
    layer = RedisChannelLayer(hosts=[url])
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    print("ready", flush=True)
    message = await asyncio.wait_for(layer.receive(channel), DEADLINE)
    print(json.dumps(message), flush=True)
    await layer.group_discard(group, channel)
    await layer.close_pools()


def limits_hits(url: str, limit: str, attempts: int) -> dict[str, int]:
    """Hit one key ``attempts`` times with each of ``limits``' strategies: how many passed."""
    storage = storage_from_string(url)
    item = parse(limit)
    return {
        f"limits {name}": sum(STRATEGIES[name](storage).hit(item, name) for _ in range(attempts))
        for name in LIMIT_STRATEGIES
    }


async def slowapi_hits(url: str, limit: str, attempts: int) -> dict[str, int]:
    """Call a Starlette endpoint limited by slowapi ``attempts`` times with each strategy:
    how many answered 200 (the others must be 429)."""
    passed = {}
    for name in LIMIT_STRATEGIES:
        # One key per strategy: each keeps a different type under it.
        limiter = Limiter(key_func=lambda request, key=name: key, storage_uri=url, strategy=name)

        @limiter.limit(limit)
        async def endpoint(request: Request) -> Response:
            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/", endpoint)])
        app.state.limiter = limiter
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            codes = [(await client.get("/")).status_code for _ in range(attempts)]
        assert set(codes) <= {200, 429}, codes
        passed[f"slowapi {name}"] = codes.count(200)
    return passed


def _rate_limit_exceeded(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("slow down", status_code=429)


def rate_limits(url: str, limit: str, attempts: str) -> None:
    """Say ``ready``, wait for the test's go (a push on ``compat:go``, so that every process
    starts hitting at once), then print as JSON how many hits each strategy let pass."""
    print("ready", flush=True)
    with redis.Redis.from_url(url) as client:
        if client.blpop(["compat:go"], timeout=DEADLINE) is None:
            raise SystemExit(f"no go within {DEADLINE}s")
    passed = limits_hits(url, limit, int(attempts))
    passed.update(asyncio.run(slowapi_hits(url, limit, int(attempts))))
    print(json.dumps(passed), flush=True)


def main(argv: list[str]) -> None:
    """Run the program ``argv[0]`` with the rest as its arguments."""
    name, *args = argv
    if name == "channels-receive":
        asyncio.run(channels_receive(*args))
    elif name == "rate-limits":
        rate_limits(*args)
    else:
        raise SystemExit(f"unknown program {name!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
