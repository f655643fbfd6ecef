"""Shared in-memory cache for multi-worker Python web services.

``Cache`` / ``AsyncCache`` are the clients (the URL comes from ``BLINKSTORE_URL``);
``BlinkStoreMiddleware`` hands one to every request (``request.state.cache`` /
``environ["blinkstore.cache"]``); ``gunicorn -c python:blinkstore_gunicorn.conf app:app``
starts the store with gunicorn.
"""

from blinkstore_gunicorn._version import __version__
from blinkstore_gunicorn.client import (
    AsyncCache,
    Cache,
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
    JSONSerializer,
    LockError,
    LockNotOwnedError,
    PickleSerializer,
    Serializer,
)
from blinkstore_gunicorn.integrations import BlinkStoreMiddleware

__all__ = [
    "AsyncCache",
    "BlinkStoreMiddleware",
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
    "PickleSerializer",
    "Serializer",
    "__version__",
]
