"""Small ASGI and WSGI apps that the integration tests serve with real uvicorn/gunicorn processes.

Each counts requests in the shared cache and reports its pid, so a test can prove that several
worker processes used one store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from blinkstore_gunicorn.integrations.flask import BlinkStore, cache
from blinkstore_gunicorn.integrations.middleware import BlinkStoreMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


async def _hit(request: Request) -> JSONResponse:
    count = await request.state.cache.incr("hits")
    return JSONResponse({"hits": count, "pid": os.getpid()})


async def _read(request: Request) -> JSONResponse:
    return JSONResponse({"hits": await request.state.cache.get("hits", 0), "pid": os.getpid()})


#: Starlette app wrapped in the middleware in code (``uvicorn ...integration_apps:asgi_app``).
asgi_app = BlinkStoreMiddleware(
    Starlette(routes=[Route("/hit", _hit, methods=["POST"]), Route("/hits", _read)])
)


def _wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    cache = environ["blinkstore.cache"]
    if environ["REQUEST_METHOD"] == "POST":
        body = f"{cache.incr('hits')} {os.getpid()}"
    else:
        body = f"{cache.get('hits', 0)} {os.getpid()}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]


#: Plain WSGI app wrapped in the middleware (``gunicorn ...integration_apps:wsgi_app``).
wsgi_app = BlinkStoreMiddleware(_wsgi)


#: Flask app using the extension (``gunicorn ...integration_apps:flask_app``).
flask_app = Flask(__name__)
BlinkStore(flask_app)


@flask_app.post("/hit")
def _flask_hit() -> str:
    return str(cache.incr("hits"))


@flask_app.get("/hits")
def _flask_hits() -> str:
    return str(cache.get("hits", 0))
