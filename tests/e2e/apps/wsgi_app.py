"""A plain WSGI app for the gunicorn end-to-end tests: reads and writes the shared cache.

``/set?key=K&value=V`` and ``/get?key=K`` use ``environ["blinkstore.cache"]`` (put there by the
plugin's app wrapping); ``/local/set`` and ``/local/get`` use a per-process dict (the baseline of
``bench/gunicorn.py``); ``/sleep?seconds=S`` blocks the worker. Every reply carries the
worker's pid.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

LOCAL: dict[str, Any] = {}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Route the few test endpoints."""
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    key = query.get("key", "key")
    cache = environ.get("blinkstore.cache")
    path = environ.get("PATH_INFO", "/")
    body: dict[str, Any] = {"pid": os.getpid(), "wrapped": cache is not None}
    if path == "/set" and cache is not None:
        cache.set(key, query.get("value", ""))
    elif path == "/get" and cache is not None:
        body["value"] = cache.get(key)
    elif path == "/local/set":
        LOCAL[key] = query.get("value", "")
    elif path == "/local/get":
        body["value"] = LOCAL.get(key)
    elif path == "/sleep":
        time.sleep(float(query.get("seconds", "1")))
    elif path == "/env":
        body["url"] = os.environ.get("BLINKSTORE_URL")
    data = json.dumps(body).encode()
    start_response(
        "200 OK",
        [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            ("x-pid", str(os.getpid())),
        ],
    )
    return [data]
