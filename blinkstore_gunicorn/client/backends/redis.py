"""``redis://``, ``rediss://``, ``valkey://`` (and ``+cluster``): redis-py's own clients.

Our API is translated onto ``redis.Redis`` / ``redis.asyncio.Redis`` (or their
``RedisCluster`` counterparts), so connection pooling, TLS, Sentinel-free failover, cluster
slot routing and fork safety (redis-py's pools check the pid) are redis-py's. Its exceptions
become :class:`CacheError` subclasses. redis-py is the optional extra
``blinkstore-gunicorn[redis]``.

Pools are bounded (``max_connections``, default :data:`DEFAULT_MAX_CONNECTIONS` per server)
and a caller that finds every connection busy waits for one, up to the client's ``timeout``,
instead of failing with "Too many connections" (what redis-py's default pools do once full;
its asyncio pool is full at 100 since 8.x). redis-py's asyncio cluster client has no blocking
pool, so there a semaphore of ``max_connections`` bounds the commands in flight instead.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final

from blinkstore_gunicorn.client.backends import _resp
from blinkstore_gunicorn.client.errors import (
    CacheConfigError,
    CacheConnectionError,
    CacheError,
    CacheResponseError,
    CacheTimeoutError,
)
from blinkstore_gunicorn.client.url import CacheURL

__all__ = ["DEFAULT_MAX_CONNECTIONS", "AsyncRedisBackend", "RedisBackend", "merge_cluster_info"]

#: Connections per server when the cache is not given ``max_connections``.
DEFAULT_MAX_CONNECTIONS: Final = 100

_INSTALL: Final = (
    "redis://, rediss:// and valkey:// URLs need redis-py: pip install 'blinkstore-gunicorn[redis]'"
)


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise CacheConfigError(_INSTALL) from None
    return redis


@contextmanager
def _translated(display: str) -> Iterator[None]:
    """Re-raise redis-py's exceptions as the CacheError family."""
    redis = _import_redis()
    try:
        yield
    except CacheError:
        raise
    except redis.exceptions.TimeoutError as exc:
        raise CacheTimeoutError(f"{display}: {exc}") from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.ClusterDownError) as exc:
        raise CacheConnectionError(f"{display}: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise CacheResponseError(str(exc)) from exc


def merge_cluster_info(info: dict[str, Any]) -> dict[str, Any]:
    """A cluster's INFO arrives per node ({"host:port": {...}}): sum the numbers, merge the
    keyspace entries, so stats() reads the same for one server and for a cluster."""
    if not info or not all(isinstance(value, dict) for value in info.values()):
        return info
    merged: dict[str, Any] = {"cluster_nodes": len(info)}
    for node_info in info.values():
        for key, value in node_info.items():
            if isinstance(value, bool) or not isinstance(value, int | float | dict):
                merged.setdefault(key, value)
            elif isinstance(value, dict):
                into = merged.setdefault(key, {})
                for sub, number in value.items():
                    if isinstance(number, int | float) and isinstance(
                        into.get(sub, 0), int | float
                    ):
                        into[sub] = into.get(sub, 0) + number
            else:
                merged[key] = merged.get(key, 0) + value
    return merged


def _from_url(factory: Any, url: CacheURL, kwargs: dict[str, Any]) -> Any:
    try:
        return factory(url.redis_url, **kwargs)
    except (ValueError, TypeError) as exc:
        raise CacheConfigError(f"{url.display}: {exc}") from None


def _client_kwargs(timeout: float | None, connect_timeout: float | None) -> dict[str, Any]:
    return {"socket_timeout": timeout, "socket_connect_timeout": connect_timeout}


def _blocking_pool(
    pool_class: Any, url: CacheURL, kwargs: dict[str, Any], max_connections: int, wait: float | None
) -> Any:
    """A redis-py ``BlockingConnectionPool`` for ``url``: full means wait up to ``wait`` s."""
    return _from_url(
        pool_class.from_url, url, {**kwargs, "max_connections": max_connections, "timeout": wait}
    )


class RedisBackend:
    """Blocking backend over ``redis.Redis`` / ``redis.cluster.RedisCluster``."""

    name = "redis"

    def __init__(
        self,
        url: CacheURL,
        *,
        timeout: float | None,
        connect_timeout: float | None,
        max_connections: int | None = None,
    ) -> None:
        redis = _import_redis()
        self._display = url.display
        self._cluster = url.cluster
        kwargs = _client_kwargs(timeout, connect_timeout)
        size = max_connections or DEFAULT_MAX_CONNECTIONS
        assert url.redis_url is not None
        #: The pool this backend made and must disconnect on close (None on a cluster).
        self._pool: Any = None
        if url.cluster:
            from redis.cluster import RedisCluster

            # Every node gets a blocking pool; the class receives the node's address.
            node_pool = functools.partial(redis.BlockingConnectionPool, timeout=timeout)
            kwargs.update(connection_pool_class=node_pool, max_connections=size)
            self.client: Any = _from_url(RedisCluster.from_url, url, kwargs)
        else:
            self._pool = _blocking_pool(redis.BlockingConnectionPool, url, kwargs, size, timeout)
            self.client = redis.Redis(connection_pool=self._pool)

    def get(self, key: bytes) -> bytes | None:
        """GET."""
        with _translated(self._display):
            value: bytes | None = self.client.get(key)
            return value

    def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """MGET (split by slot on a cluster)."""
        with _translated(self._display):
            if self._cluster:
                return list(self.client.mget_nonatomic(list(keys)))
            return list(self.client.mget(list(keys)))

    def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool:
        """SET [PX] [NX|XX]."""
        with _translated(self._display):
            return bool(self.client.set(key, value, px=px, nx=nx, xx=xx))

    def mset(self, items: Sequence[tuple[bytes, bytes]], px: int | None) -> None:
        """Pipelined SETs."""
        with _translated(self._display):
            pipe = self.client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, px=px)
            pipe.execute()

    def delete(self, keys: Sequence[bytes]) -> int:
        """DEL."""
        with _translated(self._display):
            return int(self.client.delete(*keys))

    def exists(self, key: bytes) -> bool:
        """EXISTS."""
        with _translated(self._display):
            return bool(self.client.exists(key))

    def incrby(self, key: bytes, delta: int) -> int:
        """INCRBY."""
        with _translated(self._display):
            return int(self.client.incrby(key, delta))

    def pexpire(self, key: bytes, px: int | None) -> bool:
        """PEXPIRE, or PERSIST + EXISTS."""
        with _translated(self._display):
            if px is None:
                pipe = self.client.pipeline(transaction=False)
                pipe.persist(key)
                pipe.exists(key)
                return bool(pipe.execute()[1])
            return bool(self.client.pexpire(key, px))

    def pttl(self, key: bytes) -> int:
        """PTTL."""
        with _translated(self._display):
            return int(self.client.pttl(key))

    def scan_iter(self, match: bytes, count: int) -> Iterator[bytes]:
        """SCAN (every primary on a cluster)."""
        with _translated(self._display):
            yield from self.client.scan_iter(match=match, count=count)

    def flushdb(self) -> None:
        """FLUSHDB (every primary on a cluster)."""
        with _translated(self._display):
            self.client.flushdb()

    def ping(self) -> None:
        """PING."""
        with _translated(self._display):
            self.client.ping()

    def info(self) -> dict[str, Any]:
        """INFO (summed over nodes on a cluster)."""
        with _translated(self._display):
            if self._cluster:
                return merge_cluster_info(self.client.info(target_nodes=self.client.PRIMARIES))
            return dict(self.client.info())

    def close(self) -> None:
        """Close redis-py's connections."""
        with _translated(self._display):
            self.client.close()
            if self._pool is not None:
                self._pool.disconnect()

    def delete_if_equal(self, key: bytes, expected: bytes) -> bool:
        """Delete ``key`` only if it still holds ``expected`` (atomically, by a script): a
        stampede lock is released only by its holder."""
        with _translated(self._display):
            return bool(self.client.eval(_resp.DELETE_IF_EQUAL, 1, key, expected))


