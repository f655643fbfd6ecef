"""The Django cache backend, tested against Django's documented cache behaviour.

Every test runs on memory://, on a real ``blinkstore serve`` process and on a real
redis-server: the backend must behave the same on all three. ``cache_page`` and the cache /
cached_db session engines run on it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import os
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.urls import path
from django.views.decorators.cache import cache_page
from django_ratelimit.checks import check_caches
from django_ratelimit.core import get_usage
from django_ratelimit.decorators import ratelimit

from blinkstore_gunicorn.client import (
    CacheSerializationError,
    CacheValueTooLarge,
    PickleSerializer,
)
from blinkstore_gunicorn.contrib.django import BlinkStoreCache
from harness.gunicorn import wait_until
from harness.processes import resp_command
from tests.support.django_settings import configure_django

from .integration_support import server_url

# Before any test touches settings (Django configures once per process).
configure_django()

BACKEND = "blinkstore_gunicorn.contrib.django.BlinkStoreCache"
_calls = {"page": 0}


@cache_page(60)
def cached_view(request: HttpRequest) -> HttpResponse:
    _calls["page"] += 1
    return HttpResponse(f"rendered {_calls['page']}")


def session_view(request: HttpRequest) -> HttpResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]))


urlpatterns = [path("cached/", cached_view), path("session/", session_view)]

SESSION_MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]


class Thing:
    """An arbitrary picklable object: Django caches any picklable value."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thing) and other.name == self.name

    __hash__ = None  # type: ignore[assignment]


def remaining(cache: BlinkStoreCache, key: str, version: int | None = None) -> float:
    """Seconds to live of a Django key, read through the backend's own client."""
    ttl = cache._clients.sync().ttl(cache.make_key(key, version=version))
    assert ttl is not None, f"{key!r} is missing"
    return ttl


def custom_key(key: str, key_prefix: str, version: int) -> str:
    return f"custom|{key_prefix}|{version}|{key}"


