"""django-redis (``django_redis.cache.RedisCache``): get/set, ``incr`` exact under 8 threads,
``lock``, ``delete_pattern`` and ``ttl``, on redis-server and on the store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from tests.compat.compat_support import Server
from tests.support.django_settings import configure_django

# Before any test touches settings (Django configures once per process).
configure_django()


@pytest.fixture
def cache(fresh: Server) -> Iterator[Any]:
    """django-redis's cache on the server, as ``CACHES`` configures it."""
    config = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": fresh.url,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    }
    with override_settings(CACHES=config):
        yield caches["default"]
        caches["default"].close()


def test_get_set_ttl_and_delete_pattern(cache: Any) -> None:
    cache.set("user:1", {"name": "ada"}, timeout=120)
    cache.set("user:2", [1, 2], timeout=None)
    cache.set("page:1", "kept")
    assert cache.get("user:1") == {"name": "ada"}
    assert 0 < cache.ttl("user:1") <= 120
    assert cache.ttl("user:2") is None
    assert cache.ttl("missing") == 0
    assert cache.delete_pattern("user:*") == 2
    assert cache.get_many(["user:1", "user:2", "page:1"]) == {"page:1": "kept"}


def test_incr_from_8_threads_is_exact(cache: Any) -> None:
    threads, increments = 8, 100
    cache.set("hits", 0, timeout=None)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(increments):
                caches["default"].incr("hits")
        except BaseException as exc:  # the assertion below names it
            errors.append(exc)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    assert errors == []
    assert cache.get("hits") == threads * increments


def test_lock_excludes_a_second_holder(cache: Any) -> None:
    lock = cache.lock("report", timeout=30)
    assert lock.acquire(blocking=False)
    assert not cache.lock("report", timeout=30).acquire(blocking=False)
    lock.release()
    with cache.lock("report", timeout=30, blocking_timeout=10):
        assert not cache.lock("report", timeout=30).acquire(blocking=False)
    assert cache.lock("report", timeout=30).acquire(blocking=False)
