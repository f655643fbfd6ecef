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
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from werkzeug.local import LocalProxy

from blinkstore_gunicorn.client import Cache
from blinkstore_gunicorn.integrations._common import OnError, resolve_url

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
        url = self._url or app.config.get("BLINKSTORE_URL")
        namespace = self._namespace or app.config.get("BLINKSTORE_NAMESPACE")
        on_error: OnError = self._on_error or app.config.get("BLINKSTORE_ON_ERROR", "miss")
        client = Cache(
            resolve_url(url), namespace=namespace, on_error=on_error, **self._client_options
        )
        app.extensions[EXTENSION_KEY] = client
        return client

    @property
    def cache(self) -> Cache:
        """The client of the app handling the current request or app context."""
        return _current_cache()


def _current_cache() -> Cache:
    try:
        client = current_app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "BlinkStore is not initialised on this app: call BlinkStore(app) or init_app(app)"
        ) from None
    if not isinstance(client, Cache):
        raise TypeError(f'app.extensions["{EXTENSION_KEY}"] is not a Cache: {client!r}')
    return client


#: The current app's :class:`~blinkstore_gunicorn.client.Cache`, usable inside views.
cache: Cache = LocalProxy(_current_cache)  # type: ignore[assignment]