@pytest.fixture(params=["memory", "store", "redis"], scope="module")
def location(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
        return
    with server_url(request.param) as url:
        yield url


def configure(location: str, **overrides: Any) -> dict[str, Any]:
    base = {"BACKEND": BACKEND, "LOCATION": location, "KEY_PREFIX": "t"}
    return {"default": {**base, **overrides}}


@pytest.fixture
def cache(location: str) -> Iterator[BlinkStoreCache]:
    with override_settings(CACHES=configure(location)):
        backend = caches["default"]
        assert isinstance(backend, BlinkStoreCache)
        backend.clear()
        yield backend


def test_get_set_default_and_none(cache: BlinkStoreCache) -> None:
    assert cache.get("missing") is None
    assert cache.get("missing", "fallback") == "fallback"
    cache.set("k", "v")
    assert cache.get("k") == "v"
    cache.set("none", None)
    sentinel = object()
    assert cache.get("none", sentinel) is None  # a stored None is a hit, not a miss


@pytest.mark.parametrize(
    "value",
    [
        "text",
        b"\x00bytes\xff",
        42,
        -7,
        True,
        3.5,
        None,
        [1, "two", None],
        {"a": {"b": [1, 2]}},
        (1, 2),
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        Thing("x"),
    ],
)
def test_values_round_trip_exactly(cache: BlinkStoreCache, value: object) -> None:
    cache.set("value", value)
    got = cache.get("value")
    assert got == value
    assert type(got) is type(value)


def test_add_only_when_absent(cache: BlinkStoreCache) -> None:
    assert cache.add("k", "first") is True
    assert cache.add("k", "second") is False
    assert cache.get("k") == "first"


def test_timeouts(location: str) -> None:
    with override_settings(CACHES=configure(location, TIMEOUT=1)):
        cache = caches["default"]
        cache.clear()
        cache.set("default", 1)  # the TIMEOUT setting: 1 second
        cache.set("forever", 1, timeout=None)
        cache.set("long", 1, timeout=60)
        cache.set("zero", 1, timeout=0)  # 0 = expire immediately
        cache.set("negative", 1, timeout=-1)
        assert cache.add("add-zero", 1, timeout=0) is True
        assert cache.get("zero") is None
        assert cache.get("negative") is None
        assert cache.get("add-zero") is None
        assert cache.get("default") == 1
        time.sleep(1.2)
        assert cache.get("default") is None
        assert cache.get("forever") == 1
        assert cache.get("long") == 1


def test_timeout_none_setting_means_forever(location: str) -> None:
    with override_settings(CACHES=configure(location, TIMEOUT=None)):
        cache = caches["default"]
        cache.clear()
        cache.set("k", 1)
        made = cache.make_key("k")
        assert cache._clients.sync().ttl(made) == math.inf


def test_touch(cache: BlinkStoreCache) -> None:
    assert cache.touch("missing") is False
    cache.set("k", "v", timeout=1)
    assert cache.touch("k", None) is True  # None: never expire
    cache.set("gone", "v")
    assert cache.touch("gone", 0) is True  # 0: expire now
    assert cache.get("gone") is None
    cache.set("short", "v", timeout=60)
    assert cache.touch("short", 1) is True
    time.sleep(1.2)
    assert cache.get("k") == "v"
    assert cache.get("short") is None


def test_delete_and_has_key(cache: BlinkStoreCache) -> None:
    cache.set("k", "v")
    assert cache.has_key("k")
    assert "k" in cache
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert not cache.has_key("k")


def test_get_or_set(cache: BlinkStoreCache) -> None:
    calls = []

    def compute() -> str:
        calls.append(1)
        return "computed"

    assert cache.get_or_set("k", compute) == "computed"
    assert cache.get_or_set("k", compute) == "computed"
    assert calls == [1]
    assert cache.get_or_set("plain", "default") == "default"
    assert cache.get_or_set("expired", "now", timeout=0) == "now"
    assert cache.get("expired") is None


def test_get_or_set_computes_once_for_concurrent_callers(cache: BlinkStoreCache) -> None:
    calls = []
    start = threading.Barrier(6)
    results: list[object] = []

    def slow_report() -> dict[str, int]:
        calls.append(1)
        time.sleep(0.3)
        return {"orders": 42}

    def worker() -> None:
        start.wait()
        # Each thread gets its own backend instance from Django, as in a gthread worker.
        results.append(caches["default"].get_or_set("report", slow_report, timeout=60))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [{"orders": 42}] * 6
    assert len(calls) == 1
    assert cache.get("report") == {"orders": 42}


def test_incr_decr(cache: BlinkStoreCache) -> None:
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    with pytest.raises(ValueError, match="not found"):
        cache.decr("missing")
    cache.set("n", 10, timeout=60)
    assert cache.incr("n") == 11
    assert cache.incr("n", 10) == 21
    assert cache.decr("n") == 20
    assert cache.decr("n", 25) == -5
    assert cache.get("n") == -5
    assert 0 < remaining(cache, "n") <= 60  # incr keeps the timeout


def test_many(cache: BlinkStoreCache) -> None:
    assert cache.set_many({"a": 1, "b": "two", "c": [3]}) == []
    assert cache.get_many(["a", "b", "c", "missing"]) == {"a": 1, "b": "two", "c": [3]}
    assert cache.get_many([]) == {}
    cache.delete_many(["a", "c", "missing"])
    assert cache.get_many(["a", "b", "c"]) == {"b": "two"}
    cache.set_many({"x": 1}, timeout=0)
    assert cache.get("x") is None


def test_clear(cache: BlinkStoreCache) -> None:
    cache.set_many({"a": 1, "b": 2})
    cache.clear()
    assert cache.get_many(["a", "b"]) == {}


def test_key_prefix_and_version(location: str) -> None:
    both = {
        "default": configure(location, KEY_PREFIX="one")["default"],
        "other": configure(location, KEY_PREFIX="two", VERSION=3)["default"],
    }
    with override_settings(CACHES=both):
        one, two = caches["default"], caches["other"]
        one.set("k", "from one")
        two.set("k", "from two")
        assert one.get("k") == "from one"
        assert two.get("k") == "from two"
        assert two.make_key("k") == "two:3:k"
        one.set("v", "version 2", version=2)
        assert one.get("v") is None
        assert one.get("v", version=2) == "version 2"


def test_key_function(location: str) -> None:
    dotted = f"{__name__}.custom_key"
    with override_settings(CACHES=configure(location, KEY_FUNCTION=dotted)):
        cache = caches["default"]
        cache.set("k", "v")
        assert cache.make_key("k") == "custom|t|1|k"
        assert cache._clients.sync().get("custom|t|1|k") == "v"


def test_incr_and_decr_version(cache: BlinkStoreCache) -> None:
    cache.set("k", "v", timeout=60)
    assert cache.incr_version("k") == 2
    assert cache.get("k") is None
    assert cache.get("k", version=2) == "v"
    assert 0 < remaining(cache, "k", version=2) <= 60
    assert cache.decr_version("k", version=2) == 1
    assert cache.get("k") == "v"
    with pytest.raises(ValueError, match="not found"):
        cache.incr_version("missing")


def test_close_keeps_the_cache_usable(cache: BlinkStoreCache) -> None:
    cache.set("k", "v")
    cache.close()  # Django calls this at the end of every request
    assert cache.get("k") == "v"


def test_async_api(cache: BlinkStoreCache) -> None:
    async def scenario() -> None:
        cache.set("shared", "sync wrote this")
        assert await cache.aget("shared") == "sync wrote this"
        assert await cache.aget("missing", "d") == "d"
        await cache.aset("k", {"x": 1})
        assert await cache.aadd("k", "no") is False
        assert await cache.aadd("new", Thing("t")) is True
        assert await cache.aget("new") == Thing("t")
        assert await cache.ahas_key("k") is True
        await cache.aset("n", 1)
        assert await cache.aincr("n", 4) == 5
        assert await cache.adecr("n") == 4
        with pytest.raises(ValueError, match="not found"):
            await cache.aincr("missing")
        assert await cache.atouch("n", None) is True
        assert await cache.aset_many({"a": 1, "b": 2}) == []
        assert await cache.aget_many(["a", "b", "zz"]) == {"a": 1, "b": 2}
        await cache.adelete_many(["a"])
        assert await cache.adelete("b") is True
        assert await cache.aget_or_set("gos", lambda: "made") == "made"
        assert await cache.aincr_version("gos") == 2
        assert await cache.adecr_version("gos", version=2) == 1
        await cache.aset("zero", 1, timeout=0)
        assert await cache.aget("zero") is None
        await cache.aclose()
        await cache.aclear()
        assert await cache.aget("k") is None

    asyncio.run(scenario())
    assert cache.get("k") is None  # aclear cleared what the sync client sees


def test_cache_page(location: str) -> None:
    _calls["page"] = 0
    with override_settings(CACHES=configure(location), ROOT_URLCONF=__name__, MIDDLEWARE=[]):
        caches["default"].clear()
        client = Client()
        first = client.get("/cached/")
        second = client.get("/cached/")
        assert first.content == second.content == b"rendered 1"
        assert _calls["page"] == 1


@pytest.mark.parametrize(
    "engine",
    ["django.contrib.sessions.backends.cache", "django.contrib.sessions.backends.cached_db"],
)
def test_sessions(location: str, engine: str) -> None:
    if engine.endswith("cached_db"):
        call_command("migrate", "sessions", verbosity=0)
    with override_settings(
        CACHES=configure(location),
        SESSION_ENGINE=engine,
        ROOT_URLCONF=__name__,
        MIDDLEWARE=SESSION_MIDDLEWARE,
    ):
        caches["default"].clear()
        client = Client()
        assert [client.get("/session/").content for _ in range(3)] == [b"1", b"2", b"3"]
        session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
        # The session data lives in the cache, under the session engine's key.
        assert caches["default"].get(f"{_session_prefix(engine)}{session_key}") == {"n": 3}
        # Another client (no cookie) gets its own session.
        assert Client().get("/session/").content == b"1"


def _session_prefix(engine: str) -> str:
    from importlib import import_module

    return str(import_module(engine).KEY_PREFIX)


def test_options_go_to_the_client(location: str) -> None:
    config = configure(location, OPTIONS={"namespace": "ns", "MAX_ENTRIES": 10})
    with override_settings(CACHES=config):
        cache = caches["default"]
        cache.set("k", "v")
        assert cache._clients.sync().get("t:1:k") == "v"
    with override_settings(CACHES=configure(location)):
        assert caches["default"].get("k") is None  # other namespace


def test_store_outage_reads_as_misses(tmp_path: Path) -> None:
    dead = f"unix://{tmp_path / 'gone.sock'}"
    with override_settings(CACHES=configure(dead)):
        cache = caches["default"]
        cache.set("k", "v")  # skipped, not an error
        assert cache.get("k", "default") == "default"
        assert cache.add("k", "v") is False
        assert cache.get_many(["k"]) == {}
        with pytest.raises(ValueError, match="not found"):
            cache.incr("k")
        assert asyncio.run(cache.aget("k", "d")) == "d"


@pytest.mark.parametrize("kind", ["memory", "store"])
def test_a_value_too_large_is_not_stored_as_memcached_does_and_not_an_outage(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # 40 MiB: over the store's max value size, and over what its connections may hold.
    caplog.set_level(logging.WARNING)
    big = os.urandom(40 * 1024 * 1024)
    with contextlib.ExitStack() as servers:
        url = "memory://" if kind == "memory" else servers.enter_context(server_url("store"))
        with override_settings(CACHES=configure(url)):
            cache = caches["default"]
            cache.set("k", "old")
            assert cache.set("k", big) is None
            assert cache.get("k") is None  # the old value is not served stale
            assert cache.add("new", big) is False
            assert cache.set_many({"a": 1, "b": big, "c": 3}) == ["b"]
            assert cache.get_many(["a", "b", "c"]) == {"a": 1, "c": 3}
            assert asyncio.run(cache.aset("k", big)) is None
        assert "t:1:k not stored: ERR value too large: value of " in caplog.text
        assert "unreachable" not in caplog.text
        raising = configure(url, OPTIONS={"on_error": "raise"})
        with override_settings(CACHES=raising), pytest.raises(CacheValueTooLarge, match="16777216"):
            caches["default"].set("k", big)


# -- per-loop clients, under WSGI (async_to_sync) -----------------------------------------------


def connected_clients(url: str) -> int:
    """How many connections the store at ``url`` counts right now (INFO clients)."""
    from blinkstore_gunicorn.client import Cache

    with Cache(url) as probe:
        return int(probe.stats()["connected_clients"]) - 1  # not counting the probe itself


@pytest.mark.parametrize("kind", ["store", "redis"])
def test_async_to_sync_calls_leave_no_clients_behind(kind: str) -> None:
    from asgiref.sync import async_to_sync

    with server_url(kind) as url, override_settings(CACHES=configure(url)):
        cache = caches["default"]
        cache.set("k", "v")
        before = connected_clients(url)
        for _ in range(50):
            # What a sync Django view calling an async helper does: a new loop each time.
            assert async_to_sync(cache.aget)("k") == "v"
        # Every loop closed its client's connections when it ended, and forgot the client.
        left = wait_until(lambda: connected_clients(url) == before, 10.0)
        assert left, f"{connected_clients(url)} connections, {before} before the calls"
        assert len(cache._clients._async) == 0


def test_a_loop_closed_without_shutdown_frees_its_client(store_url: str) -> None:
    with override_settings(CACHES=configure(store_url)):
        cache = caches["default"]
        for _ in range(20):
            loop = asyncio.new_event_loop()
            loop.run_until_complete(cache.aset("k", 1))
            loop.close()  # no shutdown_asyncgens(): the client learns of it on the next call
        assert len(cache._clients._async) <= 1


# -- get_or_set never raises for a cache problem -------------------------------------------------


@pytest.mark.parametrize("kind", ["store", "redis"])
def test_get_or_set_computes_itself_when_the_wait_runs_out(kind: str) -> None:
    """A second caller waits ``wait_timeout`` for the first one's value, then computes it."""
    started, release = threading.Event(), threading.Event()
    first_result: list[object] = []
    options = {"get_or_set": {"wait_timeout": 0.3}}

    def slow_loader() -> str:
        started.set()
        assert release.wait(30), "the test never released the first loader"
        return "first"

    with server_url(kind) as url, override_settings(CACHES=configure(url, OPTIONS=options)):
        cache = caches["default"]
        cache.clear()
        first = threading.Thread(
            target=lambda: first_result.append(caches["default"].get_or_set("k", slow_loader))
        )
        first.start()
        try:
            assert started.wait(30), "the first caller never ran its loader"
            assert cache.get_or_set("k", lambda: "second") == "second"
        finally:
            release.set()
            first.join(30)
        assert first_result == ["first"]
        assert cache.get("k") == "first"


@pytest.mark.parametrize("kind", ["store", "redis"])
def test_get_or_set_computes_when_the_stored_value_is_unreadable(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with server_url(kind) as url:
        for on_error in ("miss", "raise"):
            with override_settings(CACHES=configure(url, OPTIONS={"on_error": on_error})):
                cache = caches["default"]
                raw_key = cache.make_key("k").encode()
                cache._clients.sync().backend.set(raw_key, b"\xfc{not json", None, False, False)
                if on_error == "miss":
                    for _ in range(3):
                        assert cache.get_or_set("k", lambda: "computed") == "computed"
                    assert caplog.text.count("CacheSerializationError") == 1  # logged once
                else:
                    with pytest.raises(CacheSerializationError):
                        cache.get_or_set("k", lambda: "computed")


def test_get_or_set_options_are_checked(location: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    config = configure(location, OPTIONS={"get_or_set": {"wait": 1}})
    with override_settings(CACHES=config), pytest.raises(ImproperlyConfigured, match=r"'wait'"):
        caches["default"].get("k")


# -- signed pickles: a foreign writer cannot run code in the app -------------------------------


class CreatesAFile:
    """A pickle that, once loaded, creates a file: what a hostile writer would store."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def foreign_write(url: str, key: str, payload: bytes) -> None:
    """SET ``key`` like redis-cli would, on a raw socket: no client library, no signing key."""
    unix_path = urlsplit(url).path
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(unix_path)
        sock.sendall(resp_command("SET", key, payload))
        assert sock.recv(64) == b"+OK\r\n"


@pytest.mark.parametrize("kind", ["store", "redis"])
def test_pickles_not_signed_by_the_app_read_as_misses(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    exploit = pickle.dumps(CreatesAFile(marker))
    payloads = {
        # What a version before signing wrote, or a writer that knows the format.
        "unsigned": b"\xfd" + exploit,
        "forged": b"\xfd" + bytes(32) + exploit,
        # Another application's key (e.g. another Django project on the same store).
        "other-key": PickleSerializer("another secret").dumps(CreatesAFile(marker)),
    }
    with server_url(kind) as url, override_settings(CACHES=configure(url)):
        cache = caches["default"]
        cache.set("own", Thing("signed by this app"))
        for name, payload in payloads.items():
            foreign_write(url, cache.make_key(name), payload)
        assert cache.get("own") == Thing("signed by this app")
        for name in payloads:
            assert cache.get(name, "miss") == "miss", name
            assert cache.has_key(name)  # it is there, it just never reaches pickle.loads
        assert cache.get_many([*payloads, "own"]) == {"own": Thing("signed by this app")}
        assert asyncio.run(cache.aget("forged", "miss")) == "miss"
        # get_or_set treats it as a miss too, and replaces it with a signed value.
        assert cache.get_or_set("unsigned", lambda: "computed") == "computed"
        assert cache.get("unsigned") == "computed"
        with pytest.raises(ValueError, match="not found"):
            cache.incr_version("forged")
    assert not marker.exists(), "a foreign pickle was loaded"
    assert caplog.text.count("refused to unpickle") == 1  # logged once, not per read


def test_signing_key_option_and_secret_key_rotation(location: str) -> None:
    with override_settings(CACHES=configure(location), SECRET_KEY="old secret"):
        caches["default"].set("k", Thing("v"))
    rotated = {"SECRET_KEY": "new secret", "SECRET_KEY_FALLBACKS": ["old secret"]}
    with override_settings(CACHES=configure(location), **rotated):
        assert caches["default"].get("k") == Thing("v")  # written under the old key
    with override_settings(CACHES=configure(location), SECRET_KEY="new secret"):
        assert caches["default"].get("k") is None  # the old key is no longer accepted
    own_key = configure(location, OPTIONS={"signing_key": "cache only"})
    with override_settings(CACHES=own_key):
        caches["default"].set("mine", Thing("v"))
        assert caches["default"].get("mine") == Thing("v")
    with override_settings(CACHES=configure(location)):
        assert caches["default"].get("mine") is None  # SECRET_KEY did not sign it


def test_an_empty_secret_key_is_a_clear_error(location: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with (
        override_settings(CACHES=configure(location), SECRET_KEY=""),
        pytest.raises(ImproperlyConfigured, match=r"OPTIONS\['signing_key'\]"),
    ):
        caches["default"].set("k", 1)
    with override_settings(
        CACHES=configure(location, OPTIONS={"signing_key": "own"}), SECRET_KEY=""
    ):
        caches["default"].set("k", Thing("v"))
        assert caches["default"].get("k") == Thing("v")


# -- django-ratelimit through this backend ---------------------------------------------------


@ratelimit(key="ip", rate="3/d", block=False)
def limited_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"limited" if getattr(request, "limited", False) else b"ok")


def test_django_ratelimit_counts_through_the_backend(location: str) -> None:
    with override_settings(CACHES=configure(location)):
        caches["default"].clear()
        factory = RequestFactory()

        def visit(address: str) -> bytes:
            return bytes(limited_view(factory.get("/", REMOTE_ADDR=address)).content)

        assert [visit("192.0.2.1") for _ in range(5)] == [b"ok"] * 3 + [b"limited"] * 2
        assert visit("192.0.2.2") == b"ok"  # another client, another counter
        usage = get_usage(
            factory.get("/", REMOTE_ADDR="192.0.2.1"),
            group="g",
            key="ip",
            rate="3/d",
            increment=True,
        )
        assert usage is not None and usage["count"] == 1  # the group starts its own count
        # django-ratelimit's system check only notes that the backend is not on its list.
        assert [message.id for message in check_caches(None)] == ["django_ratelimit.W001"]
