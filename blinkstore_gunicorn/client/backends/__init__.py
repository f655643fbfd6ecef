"""Backends, chosen by URL: the Blink store (RESP), Redis/Valkey (redis-py), in-process memory.

:func:`create_sync_backend` and :func:`create_async_backend` are the only entry points the
cache classes use; each backend lives in its own module and is imported only when chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blinkstore_gunicorn.client.backends.base import AsyncBackend, SyncBackend
from blinkstore_gunicorn.client.url import CacheURL

__all__ = [
    "AsyncBackend",
    "BackendOptions",
    "SyncBackend",
    "create_async_backend",
    "create_sync_backend",
]


@dataclass(frozen=True)
class BackendOptions:
    """Connection settings resolved from keyword arguments, then the URL, then defaults."""

    timeout: float | None
    connect_timeout: float | None
    max_connections: int | None = None
    max_in_flight: int | None = None
    #: Whether reads wait for a restarting store like writes do (False: they fail at once,
    #: for caches that serve misses during an outage).
    wait_on_reads: bool = True


def create_sync_backend(url: CacheURL, options: BackendOptions) -> SyncBackend:
    """The blocking backend for ``url``."""
    backend: SyncBackend = _create(url, options, blocking=True)
    return backend


def create_async_backend(url: CacheURL, options: BackendOptions) -> AsyncBackend:
    """The asyncio backend for ``url``."""
    backend: AsyncBackend = _create(url, options, blocking=False)
    return backend


def _create(url: CacheURL, options: BackendOptions, blocking: bool) -> Any:
    if url.kind == "memory":
        from blinkstore_gunicorn.client.backends import memory

        return memory.MemoryBackend(url) if blocking else memory.AsyncMemoryBackend(url)
    timeouts = {"timeout": options.timeout, "connect_timeout": options.connect_timeout}
    if url.kind == "redis":
        from blinkstore_gunicorn.client.backends import redis_aio, redis_sync

        redis_backend = redis_sync.RedisBackend if blocking else redis_aio.AsyncRedisBackend
        return redis_backend(url, max_connections=options.max_connections, **timeouts)
    if blocking:
        from blinkstore_gunicorn.client.backends.store import StoreBackend

        return StoreBackend(
            url,
            max_idle=options.max_connections or 8,
            wait_on_reads=options.wait_on_reads,
            **timeouts,
        )
    from blinkstore_gunicorn.client.backends.store_async import AsyncStoreBackend
    from blinkstore_gunicorn.client.backends.store_pipeline import DEFAULT_MAX_IN_FLIGHT

    return AsyncStoreBackend(
        url,
        connections=options.max_connections or 1,
        max_in_flight=options.max_in_flight or DEFAULT_MAX_IN_FLIGHT,
        wait_on_reads=options.wait_on_reads,
        **timeouts,
    )
