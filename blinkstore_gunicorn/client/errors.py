"""The exceptions every client method raises: one family under :class:`CacheError`.

Each also derives from the closest built-in exception, so ``except ConnectionError`` or
``except TimeoutError`` in existing code keeps working.
"""

from __future__ import annotations

__all__ = [
    "UPSTREAM_DOWN",
    "CacheConfigError",
    "CacheConnectionError",
    "CacheError",
    "CacheResponseError",
    "CacheSerializationError",
    "CacheSignatureError",
    "CacheStampedeTimeout",
    "CacheTimeoutError",
    "CacheUpstreamError",
    "CacheValueTooLarge",
    "LockError",
    "LockNotOwnedError",
    "error_reply",
]


class CacheError(Exception):
    """Base class of every error raised by :class:`Cache` and :class:`AsyncCache`."""


class CacheConfigError(CacheError, ValueError):
    """The cache is configured wrongly (missing or malformed URL, unknown option...)."""


class CacheConnectionError(CacheError, ConnectionError):
    """The store is unreachable: refused, reset, closed, or authentication failed.

    With ``on_error="miss"`` these errors (timeouts included) turn into cache misses.
    """


class CacheTimeoutError(CacheConnectionError, TimeoutError):
    """Connecting or waiting for a reply took longer than the configured timeout."""


class CacheResponseError(CacheError):
    """The store answered with an error (e.g. ``incr`` on a value that is not an integer)."""


class CacheValueTooLarge(CacheResponseError, ValueError):
    """The store refused the request for its size: a value over its ``--max-value-size``,
    or a request over ``--max-request-size`` / ``--client-buffer-limit``. The message names
    the limit. The request is never sent again, and the store is not down."""


#: How the store's refusals for size begin (``server/dispatch.py``).
_TOO_LARGE = ("ERR value too large", "ERR request too large")


class CacheUpstreamError(CacheResponseError, CacheConnectionError):
    """The store is a near cache and cannot reach its upstream Redis/Valkey (an outage:
    ``on_error="miss"`` reads miss)."""


#: The error code a near-cache store answers with while its upstream is unreachable.
UPSTREAM_DOWN = "UPSTREAMDOWN "


def error_reply(message: str) -> CacheResponseError:
    """The exception for the store's error reply ``message``."""
    if message.startswith(_TOO_LARGE):
        return CacheValueTooLarge(message)
    if message.startswith(UPSTREAM_DOWN):
        return CacheUpstreamError(message)
    return CacheResponseError(message)


class CacheSerializationError(CacheError, ValueError):
    """A stored value cannot be decoded by this client's serializer."""


class CacheSignatureError(CacheSerializationError):
    """A pickled value is not signed with this client's signing key, so it was not unpickled:
    another writer stored it, or a version before pickles were signed. The Django backend
    reads it as a miss."""


class CacheStampedeTimeout(CacheError, TimeoutError):
    """``get_or_set`` waited ``wait_timeout`` for another caller to compute the value.

    Not a connection problem, so ``on_error="miss"`` does not hide it; pass
    ``on_wait_timeout="compute"`` to compute the value yourself instead.
    """


class LockError(CacheError):
    """A lock operation cannot be done: releasing or extending a lock this object does not
    hold, extending a lock without timeout, or ``with cache.lock(...)`` not acquiring it
    within ``blocking_timeout``. The name is redis-py's, so is its meaning."""


class LockNotOwnedError(LockError):
    """The lock was acquired by this object but is no longer held by it: its timeout passed
    or the connection holding it was lost (the store then releases it at once), so another
    holder may have had it meanwhile."""
