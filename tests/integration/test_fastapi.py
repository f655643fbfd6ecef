"""FastAPI: the get_cache dependency, CacheDep, websockets, and the example app."""

from __future__ import annotations

import importlib.util
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket
from fastapi.testclient import TestClient

from blinkstore_gunicorn.client import AsyncCache
from blinkstore_gunicorn.integrations import BlinkStoreMiddleware
from blinkstore_gunicorn.integrations.fastapi import CacheDep, get_cache
from harness.processes import wait_exit

from .integration_support import free_port, process_output, running_process, wait_http

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app" / "app.py"


@pytest.fixture(autouse=True)
def memory_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINKSTORE_URL", "memory://")


def test_cachedep_and_depends_forms() -> None:
    app = FastAPI()
    app.add_middleware(BlinkStoreMiddleware)

    @app.post("/set/{key}/{value}")
    async def put(key: str, value: str, cache: CacheDep) -> dict[str, bool]:
        return {"ok": await cache.set(key, value)}

    @app.get("/get/{key}")
    async def get(key: str, cache: AsyncCache = Depends(get_cache)) -> dict[str, object]:  # noqa: B008
        return {"value": await cache.get(key), "type": type(cache).__name__}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, cache: Annotated[AsyncCache, Depends(get_cache)]) -> None:
        await websocket.accept()
        await websocket.send_text(str(await cache.get(await websocket.receive_text())))
        await websocket.close()

    with TestClient(app) as client:
        assert client.post("/set/color/blue").json() == {"ok": True}
        assert client.get("/get/color").json() == {"value": "blue", "type": "AsyncCache"}
        with client.websocket_connect("/ws") as websocket:
            websocket.send_text("color")
            assert websocket.receive_text() == "blue"


def test_missing_middleware_is_a_clear_error() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(cache: CacheDep) -> None: ...

    with TestClient(app) as client, pytest.raises(RuntimeError, match="BlinkStoreMiddleware"):
        client.get("/")


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("DEMO_UPSTREAM_DELAY", "0.2")
    monkeypatch.setenv("DEMO_RATE_LIMIT", "5")
    monkeypatch.setenv("DEMO_RATE_WINDOW", "60")
    spec = importlib.util.spec_from_file_location("fastapi_example_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_example_caches_the_slow_upstream(example: ModuleType) -> None:
    with TestClient(example.app) as client:
        first = client.get("/weather/Paris").json()
        second = client.get("/weather/paris").json()
    assert first["cached"] is False and first["elapsed_ms"] >= 200
    assert second["cached"] is True and second["elapsed_ms"] < 200
    assert second["report"] == first["report"]


def test_example_counter_and_index(example: ModuleType) -> None:
    with TestClient(example.app) as client:
        assert client.post("/counter").json()["value"] == 1
        assert client.post("/counter").json()["value"] == 2
        assert client.get("/counter").json()["value"] == 2
        page = client.get("/")
        assert page.status_code == 200
        assert "Served by worker pid" in page.text
        assert "stats" in client.get("/stats").json()


def test_example_rate_limit(example: ModuleType) -> None:
    with TestClient(example.app) as client:
        replies = [client.get("/counter") for _ in range(7)]
        assert [reply.status_code for reply in replies] == [200] * 5 + [429] * 2
        assert [reply.headers["RateLimit-Remaining"] for reply in replies] == [*"4321000"]
        assert replies[0].headers["RateLimit-Limit"] == "5"
        assert replies[0].headers["RateLimit-Reset"] == "12"  # one request refills in 60 s / 5
        limited = client.get("/counter")
        # The next request fits once one interval (60 s / 5) has passed.
        assert 11 <= int(limited.headers["Retry-After"]) <= 12
        # Pages outside the API router are not limited.
        assert client.get("/").status_code == 200


def test_example_survives_a_store_outage(example: ModuleType, tmp_path: Path) -> None:
    dead = f"unix://{tmp_path / 'gone.sock'}"
    app = BlinkStoreMiddleware(example.app, url=dead)  # outermost: its cache is the one used
    with TestClient(app) as client:
        weather = client.get("/weather/oslo")
        assert weather.status_code == 200 and weather.json()["cached"] is False
        assert client.get("/counter").json()["value"] == 0  # a miss reads as the default
        bumped = client.post("/counter")  # the rate limit lets it through (fails open)
        assert bumped.status_code == 503 and bumped.headers["Retry-After"] == "1"
        assert client.get("/").status_code == 200


@pytest.mark.slow
def test_example_under_its_gunicorn_config() -> None:
    """What `make demo` runs: two uvicorn workers, the store started by the gunicorn master."""
    port = free_port()
    config = str(EXAMPLE.parent / "gunicorn.conf.py")
    env = {"DEMO_BIND": f"127.0.0.1:{port}", "DEMO_UPSTREAM_DELAY": "0.3"}
    with running_process(["-m", "gunicorn", "-c", config], env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/stats", proc=proc)
        assert [httpx.post(base + "/counter").json()["value"] for _ in range(10)] == list(
            range(1, 11)
        )
        first = httpx.get(base + "/weather/rome").json()
        later = [httpx.get(base + "/weather/rome").json() for _ in range(6)]
        assert first["cached"] is False
        assert all(reply["cached"] and reply["report"] == first["report"] for reply in later)
        stats = httpx.get(base + "/stats").json()["stats"]
        assert stats["backend"] == "store" and stats["keys"] >= 2
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 20, lambda: process_output(proc)) == 0, process_output(proc)
