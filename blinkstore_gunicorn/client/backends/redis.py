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

This module holds what differs between the flavours (connecting, guarding a call) and what
both share; the backend classes are written once, for asyncio, in ``redis_aio.py``, and
``redis_sync.py`` is generated from it by ``scripts/unasync.py`` (``make generate``).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Final

from blinkstore_gunicorn.client.errors import (
    CacheConfigError,
    CacheConnectionError,
    CacheError,
    CacheResponseError,
    CacheTimeoutError,
)
from blinkstore_gunicorn.client.url import CacheURL
from blinkstore_gunicorn.engine.ratelimit import GCRA_LUA, WINDOW_LUA

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "AsyncGuard",
    "Guard",
    "RateLimitScripts",
    "connect_aio",
    "connect_sync",
    "merge_cluster_info",
]

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


def _translate(display: str, exc: BaseException) -> None:
    """Raise redis-py's exception ``exc`` as the CacheError family (others pass through)."""
    if isinstance(exc, CacheError):
        return
    redis = _import_redis()
    if isinstance(exc, redis.exceptions.TimeoutError):
        raise CacheTimeoutError(f"{display}: {exc}") from exc
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.ClusterDownError):
        raise CacheConnectionError(f"{display}: {exc}") from exc
    if isinstance(exc, redis.exceptions.RedisError):
        raise CacheResponseError(str(exc)) from exc


class Guard:
    """Wraps every call of the blocking backend: translates redis-py's exceptions (waiting
    for a free connection is the blocking pools' job)."""

    __slots__ = ("_display",)

    def __init__(self, display: str) -> None:
        self._display = display

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        if isinstance(exc_info[1], BaseException):
            _translate(self._display, exc_info[1])


class AsyncGuard:
    """Wraps every call of the asyncio backend: translates redis-py's exceptions and, with
    ``slots`` (on a cluster), waits up to ``timeout`` for one of them to be free."""

    __slots__ = ("_display", "_slots", "_timeout")

    def __init__(
        self, display: str, slots: int | None = None, timeout: float | None = None
    ) -> None:
        self._display = display
        self._slots = None if slots is None else asyncio.Semaphore(slots)
        self._timeout = timeout

    async def __aenter__(self) -> None:
        if self._slots is None:
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._timeout)
        except asyncio.TimeoutError:
            raise CacheTimeoutError(
                f"{self._display}: no connection free within {self._timeout}s"
            ) from None

    async def __aexit__(self, *exc_info: object) -> None:
        if self._slots is not None:
            self._slots.release()
        if isinstance(exc_info[1], BaseException):
            _translate(self._display, exc_info[1])


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


def connect_sync(
    url: CacheURL, timeout: float | None, connect_timeout: float | None, size: int
) -> tuple[Any, Any, Guard]:
    """``(client, pool, guard)`` for the blocking backend: ``redis.Redis`` on a blocking pool,
    or a ``RedisCluster`` with a blocking pool per node (``pool`` None: the cluster's own)."""
    redis = _import_redis()
    kwargs = _client_kwargs(timeout, connect_timeout)
    if url.cluster:
        from redis.cluster import RedisCluster

        # Every node gets a blocking pool; the class receives the node's address.
        node_pool = functools.partial(redis.BlockingConnectionPool, timeout=timeout)
        kwargs.update(connection_pool_class=node_pool, max_connections=size)
        return _from_url(RedisCluster.from_url, url, kwargs), None, Guard(url.display)
    pool = _blocking_pool(redis.BlockingConnectionPool, url, kwargs, size, timeout)
    return redis.Redis(connection_pool=pool), pool, Guard(url.display)


def connect_aio(
    url: CacheURL, timeout: float | None, connect_timeout: float | None, size: int
) -> tuple[Any, Any, AsyncGuard]:
    """``(client, pool, guard)`` for the asyncio backend: ``redis.asyncio.Redis`` on a
    blocking pool, or a ``RedisCluster`` whose calls the guard bounds to ``size``."""
    _import_redis()
    import redis.asyncio

    kwargs = _client_kwargs(timeout, connect_timeout)
    if url.cluster:
        from redis.asyncio.cluster import RedisCluster

        kwargs["max_connections"] = size
        guard = AsyncGuard(url.display, size, timeout)
        return _from_url(RedisCluster.from_url, url, kwargs), None, guard
    pool = _blocking_pool(redis.asyncio.BlockingConnectionPool, url, kwargs, size, timeout)
    return redis.asyncio.Redis(connection_pool=pool), pool, AsyncGuard(url.display)


class RateLimitScripts:
    """The rate limit scripts (docs/rate-limits.md) registered with one redis-py client, sync
    or asyncio: calling one runs EVALSHA, loading the script on first use."""

    def __init__(self, client: Any) -> None:
        self.gcra = client.register_script(GCRA_LUA)
        self.window = client.register_script(WINDOW_LUA)
