"""Storage for the ``limits`` package in the store, so that slowapi and Flask-Limiter count
across every worker of the host (docs/rate-limits.md).

Importing this module registers these storage URLs with ``limits`` (its custom-storage
registry):

=========================================  =================================================
``blinkstore://``                          the store ``BLINKSTORE_URL`` names (what the
                                           gunicorn plugin and ``blinkstore run`` set)
``blinkstore+unix:///path/to/store.sock``  a store on a Unix socket (``blinkstore:///path/
                                           to/store.sock`` too, the form ``memcached://``
                                           takes in ``limits``)
``blinkstore+tcp://host:port``             a store on TCP
``async+blinkstore://`` (and ``+unix``,    the same for ``limits.aio`` strategies
``+tcp``)
=========================================  =================================================

URL options (``?timeout=1``...) pass on to :class:`~blinkstore_gunicorn.Cache`. Counters live
under the namespace ``limits`` (``?namespace=`` changes it), so ``reset()`` clears only them.
The fixed-window strategy (slowapi's and Flask-Limiter's default) is supported; for a smooth
limit use :meth:`Cache.rate_limit <blinkstore_gunicorn.Cache.rate_limit>` directly.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from limits.aio.storage import Storage as AsyncStorage
from limits.storage import Storage

from blinkstore_gunicorn.client import AsyncCache, Cache, CacheError

__all__ = ["AsyncBlinkStoreStorage", "BlinkStoreStorage"]

_SCHEMES = ("blinkstore", "blinkstore+unix", "blinkstore+tcp")
_DEFAULT_NAMESPACE = "limits"


def cache_arguments(uri: str) -> dict[str, Any]:
    """The :class:`Cache` arguments for a ``[async+]blinkstore[+unix|+tcp]://`` URL."""
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.removeprefix("async+")
    if scheme not in _SCHEMES:
        raise ValueError(f"not a blinkstore storage URL: {uri!r}")
    query = urllib.parse.parse_qs(parsed.query)
    namespace = query.pop("namespace", [_DEFAULT_NAMESPACE])[-1]
    if scheme == "blinkstore" and parsed.netloc:
        # blinkstore://host:8765 would otherwise be read as BLINKSTORE_URL's store, or a
        # per-process memory:// one, and count per worker without a word.
        raise ValueError(
            f"{uri!r}: blinkstore:// takes no host; write blinkstore+tcp://HOST:PORT for a"
            " store on TCP, blinkstore+unix:///path/to/store.sock for a Unix socket, or"
            " blinkstore:// alone for the store BLINKSTORE_URL names"
        )
    if scheme == "blinkstore" and not parsed.path:
        if query:
            raise ValueError(f"blinkstore:// takes its options from BLINKSTORE_URL, not {uri!r}")
        return {"url": None, "namespace": namespace}
    # A path after blinkstore:// is the Unix socket, as in limits's memcached:///path/to.sock.
    transport = "unix" if scheme == "blinkstore" else scheme.split("+")[1]
    url = f"{transport}://{parsed.netloc}{parsed.path}"
    options = urllib.parse.urlencode(query, doseq=True)
    if options:
        url += "?" + options
    return {"url": url, "namespace": namespace}


def _expiry(ttl: float | None) -> float:
    # limits wants the moment the window ends; a missing counter's window ends now.
    return time.time() + (ttl or 0.0)


class _OnCache:
    """What both storages share: the cache made from the URL, and what it raises."""

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)  # type: ignore[call-arg]
        self.cache = self._cache_class(**cache_arguments(uri), **options)

    _cache_class: Any

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        """What the cache raises (``limits`` wraps it when ``wrap_exceptions`` is set)."""
        return CacheError


class BlinkStoreStorage(_OnCache, Storage):
    """``limits`` storage over a blocking :class:`~blinkstore_gunicorn.Cache`."""

    STORAGE_SCHEME = list(_SCHEMES)
    _cache_class = Cache
    cache: Cache

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count ``amount`` in the window of ``expiry`` seconds opened by the first hit."""
        return self.cache.incr_window(key, expiry, amount)

    def get(self, key: str) -> int:
        """The window's count (0 when no window is open)."""
        return int(self.cache.get(key, 0))

    def get_expiry(self, key: str) -> float:
        """When the window ends (seconds since the epoch)."""
        return _expiry(self.cache.ttl(key))

    def check(self) -> bool:
        """Whether the store answers."""
        try:
            return self.cache.ping()
        except CacheError:
            return False

    def reset(self) -> int | None:
        """Remove every counter of the namespace; how many there were."""
        return self.cache.delete_many(list(self.cache.keys("*")))

    def clear(self, key: str) -> None:
        """Forget one counter."""
        self.cache.delete(key)


class AsyncBlinkStoreStorage(_OnCache, AsyncStorage):
    """``limits.aio`` storage over an :class:`~blinkstore_gunicorn.AsyncCache`."""

    STORAGE_SCHEME = [f"async+{scheme}" for scheme in _SCHEMES]
    _cache_class = AsyncCache
    cache: AsyncCache

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count ``amount`` in the window of ``expiry`` seconds opened by the first hit."""
        return await self.cache.incr_window(key, expiry, amount)

    async def get(self, key: str) -> int:
        """The window's count (0 when no window is open)."""
        return int(await self.cache.get(key, 0))

    async def get_expiry(self, key: str) -> float:
        """When the window ends (seconds since the epoch)."""
        return _expiry(await self.cache.ttl(key))

    async def check(self) -> bool:
        """Whether the store answers."""
        try:
            return await self.cache.ping()
        except CacheError:
            return False

    async def reset(self) -> int | None:
        """Remove every counter of the namespace; how many there were."""
        return await self.cache.delete_many([key async for key in self.cache.keys("*")])

    async def clear(self, key: str) -> None:
        """Forget one counter."""
        await self.cache.delete(key)
