"""The Flask extension: BlinkStore(app), init_app, the cache proxy, real gunicorn sync workers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from flask import Flask, current_app

from blinkstore_gunicorn import BlinkStoreMiddleware
from blinkstore_gunicorn.client import Cache
from blinkstore_gunicorn.integrations.flask import EXTENSION_KEY, BlinkStore, cache

from .integration_support import dead_unix_url, gunicorn_workers


def make_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(config)

    @app.post("/hit")
    def hit() -> str:
        return str(cache.incr("hits"))

    @app.get("/ext")
    def ext() -> str:
        client = current_app.extensions[EXTENSION_KEY]
        client.set("from-ext", "yes")
        return str(cache.get("from-ext"))

    return app


def test_extension_in_constructor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINKSTORE_URL", "memory://")
    app = make_app()
    ext = BlinkStore(app)
    client = app.test_client()
    assert [client.post("/hit").text for _ in range(3)] == ["1", "2", "3"]
    assert client.get("/ext").text == "yes"
    with app.app_context():
        assert isinstance(ext.cache, Cache)
        assert ext.cache is app.extensions["blinkstore"]


def test_init_app_factory_gives_each_app_its_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINKSTORE_URL", "memory://")
    ext = BlinkStore(namespace="factory")
    first, second = make_app(), make_app()
    assert isinstance(ext.init_app(first), Cache)
    ext.init_app(second)
    assert first.extensions[EXTENSION_KEY] is not second.extensions[EXTENSION_KEY]
    with first.app_context():
        assert cache._get_current_object() is first.extensions[EXTENSION_KEY]  # type: ignore[attr-defined]


def test_app_config_url_and_on_error(tmp_path: Path) -> None:
    # BLINKSTORE_URL in app.config beats the environment; the default on_error is "miss".
    app = make_app(BLINKSTORE_URL=dead_unix_url(tmp_path))
    BlinkStore(app)
    client = app.test_client()
    response = client.get("/ext")
    assert response.status_code == 200
    assert response.text == "None"

    strict = make_app(BLINKSTORE_URL=dead_unix_url(tmp_path), BLINKSTORE_ON_ERROR="raise")
    BlinkStore(strict)
    assert strict.test_client().get("/ext").status_code == 500


def test_proxy_outside_an_app_context_says_so() -> None:
    with pytest.raises(RuntimeError, match="application context"):
        cache.get("x")


def test_proxy_without_the_extension_follows_the_one_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    # `flask run` of an app that only imports `cache`: no BlinkStore(app), no middleware.
    monkeypatch.setenv("BLINKSTORE_URL", "memory://")
    app = make_app(BLINKSTORE_NAMESPACE="plain")
    client = app.test_client()
    assert [client.post("/hit").text for _ in range(2)] == ["1", "2"]
    created = app.extensions[EXTENSION_KEY]
    assert isinstance(created, Cache)
    assert created.namespace == "plain"  # created with the app's settings, once
    with app.app_context():
        assert cache._get_current_object() is created  # type: ignore[attr-defined]


def test_proxy_without_the_extension_uses_the_middlewares_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under the gunicorn config the plugin's middleware puts a cache in every environ.
    monkeypatch.setenv("BLINKSTORE_URL", "memory://")
    app = make_app()
    middleware = BlinkStoreMiddleware(app.wsgi_app)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    assert app.test_client().post("/hit").text == "1"
    assert EXTENSION_KEY not in app.extensions
    assert middleware.cache.get("hits") == 1


def test_no_url_falls_back_to_memory_with_one_warning(
    no_store_configured: None, caplog: pytest.LogCaptureFixture
) -> None:
    counts = []
    for _ in range(2):
        app = make_app()
        BlinkStore(app)
        counts.append(int(app.test_client().post("/hit").text))
    assert counts[1] == counts[0] + 1  # one per-process fallback store behind both apps
    assert len([r for r in caplog.records if "per-process" in r.getMessage()]) == 1


@pytest.mark.slow
def test_gunicorn_sync_workers_share_one_counter(store_url: str) -> None:
    app = "tests.integration.integration_apps:flask_app"
    with gunicorn_workers(app, "/hits", {"BLINKSTORE_URL": store_url}) as (base, _):
        counts = [int(httpx.post(base + "/hit").text) for _ in range(30)]
        assert counts == list(range(1, 31))


def test_cached_decorates_before_any_app_and_uses_each_calls_app() -> None:
    calls: list[int] = []

    @cache.cached(ttl=60)  # no app, no app context: as at a module's top level
    def square(n: int) -> int:
        calls.append(n)
        return n * n

    apps = [make_app(BLINKSTORE_URL="memory://") for _ in range(2)]  # two private stores
    for app in apps:
        BlinkStore(app)
        with app.app_context():
            assert [square(3), square(3)] == [9, 9]
    assert calls == [3, 3]  # computed once in each app's store
    with apps[0].app_context():
        assert square.invalidate(3) is True  # type: ignore[attr-defined]
        assert square(3) == 9
    assert calls == [3, 3, 3]


def test_cached_refuses_a_coroutine_function_when_decorating() -> None:
    async def later() -> int:
        return 1

    with pytest.raises(TypeError, match=r"AsyncCache\.cached"):
        cache.cached()(later)
