"""Cache clients: :class:`Cache` (blocking) and :class:`AsyncCache` (asyncio), one API over the
Blink store, Redis/Valkey and in-process memory. See ``docs/client.md``."""

from blinkstore_gunicorn.client._core import Message
from blinkstore_gunicorn.client.aio import AsyncCache
from blinkstore_gunicorn.client.errors import (
    CacheConfigError,
    CacheConnectionError,
    CacheError,
    CacheResponseError,
    CacheSerializationError,
    CacheSignatureError,
    CacheStampedeTimeout,
    CacheTimeoutError,
    CacheUpstreamError,
    CacheValueTooLarge,
    LockError,
    LockNotOwnedError,
)
from blinkstore_gunicorn.client.ratelimit import RateLimit
from blinkstore_gunicorn.client.serializers import JSONSerializer, PickleSerializer, Serializer
from blinkstore_gunicorn.client.sync import Cache

__all__ = [
    "AsyncCache",
    "Cache",
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
    "JSONSerializer",
    "LockError",
    "LockNotOwnedError",
    "Message",
    "PickleSerializer",
    "RateLimit",
    "Serializer",
]
