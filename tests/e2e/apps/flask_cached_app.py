"""A Flask app whose function is decorated with ``@cache.cached`` at import time, as the Flask
docs show it: no ``BlinkStore(app)``, no app context when the module is imported.

``GET /report/<year>`` returns the cached report and how many times it was computed host-wide
(counted in the store); ``DELETE /report/<year>`` invalidates it.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from blinkstore_gunicorn.integrations.flask import cache

app = Flask(__name__)


@cache.cached(ttl=600)
def load_report(year: int) -> dict[str, int]:
    """The expensive work; every computation is counted in the store."""
    return {"year": year, "computation": cache.incr(f"computations:{year}")}


@app.get("/env")
def ready() -> dict[str, Any]:
    """Readiness, and which worker answered."""
    return {"pid": os.getpid(), "url": os.environ.get("BLINKSTORE_URL")}


@app.get("/report/<int:year>")
def report(year: int) -> dict[str, Any]:
    """The cached report, and the worker that served it."""
    return {"pid": os.getpid(), **load_report(year)}


@app.delete("/report/<int:year>")
def forget(year: int) -> dict[str, Any]:
    """Drop one year's cached report."""
    return {"pid": os.getpid(), "dropped": load_report.invalidate(year)}  # type: ignore[attr-defined]
