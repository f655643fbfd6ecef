"""Flask extension: ``BlinkStore(app)`` or ``BlinkStore().init_app(app)``.

The app's client is ``current_app.extensions["blinkstore"]`` (a sync
:class:`~blinkstore_gunicorn.client.Cache`); :data:`cache` is a proxy to it for views::

    from blinkstore_gunicorn.integrations.flask import BlinkStore, cache

    app = Flask(__name__)
    BlinkStore(app)

    @app.get("/hits")
    def hits() -> str:
        return str(cache.incr("hits"))

Settings, first found wins: the constructor's arguments, then ``app.config``
(``BLINKSTORE_URL``, ``BLINKSTORE_NAMESPACE``, ``BLINKSTORE_ON_ERROR``), then the environment
variable ``BLINKSTORE_URL``, then ``memory://`` (per-process, with one warning).

:data:`cache` also works without the extension: it is then the cache the gunicorn config put
in the request's environ, or else a client the app gets on first use, with the settings above.
``@cache.cached(ttl=...)`` may decorate a module-level function, before any app exists: the
decorator finds the cache at each call, in the app context of that call.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from flask import Flask, current_app, has_request_context, request
from werkzeug.local import LocalProxy

from blinkstore_gunicorn.client import Cache
from blinkstore_gunicorn.client._core import TTL
from blinkstore_gunicorn.client._runtime_sync import check_decorated
from blinkstore_gunicorn.integrations._common import DEFAULT_ON_ERROR, OnError, resolve_url
from blinkstore_gunicorn.integrations.middleware import ENVIRON_KEY

__all__ = ["EXTENSION_KEY", "BlinkStore", "cache"]

#: Key of the client in ``app.extensions``.
EXTENSION_KEY = "blinkstore"

P = ParamSpec("P")
R = TypeVar("R")


class BlinkStore:
    """Flask extension that gives each app one shared-cache client."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        url: str | None = None,
        namespace: str | None = None,
        on_error: OnError | None = None,
        **client_options: Any,
    ) -> None:
        self._url = url
        self._namespace = namespace
        self._on_error = on_error
        self._client_options = client_options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Cache:
        """Create ``app``'s client, store it in ``app.extensions["blinkstore"]`` and return it."""
        client = app.extensions[EXTENSION_KEY] = self._create(app)
        return client

    def _create(self, app: Flask) -> Cache:
        url = self._url or app.config.get("BLINKSTORE_URL")
        namespace = self._namespace or app.config.get("BLINKSTORE_NAMESPACE")
        on_error: OnError = self._on_error or app.config.get(
            "BLINKSTORE_ON_ERROR", DEFAULT_ON_ERROR
        )
        return Cache(
            resolve_url(url), namespace=namespace, on_error=on_error, **self._client_options
        )

    @property
    def cache(self) -> Cache:
        """The client of the app handling the current request or app context."""
        return _current_cache()


def _current_cache() -> Cache:
    client = current_app.extensions.get(EXTENSION_KEY)
    if client is None:
        from_middleware = request.environ.get(ENVIRON_KEY) if has_request_context() else None
        if isinstance(from_middleware, Cache):
            return from_middleware
        # No extension, no middleware (`flask run`, a CLI command): the app gets its client
        # as if BlinkStore(app) had been called, keeping one client if two threads race.
        client = current_app.extensions.setdefault(EXTENSION_KEY, BlinkStore()._create(current_app))
    if not isinstance(client, Cache):
        raise TypeError(f'app.extensions["{EXTENSION_KEY}"] is not a Cache: {client!r}')
    return client


class _CacheProxy(LocalProxy):  # type: ignore[type-arg]
    """The type of :data:`cache`: every attribute is the current app's client's, except
    :meth:`cached`, which must work where there is no app yet (a module-level decorator)."""

    def cached(
        self, ttl: TTL = None, key: str | Callable[..., str] | None = None, **flight: Any
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """:meth:`Cache.cached <blinkstore_gunicorn.Cache.cached>` on the cache of each call's
        app context, so that ``@cache.cached(...)`` can decorate a function at import time."""

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            check_decorated(func)  # a wrong function fails at import, as with a real Cache
            # One decorated function per client (an app, or the gunicorn worker's environ
            # cache), made on its first call; weak, so a dropped app's client is not kept.
            per_client: weakref.WeakKeyDictionary[Cache, Callable[P, R]] = (
                weakref.WeakKeyDictionary()
            )

            def current() -> Callable[P, R]:
                client = _current_cache()
                decorated = per_client.get(client)
                if decorated is None:
                    decorated = per_client[client] = client.cached(ttl, key, **flight)(func)
                return decorated

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                return current()(*args, **kwargs)

            def invalidate(*args: Any, **kwargs: Any) -> bool:
                result: bool = current().invalidate(*args, **kwargs)  # type: ignore[attr-defined]
                return result

            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            return wrapper

        return decorate


#: The current app's :class:`~blinkstore_gunicorn.client.Cache`, usable inside views (and its
#: ``@cache.cached`` decorator anywhere, module level included).
cache: Cache = _CacheProxy(_current_cache)  # type: ignore[assignment]
