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
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, has_request_context, request
from werkzeug.local import LocalProxy

from blinkstore_gunicorn.client import Cache
from blinkstore_gunicorn.integrations._common import DEFAULT_ON_ERROR, OnError, resolve_url
from blinkstore_gunicorn.integrations.middleware import ENVIRON_KEY

__all__ = ["EXTENSION_KEY", "BlinkStore", "cache"]

#: Key of the client in ``app.extensions``.
EXTENSION_KEY = "blinkstore"


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


#: The current app's :class:`~blinkstore_gunicorn.client.Cache`, usable inside views.
cache: Cache = LocalProxy(_current_cache)  # type: ignore[assignment]
