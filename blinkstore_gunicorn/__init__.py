"""Shared in-memory cache for multi-worker Python web services.

``Cache`` / ``AsyncCache`` are the clients (the URL comes from ``BLINKSTORE_URL``);
``BlinkStoreMiddleware`` hands one to every request (``request.state.cache`` /
``environ["blinkstore.cache"]``); ``gunicorn -c python:blinkstore_gunicorn.conf app:app``
starts the store with gunicorn.
"""

import sys
from types import ModuleType

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
from blinkstore_gunicorn.config import refuse_as_gunicorn_config
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

#: gunicorn's hook when the package is mistaken for ``blinkstore_gunicorn.conf``.
on_starting = refuse_as_gunicorn_config(__name__)

# ``gunicorn -c python:blinkstore_gunicorn`` takes every global named like one of its settings,
# and two subpackages are (``protocol``, ``config``): gunicorn would stop at them ("Not a
# string") before the hook above names the right module. So they are no globals here, and
# ``__getattr__`` still gives them (and any other submodule imported) as attributes.
del globals()["config"], globals()["protocol"]


def __getattr__(name: str) -> ModuleType:
    """A submodule imported already (``blinkstore_gunicorn.protocol``...), as an attribute."""
    try:
        return sys.modules[f"{__name__}.{name}"]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
