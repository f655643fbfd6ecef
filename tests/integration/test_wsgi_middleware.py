"""BlinkStoreMiddleware as WSGI middleware: a plain WSGI app, threads, gunicorn sync workers."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest

from blinkstore_gunicorn.client import Cache
from blinkstore_gunicorn.integrations import ENVIRON_KEY, BlinkStoreMiddleware

from .integration_support import dead_unix_url, gunicorn_workers


def _app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    cache = environ[ENVIRON_KEY]
    assert isinstance(cache, Cache)
    body = str(cache.incr("n")).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def call(app: Any, environ: dict[str, Any] | None = None) -> tuple[str, bytes]:
    """Run one WSGI request; return (status, body)."""
    env: dict[str, Any] = dict(environ or {})
    setup_testing_defaults(env)
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return lambda data: None

    body = b"".join(app(env, start_response))
    return status[0], body


@pytest.fixture
def memory_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINKSTORE_URL", "memory://")


def test_environ_cache_is_one_client_per_process(memory_env: None) -> None:
    app = BlinkStoreMiddleware(_app)
    assert app.interface == "wsgi"
    assert [call(app)[1] for _ in range(3)] == [b"1", b"2", b"3"]
    assert app.cache is app.cache


def test_options_reach_the_client_and_close_releases_it(
    memory_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLINKSTORE_SIGNING_KEY", "pickles are signed with it")
    app = BlinkStoreMiddleware(
        _app, namespace="shop", on_error="raise", client_options={"serializer": "pickle"}
    )
    cache = app.cache
    assert (cache.namespace, cache.on_error, cache.serializer.name) == ("shop", "raise", "pickle")
    app.close()  # what the gunicorn plugin calls when a worker exits
    assert app.cache is not cache  # a new client on next use


def test_threads_share_the_client(memory_env: None) -> None:
    app = BlinkStoreMiddleware(_app)
    start = threading.Barrier(8)
    caches: set[int] = set()

    def worker() -> None:
        start.wait()
        for _ in range(25):
            call(app)
        caches.add(id(app.cache))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(caches) == 1
    assert call(app)[1] == b"201"


def test_existing_environ_cache_is_kept(memory_env: None) -> None:
    outer_cache = Cache("memory://")
    app = BlinkStoreMiddleware(_app)
    call(app, {ENVIRON_KEY: outer_cache})
    assert outer_cache.get("n") == 1
    assert app._cache is None  # the middleware never built its own client


def test_wraps_a_flask_app_wsgi_callable(memory_env: None) -> None:
    from flask import Flask, request

    flask_app = Flask(__name__)

    @flask_app.get("/")
    def index() -> str:
        return str(request.environ[ENVIRON_KEY].incr("flask"))

    flask_app.wsgi_app = BlinkStoreMiddleware(flask_app.wsgi_app)  # type: ignore[method-assign]
    client = flask_app.test_client()
    assert client.get("/").text == "1"
    assert client.get("/").text == "2"


def test_no_url_falls_back_to_memory_with_one_warning(
    no_store_configured: None, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = (int(call(BlinkStoreMiddleware(_app))[1]) for _ in range(2))
    assert second == first + 1  # one per-process fallback store behind both middlewares
    assert len([r for r in caplog.records if "per-process" in r.getMessage()]) == 1


def test_store_outage_is_a_miss_not_an_error(tmp_path: Path) -> None:
    def page(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        cache = environ[ENVIRON_KEY]
        cache.set("k", "v")
        start_response("200 OK", [])
        return [str(cache.get("k", "missing")).encode()]

    assert call(BlinkStoreMiddleware(page, url=dead_unix_url(tmp_path))) == ("200 OK", b"missing")


@pytest.mark.slow
def test_gunicorn_sync_workers_share_the_store(store_url: str) -> None:
    app = "tests.integration.integration_apps:wsgi_app"
    with gunicorn_workers(app, "/", {"BLINKSTORE_URL": store_url}) as (base, _):
        counts = [int(httpx.post(base + "/").text.split()[0]) for _ in range(30)]
        # One shared counter: every reply is one more than the last, whichever worker served it.
        assert counts == list(range(1, 31))
