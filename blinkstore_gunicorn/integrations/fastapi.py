"""FastAPI dependency injection for the shared cache.

``BlinkStoreMiddleware`` (added in code, or by the gunicorn config) puts an
:class:`~blinkstore_gunicorn.client.AsyncCache` in ``request.state.cache``; these helpers hand it
to path operations, for HTTP routes and websockets alike::

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, cache: CacheDep) -> dict[str, object]: ...
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from blinkstore_gunicorn.client import AsyncCache
from blinkstore_gunicorn.integrations.middleware import STATE_KEY

__all__ = ["CacheDep", "get_cache"]


def get_cache(conn: HTTPConnection) -> AsyncCache:
    """Return the request's shared cache (FastAPI dependency).

    Raises ``RuntimeError`` saying how to fix it when the app is not wrapped in
    ``BlinkStoreMiddleware``.
    """
    cache = conn.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(cache, AsyncCache):
        raise RuntimeError(
            "no cache on this request: add `app.add_middleware(BlinkStoreMiddleware)` "
            "(from blinkstore_gunicorn) or run under `gunicorn -c python:blinkstore_gunicorn.conf`"
        )
    return cache


#: ``cache: CacheDep`` in a path operation's signature injects the shared AsyncCache.
CacheDep = Annotated[AsyncCache, Depends(get_cache)]
