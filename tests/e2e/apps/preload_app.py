"""A WSGI app whose clients are created when the module is imported, as ``--preload`` does.

``AsyncCache()`` and ``Cache()`` at module level read ``BLINKSTORE_URL`` at once: under
``--preload`` that happens in the master, before any worker exists. ``/count`` increments one
counter through the module-level ``Cache``; every reply carries the worker's pid and the URL the
clients were created with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from blinkstore_gunicorn import AsyncCache, Cache

ASYNC_CACHE = AsyncCache()
CACHE = Cache()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``/count`` increments the shared counter; anything else reports where the cache is."""
    body: dict[str, Any] = {"pid": os.getpid(), "url": CACHE.url.display}
    body["async_url"] = ASYNC_CACHE.url.display
    if environ.get("PATH_INFO") == "/count":
        body["count"] = CACHE.incr("preload-hits")
    data = json.dumps(body).encode()
    start_response(
        "200 OK", [("content-type", "application/json"), ("content-length", str(len(data)))]
    )
    return [data]
