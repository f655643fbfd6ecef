"""A Flask app limited by Flask-Limiter, its counters in the store (``blinkstore://``).

``GET /limited`` allows ``LIMITED_PER_HOUR`` requests per client per hour across all workers;
every reply (429 included) names the worker that served it in ``x-pid``.
"""

from __future__ import annotations

import os

from flask import Flask, Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

import blinkstore_gunicorn.contrib.limits  # noqa: F401  (registers blinkstore:// with limits)

LIMIT = os.environ.get("LIMITED_PER_HOUR", "10")

app = Flask(__name__)
limiter = Limiter(get_remote_address, app=app, storage_uri="blinkstore://")


@app.after_request
def name_the_worker(response: Response) -> Response:
    """Every reply, 429 included, says which worker served it."""
    response.headers["x-pid"] = str(os.getpid())
    return response


@app.get("/env")
def ready() -> dict[str, int]:
    """Readiness (not limited)."""
    return {"pid": os.getpid()}


@app.get("/limited")
@limiter.limit(f"{LIMIT} per hour")
def limited() -> dict[str, int]:
    """The limited endpoint."""
    return {"pid": os.getpid()}
