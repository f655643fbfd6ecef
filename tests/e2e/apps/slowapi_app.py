"""A FastAPI app limited by slowapi, its counters in the store (``blinkstore://``).

``GET /limited`` allows ``LIMITED_PER_HOUR`` requests per client per hour across all workers;
every reply (429 included) names the worker that served it in ``x-pid``.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

import blinkstore_gunicorn.contrib.limits  # noqa: F401  (registers blinkstore:// with limits)

LIMIT = os.environ.get("LIMITED_PER_HOUR", "10")

limiter = Limiter(key_func=get_remote_address, storage_uri="blinkstore://")
app = FastAPI()
app.state.limiter = limiter


@app.exception_handler(RateLimitExceeded)
async def refused(request: Request, exc: RateLimitExceeded) -> JSONResponse:
    """429, with the worker's pid."""
    return JSONResponse({"limited": True}, status_code=429, headers={"x-pid": str(os.getpid())})


@app.get("/env")
async def ready() -> dict[str, int]:
    """Readiness (not limited)."""
    return {"pid": os.getpid()}


@app.get("/limited")
@limiter.limit(f"{LIMIT}/hour")
async def limited(request: Request, response: Response) -> dict[str, int]:
    """The limited endpoint."""
    response.headers["x-pid"] = str(os.getpid())
    return {"pid": os.getpid()}
