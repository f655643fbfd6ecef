"""BlinkStoreMiddleware as ASGI middleware: Starlette TestClient, raw ASGI apps, real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from blinkstore_gunicorn.client import AsyncCache
from blinkstore_gunicorn.integrations import BlinkStoreMiddleware, detect_interface
from harness import processes

from .integration_support import (
    dead_unix_url,
    free_port,
    process_output,
    running_process,
    wait_http,
)


async def _counter(request: Request) -> JSONResponse:
    cache = request.state.cache
    assert isinstance(cache, AsyncCache)
    return JSONResponse({"n": await cache.incr("n")})


async def _ws(websocket: WebSocket) -> None:
    await websocket.accept()
    cache = websocket.state.cache
    await cache.set("ws", await websocket.receive_text())
    await websocket.send_text(await cache.get("ws"))
    await websocket.close()


def _starlette(**kwargs: Any) -> Starlette:
    return Starlette(routes=[Route("/n", _counter), WebSocketRoute("/ws", _ws)], **kwargs)


@pytest.fixture
def memory_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINKSTORE_URL", "memory://")


def test_detects_asgi_and_wsgi_apps() -> None:
    async def asgi_fn(scope: Any, receive: Any, send: Any) -> None: ...

    def wsgi_fn(environ: Any, start_response: Any) -> list[bytes]:
        return []

    assert detect_interface(asgi_fn) == "asgi"
    assert detect_interface(_starlette()) == "asgi"
    assert detect_interface(wsgi_fn) == "wsgi"
    assert BlinkStoreMiddleware(asgi_fn).interface == "asgi"
    assert BlinkStoreMiddleware(wsgi_fn).interface == "wsgi"
    # An explicit interface wins over detection (e.g. a sync callable returning a coroutine).
    assert BlinkStoreMiddleware(wsgi_fn, interface="asgi").interface == "asgi"
    assert isinstance(BlinkStoreMiddleware(asgi_fn), BlinkStoreMiddleware)
    with pytest.raises(ValueError, match="interface"):
        BlinkStoreMiddleware(asgi_fn, interface="rsgi")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="callable"):
        BlinkStoreMiddleware(42)


def test_wrapped_app_looks_like_asgi3_to_servers() -> None:
    from uvicorn.config import Config

    config = Config(BlinkStoreMiddleware(_starlette()))
    config.load()
    assert config.interface == "asgi3"


def test_options_reach_the_client(memory_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINKSTORE_SIGNING_KEY", "pickles are signed with it")
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["state"]["cache"])

    middleware = BlinkStoreMiddleware(
        app, namespace="api", client_options={"serializer": "pickle", "timeout": 0.5}
    )
    asyncio.run(middleware({"type": "http"}, None, None))
    cache = seen[0]
    assert (cache.namespace, cache.on_error, cache.serializer.name) == ("api", "miss", "pickle")


def test_request_state_cache_shared_across_requests(memory_env: None) -> None:
    app = BlinkStoreMiddleware(_starlette())
    with TestClient(app) as client:
        assert [client.get("/n").json()["n"] for _ in range(3)] == [1, 2, 3]


def test_add_middleware_and_websocket(memory_env: None) -> None:
    app = _starlette()
    app.add_middleware(BlinkStoreMiddleware)
    with TestClient(app) as client:
        assert client.get("/n").json() == {"n": 1}
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hello")
            assert ws.receive_text() == "hello"


def test_lifespan_opens_before_app_startup_and_closes_after_shutdown(memory_env: None) -> None:
    seen: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The app's own startup code can already use the cache through the lifespan state.
        seen["startup"] = await middleware.cache.set("warm", "yes")
        yield
        seen["shutdown_open"] = middleware._cache is not None

    async def warm(request: Request) -> PlainTextResponse:
        assert request.state.cache is seen["cache"]
        return PlainTextResponse(await request.state.cache.get("warm"))

    inner = Starlette(routes=[Route("/warm", warm)], lifespan=lifespan)
    middleware = BlinkStoreMiddleware(inner)
    with TestClient(middleware) as client:
        seen["cache"] = middleware._cache
        assert seen["cache"] is not None
        assert client.get("/warm").text == "yes"
    assert seen["shutdown_open"] is True  # the app's shutdown ran before the client closed
    assert middleware._cache is None


def test_without_lifespan_the_cache_is_created_on_first_use(memory_env: None) -> None:
    # No `with`: TestClient sends no lifespan events at all.
    client = TestClient(BlinkStoreMiddleware(_starlette()))
    assert client.get("/n").status_code == 200


def test_raw_app_that_rejects_lifespan(memory_env: None) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        value = await scope["state"]["cache"].incr("raw")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(value).encode()})

    async def run() -> list[bytes]:
        middleware = BlinkStoreMiddleware(app)
        bodies = []
        for _ in range(2):
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: Any, sent: list[dict[str, Any]] = sent) -> None:
                sent.append(message)

            # No "state" key at all: a server without lifespan-state support.
            await middleware({"type": "http", "path": "/"}, receive, send)
            bodies.append(sent[-1]["body"])
        with pytest.raises(RuntimeError, match="no lifespan"):
            await middleware({"type": "lifespan", "state": {}}, receive, send)
        return bodies

    assert asyncio.run(run()) == [b"1", b"2"]


def test_double_wrapping_uses_the_outer_client(memory_env: None) -> None:
    inner = BlinkStoreMiddleware(_starlette())
    outer = BlinkStoreMiddleware(inner)
    with TestClient(outer) as client:
        assert client.get("/n").json() == {"n": 1}
        assert outer._cache is not None
        assert inner._cache is None


def test_no_url_falls_back_to_memory_with_one_warning(
    no_store_configured: None, caplog: pytest.LogCaptureFixture
) -> None:
    counts = []
    for _ in range(2):
        with TestClient(BlinkStoreMiddleware(_starlette())) as client:
            counts.append(client.get("/n").json()["n"])
    # Both middlewares used the one per-process fallback store.
    assert counts[1] == counts[0] + 1
    warnings = [r for r in caplog.records if "per-process" in r.getMessage()]
    assert len(warnings) == 1


def test_store_outage_is_a_miss_not_a_500(tmp_path: Any) -> None:
    async def page(request: Request) -> JSONResponse:
        cache = request.state.cache
        await cache.set("k", "v")
        return JSONResponse({"k": await cache.get("k", "missing")})

    app = BlinkStoreMiddleware(Starlette(routes=[Route("/", page)]), url=dead_unix_url(tmp_path))
    with TestClient(app) as client:
        response = client.get("/")
        assert response.status_code == 200
        assert response.json() == {"k": "missing"}


def test_real_store_killed_then_back(caplog: pytest.LogCaptureFixture) -> None:
    async def page(request: Request) -> JSONResponse:
        cache = request.state.cache
        if request.method == "POST":
            await cache.set("k", "v")
        return JSONResponse({"k": await cache.get("k", "missing")})

    app = Starlette(routes=[Route("/", page, methods=["GET", "POST"])])
    with processes.short_tempdir() as directory:
        store = processes.start_blinkstore(directory=directory)
        try:
            middleware = BlinkStoreMiddleware(app, url=store.url)
            with TestClient(middleware) as client:
                assert client.post("/").json() == {"k": "v"}
                store.stop(signal.SIGKILL)
                caplog.set_level(logging.WARNING, logger="blinkstore_gunicorn")
                for _ in range(5):  # misses, never errors, and one log line for the outage
                    assert client.post("/").json() == {"k": "missing"}
                unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
                assert len(unreachable) == 1
                store = processes.start_blinkstore(directory=directory)
                deadline = time.monotonic() + 5
                while client.post("/").json() != {"k": "v"}:
                    assert time.monotonic() < deadline, "the client did not reconnect"
                    time.sleep(0.05)
        finally:
            store.stop(signal.SIGKILL)


def test_on_error_raise_is_available(tmp_path: Any) -> None:
    async def page(request: Request) -> JSONResponse:
        return JSONResponse({"k": await request.state.cache.get("k")})

    app = BlinkStoreMiddleware(
        Starlette(routes=[Route("/", page)]), url=dead_unix_url(tmp_path), on_error="raise"
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 500


@pytest.mark.slow
def test_real_uvicorn_workers_share_the_store(store_url: str) -> None:
    port = free_port()
    argv = [
        "-m",
        "uvicorn",
        "tests.integration.integration_apps:asgi_app",
        "--port",
        str(port),
        "--workers",
        "2",
        "--lifespan",
        "on",
    ]
    with running_process(argv, env={"BLINKSTORE_URL": store_url}) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/hits", proc=proc)
        # Fresh connections, so both workers serve; one shared counter means every reply is
        # one more than the last, whichever worker served it.
        counts = [httpx.post(base + "/hit").json()["hits"] for _ in range(30)]
        assert counts == list(range(1, 31))
        assert httpx.get(base + "/hits").json()["hits"] == 30
        # A graceful stop runs each worker's lifespan shutdown (closing its client) cleanly.
        proc.send_signal(signal.SIGTERM)
        processes.wait_exit(proc, 20, lambda: process_output(proc))
        output = process_output(proc)
        assert proc.returncode == 0, output
        assert output.count("Application shutdown complete") == 2, output
