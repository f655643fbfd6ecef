"""A real store process tells its log when the memory limit starts evicting keys."""

from __future__ import annotations

from blinkstore_gunicorn import Cache
from harness.gunicorn import wait_until
from tests.conftest import StoreFactory


def test_eviction_is_logged_once_with_the_limit_and_a_hint(
    blinkstore_factory: StoreFactory,
) -> None:
    store = blinkstore_factory("--memory-limit", "1MiB")
    value = "v" * 1024
    with Cache(store.url) as cache:
        for i in range(500):  # about half the limit: no eviction yet
            cache.set(f"key:{i}", value)
        assert cache.stats()["evictions"] == 0
        for i in range(500, 2000):
            cache.set(f"key:{i}", value)
        assert cache.stats()["evictions"] > 0
        assert wait_until(lambda: "evicting keys" in store.log_text(), 10.0), store.log_text()
        for i in range(2000, 4000):  # evicting on: no second line within the minute
            cache.set(f"key:{i}", value)
    assert store.stop() == 0
    lines = [line for line in store.log_text().splitlines() if "evict" in line]
    assert len(lines) == 1, lines
    assert "[WARNING]" in lines[0]
    assert "memory limit 1 MiB reached" in lines[0]
    assert "--memory-limit or BLINKSTORE_MEMORY_LIMIT" in lines[0]
    assert "Sizing the memory limit" in lines[0]
