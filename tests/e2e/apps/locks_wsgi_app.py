"""The lock app's counter for sync workers (gthread): the blocking ``Cache.lock``.

``/bump?name=N&key=K`` increments the integer at ``K`` non-atomically (read, yield the GIL,
write) under the lock ``N``; ``/state?key=K`` reads it. Every reply carries the worker's pid.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Route /bump, /state and /env."""
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    cache = environ["blinkstore.cache"]
    path = environ.get("PATH_INFO", "/")
    body: dict[str, Any] = {"pid": os.getpid()}
    if path == "/bump":
        with cache.lock(query["name"], timeout=30):
            value = cache.get(query["key"], 0)
            time.sleep(0)  # let another thread of this worker run in between
            cache.set(query["key"], value + 1)
    elif path == "/state":
        body["count"] = cache.get(query["key"])
    data = json.dumps(body).encode()
    start_response(
        "200 OK", [("content-type", "application/json"), ("content-length", str(len(data)))]
    )
    return [data]
