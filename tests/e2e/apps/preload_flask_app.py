"""A Flask app with ``BlinkStore(app)`` at import time, the way ``--preload`` loads it."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, current_app

from blinkstore_gunicorn.integrations.flask import BlinkStore, cache

app = Flask(__name__)
BlinkStore(app)


@app.get("/")
def where() -> dict[str, Any]:
    """The worker's pid and the URL the extension's client was created with."""
    url = current_app.extensions["blinkstore"].url.display
    return {"pid": os.getpid(), "url": url, "async_url": url}


@app.get("/count")
def count() -> dict[str, Any]:
    """Increment the shared counter."""
    return {"pid": os.getpid(), "count": cache.incr("preload-hits")}
