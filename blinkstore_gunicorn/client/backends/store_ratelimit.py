"""The store's rate limit commands (``BLINK.RATELIMIT``, ``BLINK.WINDOW``; see
docs/rate-limits.md) for :class:`StoreBackend` and :class:`AsyncStoreBackend`, which inherit
them. A server without the ``BLINK.*`` commands (Redis or Valkey behind a ``unix://`` or
``tcp://`` URL) gets the same computation as a Lua script; the command bytes of both, and the
reply check, are in ``_resp.py``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from blinkstore_gunicorn.client.backends import _resp
from blinkstore_gunicorn.client.errors import CacheResponseError
from blinkstore_gunicorn.engine.ratelimit import RateLimitReply

__all__ = ["AsyncStoreRateLimits", "StoreRateLimits"]


class StoreRateLimits:
    """``rate_limit`` and ``incr_window`` over a blocking backend's ``_request``."""

    _request: Callable[..., Any]

    def rate_limit(self, key: bytes, limit: int, period_ms: int, cost: int) -> RateLimitReply:
        """BLINK.RATELIMIT (by script on a Redis/Valkey server)."""
        return _resp.rate_limit_reply(
            self._blink(_resp.cmd_rate_limit(key, limit, period_ms, cost))
        )

    def incr_window(self, key: bytes, period_ms: int, delta: int) -> int:
        """BLINK.WINDOW (by script on a Redis/Valkey server)."""
        return _resp.as_int(self._blink(_resp.cmd_incr_window(key, period_ms, delta)))

    def _blink(self, payloads: tuple[bytes, bytes]) -> Any:
        try:
            return self._request(payloads[0], idempotent=False)
        except CacheResponseError as exc:
            if not _resp.is_unknown_command_error(exc):
                raise
        return self._request(payloads[1], idempotent=False)


class AsyncStoreRateLimits:
    """``rate_limit`` and ``incr_window`` over an asyncio backend's ``_request``."""

    _request: Callable[..., Awaitable[Any]]

    async def rate_limit(self, key: bytes, limit: int, period_ms: int, cost: int) -> RateLimitReply:
        """BLINK.RATELIMIT (by script on a Redis/Valkey server)."""
        reply = await self._blink(_resp.cmd_rate_limit(key, limit, period_ms, cost))
        return _resp.rate_limit_reply(reply)

    async def incr_window(self, key: bytes, period_ms: int, delta: int) -> int:
        """BLINK.WINDOW (by script on a Redis/Valkey server)."""
        return _resp.as_int(await self._blink(_resp.cmd_incr_window(key, period_ms, delta)))

    async def _blink(self, payloads: tuple[bytes, bytes]) -> Any:
        try:
            return await self._request(payloads[0], idempotent=False)
        except CacheResponseError as exc:
            if not _resp.is_unknown_command_error(exc):
                raise
        return await self._request(payloads[1], idempotent=False)