class AsyncRedisBackend:
    """Asyncio backend over ``redis.asyncio.Redis`` / ``redis.asyncio.cluster.RedisCluster``."""

    name = "redis"

    def __init__(
        self,
        url: CacheURL,
        *,
        timeout: float | None,
        connect_timeout: float | None,
        max_connections: int | None = None,
    ) -> None:
        _import_redis()
        import redis.asyncio

        self._display = url.display
        self._cluster = url.cluster
        self._timeout = timeout
        kwargs = _client_kwargs(timeout, connect_timeout)
        size = max_connections or DEFAULT_MAX_CONNECTIONS
        assert url.redis_url is not None
        self._pool: Any = None
        #: Bounds the commands in flight where redis-py cannot wait for a connection.
        self._slots: asyncio.Semaphore | None = None
        if url.cluster:
            from redis.asyncio.cluster import RedisCluster

            kwargs["max_connections"] = size
            self._slots = asyncio.Semaphore(size)
            self.client: Any = _from_url(RedisCluster.from_url, url, kwargs)
        else:
            pool_class = redis.asyncio.BlockingConnectionPool
            self._pool = _blocking_pool(pool_class, url, kwargs, size, timeout)
            self.client = redis.asyncio.Redis(connection_pool=self._pool)

    @asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        """Translate errors and, on a cluster, wait (up to the timeout) for a free slot."""
        with _translated(self._display):
            slots = self._slots
            if slots is None:
                yield
                return
            try:
                await asyncio.wait_for(slots.acquire(), self._timeout)
            except asyncio.TimeoutError:
                raise CacheTimeoutError(
                    f"{self._display}: no connection free within {self._timeout}s"
                ) from None
            try:
                yield
            finally:
                slots.release()

    async def get(self, key: bytes) -> bytes | None:
        """GET."""
        async with self._call():
            value: bytes | None = await self.client.get(key)
            return value

    async def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """MGET (split by slot on a cluster)."""
        async with self._call():
            if self._cluster:
                return list(await self.client.mget_nonatomic(list(keys)))
            return list(await self.client.mget(list(keys)))

    async def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool:
        """SET [PX] [NX|XX]."""
        async with self._call():
            return bool(await self.client.set(key, value, px=px, nx=nx, xx=xx))

    async def mset(self, items: Sequence[tuple[bytes, bytes]], px: int | None) -> None:
        """Pipelined SETs."""
        async with self._call():
            pipe = self.client.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, px=px)
            await pipe.execute()

    async def delete(self, keys: Sequence[bytes]) -> int:
        """DEL."""
        async with self._call():
            return int(await self.client.delete(*keys))

    async def exists(self, key: bytes) -> bool:
        """EXISTS."""
        async with self._call():
            return bool(await self.client.exists(key))

    async def incrby(self, key: bytes, delta: int) -> int:
        """INCRBY."""
        async with self._call():
            return int(await self.client.incrby(key, delta))

    async def pexpire(self, key: bytes, px: int | None) -> bool:
        """PEXPIRE, or PERSIST + EXISTS."""
        async with self._call():
            if px is None:
                pipe = self.client.pipeline(transaction=False)
                pipe.persist(key)
                pipe.exists(key)
                return bool((await pipe.execute())[1])
            return bool(await self.client.pexpire(key, px))

    async def pttl(self, key: bytes) -> int:
        """PTTL."""
        async with self._call():
            return int(await self.client.pttl(key))

    async def scan_iter(self, match: bytes, count: int) -> AsyncIterator[bytes]:
        """SCAN (every primary on a cluster)."""
        async with self._call():
            async for key in self.client.scan_iter(match=match, count=count):
                yield key

    async def flushdb(self) -> None:
        """FLUSHDB."""
        async with self._call():
            await self.client.flushdb()

    async def ping(self) -> None:
        """PING."""
        async with self._call():
            await self.client.ping()

    async def info(self) -> dict[str, Any]:
        """INFO (summed over nodes on a cluster)."""
        async with self._call():
            if self._cluster:
                nodes = self.client.PRIMARIES
                return merge_cluster_info(await self.client.info(target_nodes=nodes))
            return dict(await self.client.info())

    async def close(self) -> None:
        """Close redis-py's connections."""
        with _translated(self._display):
            await self.client.aclose()
            if self._pool is not None:
                await self._pool.disconnect()

    async def delete_if_equal(self, key: bytes, expected: bytes) -> bool:
        """Delete ``key`` only if it still holds ``expected`` (atomically, by a script)."""
        async with self._call():
            return bool(await self.client.eval(_resp.DELETE_IF_EQUAL, 1, key, expected))
