"""The backend contract, written once for asyncio (see ``base.py``); ``base_sync.py`` is
generated from this module by ``scripts/unasync.py`` (``make generate``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from blinkstore_gunicorn.client.backends._resp import RawMessage

__all__ = ["AsyncBackend", "AsyncFeed"]
from blinkstore_gunicorn.engine.ratelimit import RateLimitReply

__all__ = ["AsyncBackend"]


class AsyncBackend(Protocol):
    """What a backend provides: ``AsyncBackend`` for ``AsyncCache`` (every method
    awaitable), ``SyncBackend`` for ``Cache`` (blocking)."""

    name: str

    async def get(self, key: bytes) -> bytes | None:
        """The raw value or None."""
        ...

    async def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Raw values in key order, None for missing ones."""
        ...

    async def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool:
        """SET with optional PX/NX/XX; whether the value was written."""
        ...

    async def mset(self, items: Sequence[tuple[bytes, bytes]], px: int | None) -> None:
        """Write every pair, each with the same optional TTL."""
        ...

    async def delete(self, keys: Sequence[bytes]) -> int:
        """Delete keys; how many existed."""
        ...

    async def exists(self, key: bytes) -> bool:
        """Whether the key exists."""
        ...

    async def incrby(self, key: bytes, delta: int) -> int:
        """Add ``delta`` to an integer value (a missing key counts as 0)."""
        ...

    async def pexpire(self, key: bytes, px: int | None) -> bool:
        """Set the TTL (None: remove it; <= 0: delete the key); False if the key is missing."""
        ...

    async def pttl(self, key: bytes) -> int:
        """Remaining ms; -1 without TTL; -2 when missing (Redis convention)."""
        ...

    def scan_iter(self, match: bytes, count: int) -> AsyncIterator[bytes]:
        """Every key matching the glob ``match``, fetched in batches."""
        ...

    async def flushdb(self) -> None:
        """Remove every key of the database."""
        ...

    async def ping(self) -> None:
        """Round-trip to the store; raise when it is unreachable."""
        ...

    async def info(self) -> dict[str, Any]:
        """The server's INFO, parsed into one flat dict."""
        ...

    async def close(self) -> None:
        """Release connections; the backend reconnects if used again."""
        ...

    # -- pub/sub --

    async def publish(self, channel: bytes, message: bytes) -> int:
        """PUBLISH: how many subscriptions received ``message``."""
        ...

    async def subscribe(self, channels: Sequence[bytes], patterns: Sequence[bytes]) -> AsyncFeed:
        """A connection of its own subscribed to ``channels`` and glob ``patterns``, returned
        once the server has confirmed every subscription."""
        ...

    # -- rate limits (docs/rate-limits.md) ---------------------------------------------------

    async def rate_limit(self, key: bytes, limit: int, period_ms: int, cost: int) -> RateLimitReply:
        """GCRA: ``(allowed, remaining, reset_ms, retry_after_ms)``, atomically."""
        ...

    async def incr_window(self, key: bytes, period_ms: int, delta: int) -> int:
        """Fixed-window counter: INCRBY that gives a new (or TTL-less) key ``period_ms``."""
        ...


class AsyncFeed(Protocol):
    """One subscribed connection (``AsyncFeed`` for asyncio, ``SyncFeed`` blocking)."""

    async def next(self, timeout: float | None) -> RawMessage | None:
        """The next message, or None when ``timeout`` seconds pass first (None: no limit).
        Raises :class:`CacheConnectionError` once the connection is lost."""
        ...

    async def close(self) -> None:
        """Close the connection (its subscriptions end with it)."""
