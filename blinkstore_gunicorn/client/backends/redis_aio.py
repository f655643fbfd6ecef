"""The Redis/Valkey backend, written once for asyncio (see ``redis.py``); ``redis_sync.py``
is generated from this module by ``scripts/unasync.py`` (``make generate``)."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from blinkstore_gunicorn.client.backends import _resp
from blinkstore_gunicorn.client.backends.redis import (
    DEFAULT_MAX_CONNECTIONS,
    Guard,
    RateLimitScripts,
    connect_aio,
    merge_cluster_info,
)
from blinkstore_gunicorn.client.errors import CacheConfigError
from blinkstore_gunicorn.client.url import CacheURL
from blinkstore_gunicorn.engine.ratelimit import RateLimitReply

__all__ = ["AsyncRedisBackend"]

#: redis-py's message types that carry a published message.
_PUBLISHED = ("message", "pmessage")


class AsyncRedisBackend:
    """Backend over redis-py: ``redis.asyncio.Redis`` / ``redis.asyncio.cluster.RedisCluster``
    for ``AsyncRedisBackend``, ``redis.Redis`` / ``redis.cluster.RedisCluster`` for
    ``RedisBackend``."""

    name = "redis"

    def __init__(
        self,
        url: CacheURL,
        *,
        timeout: float | None,
        connect_timeout: float | None,
        max_connections: int | None = None,
    ) -> None:
        assert url.redis_url is not None
        self._display = url.display
        self._cluster = url.cluster
        size = max_connections or DEFAULT_MAX_CONNECTIONS
        #: ``_pool`` is the pool this backend made and must disconnect on close (None on a
        #: cluster); ``_guard`` wraps every call.
        self.client, self._pool, self._guard = connect_aio(url, timeout, connect_timeout, size)

    async def get(self, key: bytes) -> bytes | None:
        """GET."""
        async with self._guard:
            value: bytes | None = await self.client.get(key)
            return value

    async def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """MGET (split by slot on a cluster)."""
        async with self._guard:
            if self._cluster:
                return list(await self.client.mget_nonatomic(list(keys)))
            return list(await self.client.mget(list(keys)))

    async def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool:
        """SET [PX] [NX|XX]."""
        async with self._guard:
            return bool(await self.client.set(key, value, px=px, nx=nx, xx=xx))

    async def mset(self, items: Sequence[tuple[bytes, bytes]], px: int | None) -> None:
        """Pipelined SETs."""
        async with self._guard:
            pipe = self.client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, px=px)
            await pipe.execute()

    async def delete(self, keys: Sequence[bytes]) -> int:
        """DEL."""
        async with self._guard:
            return int(await self.client.delete(*keys))

    async def exists(self, key: bytes) -> bool:
        """EXISTS."""
        async with self._guard:
            return bool(await self.client.exists(key))

    async def incrby(self, key: bytes, delta: int) -> int:
        """INCRBY."""
        async with self._guard:
            return int(await self.client.incrby(key, delta))

    async def pexpire(self, key: bytes, px: int | None) -> bool:
        """PEXPIRE, or PERSIST + EXISTS."""
        async with self._guard:
            if px is None:
                pipe = self.client.pipeline(transaction=False)
                pipe.persist(key)
                pipe.exists(key)
                return bool((await pipe.execute())[1])
            return bool(await self.client.pexpire(key, px))

    async def pttl(self, key: bytes) -> int:
        """PTTL."""
        async with self._guard:
            return int(await self.client.pttl(key))

    async def scan_iter(self, match: bytes, count: int) -> AsyncIterator[bytes]:
        """SCAN (every primary on a cluster)."""
        async with self._guard:
            async for key in self.client.scan_iter(match=match, count=count):
                yield key

    async def flushdb(self) -> None:
        """FLUSHDB (every primary on a cluster)."""
        async with self._guard:
            await self.client.flushdb()

    async def ping(self) -> None:
        """PING."""
        async with self._guard:
            await self.client.ping()

    async def info(self) -> dict[str, Any]:
        """INFO (summed over nodes on a cluster)."""
        async with self._guard:
            if self._cluster:
                nodes = self.client.PRIMARIES
                return merge_cluster_info(await self.client.info(target_nodes=nodes))
            return dict(await self.client.info())

    async def close(self) -> None:
        """Close redis-py's connections."""
        with Guard(self._display):  # translates errors, and never waits for a free slot
            await self.client.aclose()
            if self._pool is not None:
                await self._pool.disconnect()

    async def delete_if_equal(self, key: bytes, expected: bytes) -> bool:
        """Delete ``key`` only if it still holds ``expected`` (atomically, by a script): a
        stampede lock is released only by its holder."""
        async with self._guard:
            return bool(await self.client.eval(_resp.DELETE_IF_EQUAL, 1, key, expected))

    # -- locks (see docs/locks.md) ----------------------------------------------------------

    async def extend_if_equal(self, key: bytes, expected: bytes, ms: int, replace: bool) -> bool:
        """Give ``key`` ``ms`` more (``replace``: from now) only while it holds ``expected``
        (atomically, by a script): a lock is extended only by its holder."""
        async with self._guard:
            script = _resp.EXTEND_IF_EQUAL
            return bool(await self.client.eval(script, 1, key, expected, ms, int(replace)))

    # -- pub/sub --

    async def publish(self, channel: bytes, message: bytes) -> int:
        """PUBLISH."""
        async with self._guard:
            return int(await self.client.publish(channel, message))

    async def subscribe(
        self, channels: Sequence[bytes], patterns: Sequence[bytes]
    ) -> _AsyncRedisFeed:
        """redis-py's ``PubSub``, subscribed (confirmations awaited)."""
        if self._cluster:
            # redis-py's asyncio cluster client has no PubSub; keep both flavours alike.
            raise CacheConfigError(f"{self._display}: subscribe is not offered on a cluster URL")
        async with self._guard:
            pubsub = self.client.pubsub()
            if channels:
                await pubsub.subscribe(*channels)
            if patterns:
                await pubsub.psubscribe(*patterns)
            for _ in range(len(channels) + len(patterns)):
                # The confirmations: once read, the server has every subscription.
                await pubsub.get_message(timeout=None)
        return _AsyncRedisFeed(pubsub, self._display)

    # -- rate limits (docs/rate-limits.md) ---------------------------------------------------

    async def rate_limit(self, key: bytes, limit: int, period_ms: int, cost: int) -> RateLimitReply:
        """The GCRA script (EVALSHA, loaded on first use)."""
        async with self._guard:
            reply = await self._scripts.gcra(keys=[key], args=[limit, period_ms, cost])
        return _resp.rate_limit_reply(reply)

    async def incr_window(self, key: bytes, period_ms: int, delta: int) -> int:
        """The fixed-window script (EVALSHA, loaded on first use)."""
        async with self._guard:
            return int(await self._scripts.window(keys=[key], args=[period_ms, delta]))

    @functools.cached_property
    def _scripts(self) -> RateLimitScripts:
        return RateLimitScripts(self.client)


class _AsyncRedisFeed:
    """Messages from a redis-py ``PubSub`` (on a connection of its own, outside the pool's
    bound: a subscription holds its connection for as long as it lives)."""

    def __init__(self, pubsub: Any, display: str) -> None:
        self._pubsub = pubsub
        self._display = display

    async def next(self, timeout: float | None) -> _resp.RawMessage | None:
        """The next published message, or None after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with Guard(self._display):
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                message = await self._pubsub.get_message(timeout=left)
                if message is not None and message["type"] in _PUBLISHED:
                    return message["channel"], message["data"], message["pattern"]
                if deadline is not None and time.monotonic() >= deadline:
                    return None

    async def close(self) -> None:
        """Close the ``PubSub``'s connection."""
        with Guard(self._display):
            await self._pubsub.aclose()
