"""Apps that read the cache where the middleware puts it, served with nothing that puts it
there (``uvicorn tests.integration.unwrapped_apps:starlette_app``, plain gunicorn): the errors
a user then sees, and the fix docs/frameworks/wsgi-asgi.md gives for them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from blinkstore_gunicorn import BlinkStoreMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


async def _hit(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(await request.state.cache.incr("hits")))


async def _ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ready")


_ROUTES = [Route("/hit", _hit), Route("/ready", _ready)]

#: ``request.state.cache`` with no middleware.
starlette_app = Starlette(routes=_ROUTES)

#: The same handlers with the fix the docs give: the middleware added in code.
starlette_fixed = Starlette(routes=_ROUTES)
starlette_fixed.add_middleware(BlinkStoreMiddleware)


def wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``environ["blinkstore.cache"]`` with no middleware (``/env`` is the readiness path)."""
    body = (
        b"ready"
        if environ["PATH_INFO"] == "/env"
        else b"%d" % environ["blinkstore.cache"].incr("hits")
    )
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
