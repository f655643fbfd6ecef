"""The ``limits`` storage plug-in (``blinkstore_gunicorn.contrib.limits``) against a real store:
registered URLs, sync and async strategies, and what happens with a strategy it lacks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from limits import RateLimitItemPerHour, RateLimitItemPerSecond
from limits.aio.strategies import FixedWindowRateLimiter as AsyncFixedWindowRateLimiter
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from blinkstore_gunicorn.client import Cache, CacheConnectionError
from blinkstore_gunicorn.contrib.limits import (
    AsyncBlinkStoreStorage,
    BlinkStoreStorage,
    cache_arguments,
)
from harness.gunicorn import wait_until
from harness.processes import StoreProcess

from .integration_support import process_output, running_process


def storage_url(store: StoreProcess, prefix: str = "blinkstore") -> str:
    return f"{prefix}+{store.url}"


def test_the_urls_map_to_cache_urls() -> None:
    assert cache_arguments("blinkstore://") == {"url": None, "namespace": "limits"}
    assert cache_arguments("blinkstore+unix:///run/s.sock?timeout=2") == {
        "url": "unix:///run/s.sock?timeout=2",
        "namespace": "limits",
    }
    assert cache_arguments("async+blinkstore+tcp://127.0.0.1:8765?namespace=api") == {
        "url": "tcp://127.0.0.1:8765",
        "namespace": "api",
    }
    with pytest.raises(ValueError, match="takes its options from BLINKSTORE_URL"):
        cache_arguments("blinkstore://?timeout=1")
    with pytest.raises(ConfigurationError, match="unknown storage scheme"):
        storage_from_string("blinkstore+http://example")


def test_fixed_window_counts_exactly_and_reports_the_window(blinkstore: StoreProcess) -> None:
    storage = storage_from_string(storage_url(blinkstore))
    assert isinstance(storage, BlinkStoreStorage)
    limiter = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerHour(3)
    assert [limiter.hit(item, "alice") for _ in range(5)] == [True] * 3 + [False] * 2
    assert limiter.hit(item, "bob")  # another identifier, another counter
    assert not limiter.test(item, "alice")
    stats = limiter.get_window_stats(item, "alice")
    assert stats.remaining == 0
    assert time.time() + 3590 < stats.reset_time <= time.time() + 3600
    assert storage.check()
    limiter.clear(item, "alice")
    assert limiter.hit(item, "alice")
    # The counters live in the store under the "limits" namespace, nowhere else.
    with Cache(blinkstore.url) as cache:
        assert sorted(cache.keys()) == sorted(
            f"limits:{k}" for k in ("LIMITER/alice/3/1/hour", "LIMITER/bob/3/1/hour")
        )
    assert storage.reset() == 2
    assert limiter.get_window_stats(item, "bob").remaining == 3


def test_a_window_ends_after_its_period(blinkstore_unix: StoreProcess) -> None:
    limiter = FixedWindowRateLimiter(storage_from_string(storage_url(blinkstore_unix)))
    item = RateLimitItemPerSecond(1)
    assert limiter.hit(item, "k")
    assert not limiter.hit(item, "k")
    assert wait_until(lambda: limiter.hit(item, "k"), timeout=5.0)


def test_async_storage_counts_in_the_same_store(blinkstore: StoreProcess) -> None:
    async def scenario() -> list[bool]:
        storage = storage_from_string(storage_url(blinkstore, "async+blinkstore"))
        assert isinstance(storage, AsyncBlinkStoreStorage)
        limiter = AsyncFixedWindowRateLimiter(storage)
        item = RateLimitItemPerHour(4)
        hits = await asyncio.gather(*(limiter.hit(item, "shared") for _ in range(6)))
        assert (await limiter.get_window_stats(item, "shared")).remaining == 0
        assert await storage.check()
        assert await storage.reset() == 1
        await storage.cache.close()
        return hits

    assert sorted(asyncio.run(scenario())) == [False] * 2 + [True] * 4


def test_blinkstore_url_reads_blinkstore_url(
    blinkstore_unix: StoreProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLINKSTORE_URL", blinkstore_unix.url)
    storage = storage_from_string("blinkstore://")
    FixedWindowRateLimiter(storage).hit(RateLimitItemPerHour(1), "env")
    with Cache(blinkstore_unix.url) as cache:
        assert list(cache.keys()) == ["limits:LIMITER/env/1/1/hour"]


def test_an_unreachable_store_fails_the_check_and_the_hit(tmp_path: Path) -> None:
    storage = storage_from_string(f"blinkstore+unix://{tmp_path}/gone.sock?connect_timeout=1")
    assert storage.check() is False
    with pytest.raises(CacheConnectionError, match=r"gone\.sock"):
        FixedWindowRateLimiter(storage).hit(RateLimitItemPerHour(1), "k")


def test_strategies_the_plugin_lacks_say_so(blinkstore_unix: StoreProcess) -> None:
    with pytest.raises(NotImplementedError, match="BlinkStoreStorage"):
        MovingWindowRateLimiter(storage_from_string(storage_url(blinkstore_unix)))


# One process of the host-wide count below: 10 hits on a limit of 10 per minute, printing how
# many were allowed. BLINKSTORE_URL is unset, so only the storage URL can name the store.
_HITTER = """
import os, sys
os.environ.pop("BLINKSTORE_URL", None)
import blinkstore_gunicorn.contrib.limits
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
limiter = FixedWindowRateLimiter(storage_from_string(sys.argv[1]))
print(sum(limiter.hit(RateLimitItemPerMinute(10), "client") for _ in range(10)))
"""


def test_the_path_form_counts_host_wide_across_processes(blinkstore_unix: StoreProcess) -> None:
    # blinkstore:///path.sock is how redis+unix:// and memcached:// name a socket; it used to
    # drop the path and count per process in memory://, allowing 3 x 10 hits.
    assert blinkstore_unix.unix_path is not None
    uri = f"blinkstore://{blinkstore_unix.unix_path}"
    with contextlib.ExitStack() as stack:
        hitters = [stack.enter_context(running_process(["-c", _HITTER, uri])) for _ in range(3)]
        for hitter in hitters:
            assert hitter.wait(60) == 0, process_output(hitter)
        # The last line: a warning (memory:// before the fix) may come first.
        allowed = [int(process_output(hitter).splitlines()[-1]) for hitter in hitters]
    assert sum(allowed) == 10, allowed
    with Cache(blinkstore_unix.url) as cache:
        assert list(cache.keys()) == ["limits:LIMITER/client/10/1/minute"]


@pytest.mark.parametrize("uri", ["blinkstore://localhost:8765", "async+blinkstore://store.sock"])
def test_a_host_after_blinkstore_is_refused_naming_the_right_urls(uri: str) -> None:
    with pytest.raises(ValueError, match=r"blinkstore\+tcp://HOST:PORT.*blinkstore\+unix:///"):
        cache_arguments(uri)
