# Generated from redis_aio.py by scripts/unasync.py (make generate): do not edit.
"""The Redis/Valkey backend, written once for asyncio (see ``redis.py``); ``redis_sync.py``
is generated from this module by ``scripts/unasync.py`` (``make generate``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Sequence
from typing import Any

from blinkstore_gunicorn.client.backends import _resp
from blinkstore_gunicorn.client.backends.redis import (
    DEFAULT_MAX_CONNECTIONS,
    Guard,
    RateLimitScripts,
    connect_sync,
    merge_cluster_info,
)
from blinkstore_gunicorn.client.errors import CacheConfigError
from blinkstore_gunicorn.client.url import CacheURL
from blinkstore_gunicorn.engine.ratelimit import RateLimitReply

__all__ = ["RedisBackend"]

#: redis-py's message types that carry a published message.
_PUBLISHED = ("message", "pmessage")


class RedisBackend:
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
        self.client, self._pool, self._guard = connect_sync(url, timeout, connect_timeout, size)

    def get(self, key: bytes) -> bytes | None:
        """GET."""
        with self._guard:
            value: bytes | None = self.client.get(key)
            return value

    def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """MGET (split by slot on a cluster)."""
        with self._guard:
            if self._cluster:
                return list(self.client.mget_nonatomic(list(keys)))
            return list(self.client.mget(list(keys)))

    def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool:
        """SET [PX] [NX|XX]."""
        with self._guard:
            return bool(self.client.set(key, value, px=px, nx=nx, xx=xx))

    def mset(self, items: Sequence[tuple[bytes, bytes]], px: int | None) -> None:
        """Pipelined SETs."""
        with self._guard:
            pipe = self.client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, px=px)
            pipe.execute()

    def delete(self, keys: Sequence[bytes]) -> int:
        """DEL."""
        with self._guard:
            return int(self.client.delete(*keys))

    def exists(self, key: bytes) -> bool:
        """EXISTS."""
        with self._guard:
            return bool(self.client.exists(key))

    def incrby(self, key: bytes, delta: int) -> int:
        """INCRBY."""
        with self._guard:
            return int(self.client.incrby(key, delta))

    def pexpire(self, key: bytes, px: int | None) -> bool:
        """PEXPIRE, or PERSIST + EXISTS."""
        with self._guard:
            if px is None:
                pipe = self.client.pipeline(transaction=False)
                pipe.persist(key)
                pipe.exists(key)
                return bool((pipe.execute())[1])
            return bool(self.client.pexpire(key, px))

    def pttl(self, key: bytes) -> int:
        """PTTL."""
        with self._guard:
            return int(self.client.pttl(key))

    def scan_iter(self, match: bytes, count: int) -> Iterator[bytes]:
        """SCAN (every primary on a cluster)."""
        with self._guard:
            yield from self.client.scan_iter(match=match, count=count)

    def flushdb(self) -> None:
        """FLUSHDB (every primary on a cluster)."""
        with self._guard:
            self.client.flushdb()

    def ping(self) -> None:
        """PING."""
        with self._guard:
            self.client.ping()

    def info(self) -> dict[str, Any]:
        """INFO (summed over nodes on a cluster)."""
        with self._guard:
            if self._cluster:
                nodes = self.client.PRIMARIES
                return merge_cluster_info(self.client.info(target_nodes=nodes))
            return dict(self.client.info())

    def close(self) -> None:
        """Close redis-py's connections."""
        with Guard(self._display):  # translates errors, and never waits for a free slot
            self.client.close()
            if self._pool is not None:
                self._pool.disconnect()

    def delete_if_equal(self, key: bytes, expected: bytes) -> bool:
        """Delete ``key`` only if it still holds ``expected`` (atomically, by a script): a
        stampede lock is released only by its holder."""
        with self._guard:
            return bool(self.client.eval(_resp.DELETE_IF_EQUAL, 1, key, expected))

    # -- locks (see docs/locks.md) ----------------------------------------------------------

    def extend_if_equal(self, key: bytes, expected: bytes, ms: int, replace: bool) -> bool:
        """Give ``key`` ``ms`` more (``replace``: from now) only while it holds ``expected``
        (atomically, by a script): a lock is extended only by its holder."""
        with self._guard:
            script = _resp.EXTEND_IF_EQUAL
            return bool(self.client.eval(script, 1, key, expected, ms, int(replace)))

    # -- pub/sub --

    def publish(self, channel: bytes, message: bytes) -> int:
        """PUBLISH."""
        with self._guard:
            return int(self.client.publish(channel, message))

    def subscribe(self, channels: Sequence[bytes], patterns: Sequence[bytes]) -> _RedisFeed:
        """redis-py's ``PubSub``, subscribed (confirmations awaited)."""
        if self._cluster:
            # redis-py's asyncio cluster client has no PubSub; keep both flavours alike.
            raise CacheConfigError(f"{self._display}: subscribe is not offered on a cluster URL")
        with self._guard:
            pubsub = self.client.pubsub()
            if channels:
                pubsub.subscribe(*channels)
            if patterns:
                pubsub.psubscribe(*patterns)
            for _ in range(len(channels) + len(patterns)):
                # The confirmations: once read, the server has every subscription.
                pubsub.get_message(timeout=None)
        return _RedisFeed(pubsub, self._display)

    # -- rate limits (docs/rate-limits.md) ---------------------------------------------------

    def rate_limit(self, key: bytes, limit: int, period_ms: int, cost: int) -> RateLimitReply:
        """The GCRA script (EVALSHA, loaded on first use)."""
        with self._guard:
            reply = self._scripts.gcra(keys=[key], args=[limit, period_ms, cost])
        return _resp.rate_limit_reply(reply)

    def incr_window(self, key: bytes, period_ms: int, delta: int) -> int:
        """The fixed-window script (EVALSHA, loaded on first use)."""
        with self._guard:
            return int(self._scripts.window(keys=[key], args=[period_ms, delta]))

    @functools.cached_property
    def _scripts(self) -> RateLimitScripts:
        return RateLimitScripts(self.client)


class _RedisFeed:
    """Messages from a redis-py ``PubSub`` (on a connection of its own, outside the pool's
    bound: a subscription holds its connection for as long as it lives)."""

    def __init__(self, pubsub: Any, display: str) -> None:
        self._pubsub = pubsub
        self._display = display

    def next(self, timeout: float | None) -> _resp.RawMessage | None:
        """The next published message, or None after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with Guard(self._display):
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                message = self._pubsub.get_message(timeout=left)
                if message is not None and message["type"] in _PUBLISHED:
                    return message["channel"], message["data"], message["pattern"]
                if deadline is not None and time.monotonic() >= deadline:
                    return None

    def close(self) -> None:
        """Close the ``PubSub``'s connection."""
        with Guard(self._display):
            self._pubsub.close()
