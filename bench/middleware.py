"""What ``BlinkStoreMiddleware`` adds to each request, in process, against the bare app.

    python -m bench.middleware [--requests 200000] [--runs 5]

The gunicorn plugin wraps every worker's app in the middleware, so its per-request work is paid
by every endpoint, cached or not. This suite calls one app directly, without a server or a
socket, the way uvicorn does for an HTTP request (a fresh scope whose ``state`` is a copy of the
lifespan state): a minimal ASGI app, then a Starlette endpoint, then a WSGI app, each bare and
wrapped, taking turns. It prints the median microseconds per request of each and the difference,
which is the middleware's own cost. ``bench.gunicorn`` puts that difference in proportion: a
whole request through gunicorn and uvicorn costs a few hundred microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from blinkstore_gunicorn.integrations.middleware import STATE_KEY, BlinkStoreMiddleware

LOCAL = {"key": "value"}


async def _bare_asgi(scope: Any, receive: Any, send: Any) -> None:
    await send(scope["state"][STATE_KEY])


def _starlette() -> Starlette:
    async def endpoint(request: Request) -> PlainTextResponse:
        request.state.cache  # noqa: B018 - the lookup handlers make
        return PlainTextResponse(LOCAL["key"])

    return Starlette(routes=[Route("/get", endpoint)])


def _wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [])
    return [environ["blinkstore.cache"] and b"x"]


def _asgi_rate(app: Any, requests: int, state: dict[str, Any]) -> float:
    """Microseconds per request of ``app``, called as uvicorn calls it."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    base = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/get",
        "raw_path": b"/get",
        "query_string": b"key=key",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def loop() -> float:
        started = time.perf_counter()
        for _ in range(requests):
            scope = dict(base)
            scope["state"] = state.copy()
            await app(scope, receive, send)
        return (time.perf_counter() - started) / requests * 1e6

    return asyncio.run(loop())


def _wsgi_rate(app: Any, requests: int) -> float:
    """Microseconds per request of the WSGI ``app`` with a fresh environ each time."""
    base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/get", "blinkstore.cache": object()}

    def start_response(status: str, headers: list[Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(requests):
        for _chunk in app(dict(base), start_response):
            pass
    return (time.perf_counter() - started) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print the middleware's cost per request for each kind of app."""
    parser = argparse.ArgumentParser(prog="python -m bench.middleware", description=__doc__)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    if args.requests < 1 or args.runs < 1:
        parser.error("--requests and --runs must be at least 1")
    # As at lifespan startup: the cache is already in the state uvicorn copies into each scope.
    state = {STATE_KEY: object()}
    starlette = _starlette()
    cases: dict[str, tuple[Callable[[], float], Callable[[], float]]] = {
        "minimal ASGI app": (
            lambda: _asgi_rate(_bare_asgi, args.requests, state),
            lambda: _asgi_rate(BlinkStoreMiddleware(_bare_asgi), args.requests, state),
        ),
        "Starlette endpoint": (
            lambda: _asgi_rate(starlette, args.requests // 10, state),
            lambda: _asgi_rate(BlinkStoreMiddleware(starlette), args.requests // 10, state),
        ),
        "WSGI app": (
            lambda: _wsgi_rate(_wsgi, args.requests),
            lambda: _wsgi_rate(BlinkStoreMiddleware(_wsgi, interface="wsgi"), args.requests),
        ),
    }
    print(f"us per request, median of {args.runs} runs (bare and wrapped take turns)")
    print(f"{'app':<20} {'bare':>8} {'wrapped':>8} {'middleware':>10}")
    for name, (bare, wrapped) in cases.items():
        bare_us: list[float] = []
        wrapped_us: list[float] = []
        for _ in range(args.runs):
            bare_us.append(bare())
            wrapped_us.append(wrapped())
        low, high = statistics.median(bare_us), statistics.median(wrapped_us)
        print(f"{name:<20} {low:>8.3f} {high:>8.3f} {high - low:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
