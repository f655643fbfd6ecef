"""Pure pieces of the clients: TTLs, keys, the cached() key builder, stats, config checks,
and the in-process memory backend's own rules."""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blinkstore_gunicorn import BlinkStoreMiddleware
from blinkstore_gunicorn.client import (
    AsyncCache,
    Cache,
    CacheConfigError,
    CacheResponseError,
)
from blinkstore_gunicorn.client._core import (
    FALLBACK_URL,
    expire_ms,
    glob_escape,
    key_builder,
    normalize_stats,
    seconds_left,
    ttl_ms,
)
from blinkstore_gunicorn.client.backends._outage import Reconnect, deadline, step_timeout
from blinkstore_gunicorn.client.backends._resp import may_resend, parse_info
from blinkstore_gunicorn.client.backends.memory import MemoryBackend
from blinkstore_gunicorn.client.backends.redis import merge_cluster_info
from blinkstore_gunicorn.client.errors import CacheConnectionError, CacheTimeoutError

REPO = Path(__file__).resolve().parents[2]


def test_ttl_conversions() -> None:
    assert ttl_ms(None) is None
    assert ttl_ms(1) == 1000
    assert ttl_ms(0.0001) == 1
    assert ttl_ms(datetime.timedelta(minutes=1)) == 60_000
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError):
            ttl_ms(bad)
    for wrong in ("1", True, [1]):
        with pytest.raises(TypeError):
            ttl_ms(wrong)  # type: ignore[arg-type]
    assert expire_ms(0) == 0
    assert expire_ms(-5) == 0
    assert expire_ms(None) is None
    assert expire_ms(2.5) == 2500
    assert seconds_left(-2) is None
    assert seconds_left(-1) == math.inf
    assert seconds_left(1500) == 1.5


def test_glob_escape() -> None:
    assert glob_escape(b"plain:") == b"plain:"
    assert glob_escape(b"a*b?[c]\\:") == b"a\\*b\\?\\[c\\]\\\\:"


def test_namespace_and_on_error_validation() -> None:
    with pytest.raises(CacheConfigError, match="on_error"):
        Cache("memory://", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(CacheConfigError, match="namespace"):
        Cache("memory://", namespace="")
    cache = Cache("memory://", namespace="app")
    assert cache._key("k") == b"app:k"
    assert repr(cache) == "Cache('memory://', namespace='app')"


def _module_function(a: int, b: str = "x") -> str:
    return f"{a}{b}"


def test_key_builder_binds_arguments_and_is_stable_across_processes() -> None:
    build = key_builder(_module_function, None)
    key = build((1,), {})
    assert key == build((), {"a": 1, "b": "x"})
    assert key != build((2,), {})
    assert key.startswith("tests.unit.test_client_core._module_function:")
    script = (
        "from tests.unit.test_client_core import _module_function\n"
        "from blinkstore_gunicorn.client._core import key_builder\n"
        "print(key_builder(_module_function, None)((1,), {}))\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)},
        timeout=30,
        check=True,
    )
    assert other.stdout.strip() == key


def test_key_builder_templates_callables_and_bad_arguments() -> None:
    assert key_builder(_module_function, "f:{a}:{b}")((3,), {}) == "f:3:x"
    assert key_builder(_module_function, lambda a, b="y": f"c{a}{b}")((3,), {}) == "c3y"
    with pytest.raises(TypeError, match="pass key="):
        key_builder(_module_function, None)((object(),), {})
    with pytest.raises(TypeError):
        key_builder(_module_function, 5)  # type: ignore[arg-type]
    build = key_builder(_module_function, None)
    assert build(({"b": 1, "a": 2},), {}) == build(({"a": 2, "b": 1},), {})
    assert build((b"x",), {}) != build(("x",), {})


def test_cached_refuses_the_wrong_kind_of_function() -> None:
    async def coroutine() -> int:
        return 1

    with pytest.raises(TypeError, match=r"AsyncCache\.cached"):
        Cache("memory://").cached()(coroutine)
    with pytest.raises(TypeError, match=r"decorate it with Cache\.cached"):
        AsyncCache("memory://").cached()(_module_function)  # type: ignore[arg-type]


def test_async_get_or_set_accepts_async_loaders() -> None:
    async def main() -> None:
        cache = AsyncCache("memory://")

        async def load() -> str:
            return "loaded"

        assert await cache.get_or_set("k", load) == "loaded"
        assert await cache.get("k") == "loaded"

        @cache.cached(ttl=10)
        async def double(n: int) -> int:
            return n * 2

        assert await double(4) == 8
        (stored,) = [key async for key in cache.keys("*double*")]
        assert stored.startswith("tests.unit.test_client_core.")
        assert await cache.get(stored) == 8
        ttl = await cache.ttl(stored)
        assert ttl is not None and 9 < ttl <= 10

    asyncio.run(main())


def test_parse_info_and_normalize_stats() -> None:
    info = parse_info(
        b"# Server\r\nredis_version:7.0\r\nused_memory:1024\r\nmaxmemory:0\r\n"
        b"keyspace_hits:3\r\nkeyspace_misses:1\r\nevicted_keys:0\r\nexpired_keys:2\r\n"
        b"mem_fragmentation_ratio:1.5\r\n# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=0\r\n"
        b"db1:keys=2,expires=0,avg_ttl=0\r\n"
    )
    assert info["db0"] == {"keys": 5, "expires": 1, "avg_ttl": 0}
    assert info["mem_fragmentation_ratio"] == 1.5
    stats = normalize_stats(info, "store")
    assert stats["keys"] == 7
    assert (stats["hits"], stats["misses"], stats["expirations"]) == (3, 1, 2)
    assert stats["redis_version"] == 7.0 or stats["redis_version"] == "7.0"
    with pytest.raises(CacheResponseError):
        parse_info(5)


def test_merge_cluster_info_sums_nodes() -> None:
    merged = merge_cluster_info(
        {
            "127.0.0.1:7000": {"used_memory": 10, "db0": {"keys": 1}, "role": "master"},
            "127.0.0.1:7001": {"used_memory": 5, "db0": {"keys": 2}, "role": "master"},
        }
    )
    assert merged["used_memory"] == 15
    assert merged["db0"] == {"keys": 3}
    assert merged["cluster_nodes"] == 2
    single = {"used_memory": 1}
    assert merge_cluster_info(single) is single


def test_reconnect_waits_during_a_restart_then_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(
        "blinkstore_gunicorn.client.backends._outage.time.monotonic", lambda: now[0]
    )
    reconnect = Reconnect("unix:///x", grace=2.0)
    assert reconnect.wait_time(None) == 0.0
    reconnect.failed(CacheConnectionError("cannot connect to the store at unix:///x"))
    # A caller that serves misses does not wait; one with a deadline retries in 10 ms.
    with pytest.raises(CacheConnectionError, match="cannot connect"):
        reconnect.wait_time(None)
    until = deadline(2.0)  # the call's deadline: the client timeout from now
    assert until == 102.0
    assert reconnect.wait_time(until) == pytest.approx(0.01)
    with pytest.raises(CacheConnectionError):
        reconnect.wait_time(100.005)  # cannot wait that long
    now[0] += 0.01
    assert reconnect.wait_time(None) == 0.0  # the next attempt is due: anyone may make it
    # Past the grace period the outage is long: nobody waits, one probe every 0.1 s.
    now[0] = 102.5
    reconnect.failed(CacheConnectionError("cannot connect"))
    with pytest.raises(CacheConnectionError):
        reconnect.wait_time(math.inf)
    now[0] += 0.1
    assert reconnect.wait_time(math.inf) == 0.0
    reconnect.succeeded()
    reconnect.failed(CacheConnectionError("cannot connect"))
    assert reconnect.wait_time(now[0] + 2.0) == pytest.approx(0.01)  # a new outage


def test_an_unanswered_request_makes_every_call_fail_fast_until_a_probe_is_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(
        "blinkstore_gunicorn.client.backends._outage.time.monotonic", lambda: now[0]
    )
    reconnect = Reconnect("unix:///x", grace=2.0)
    reconnect.timed_out(CacheTimeoutError("no reply from the store at unix:///x within 2.0s"))
    assert reconnect.unanswered and reconnect.down_since == 100.0
    # No grace: even a caller that may wait until its deadline fails at once.
    with pytest.raises(CacheTimeoutError, match="no reply"):
        reconnect.wait_time(math.inf)
    # One probe at a time, at most one every 0.1 s (a new one only when the last one failed).
    assert reconnect.probe_due()
    reconnect.probing("probe")
    assert reconnect.probe == "probe"
    assert not reconnect.probe_due()
    now[0] += 0.1
    assert reconnect.probe_due()
    reconnect.answered()
    assert _outage_of(reconnect) == (False, None, None)
    assert reconnect.wait_time(math.inf) == 0.0
    # A store that refuses connections afterwards is a restart again: callers may wait.
    reconnect.timed_out(CacheTimeoutError("no reply"))
    reconnect.failed(CacheConnectionError("cannot connect"))
    assert _outage_of(reconnect) == (False, 100.1, None)


def _outage_of(reconnect: Reconnect) -> tuple[bool, float | None, object]:
    return reconnect.unanswered, reconnect.down_since, reconnect.probe


def test_a_call_deadline_cuts_every_step_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(
        "blinkstore_gunicorn.client.backends._outage.time.monotonic", lambda: now[0]
    )
    until = deadline(2.0)
    assert until == 102.0 and deadline(None) == math.inf
    assert step_timeout(1.0, until) == 1.0  # connect_timeout while it fits
    now[0] = 101.5
    assert step_timeout(1.0, until) == pytest.approx(0.5)
    assert step_timeout(None, until) == pytest.approx(0.5)
    now[0] = 103.0
    assert step_timeout(1.0, until) == 0.001  # over: a timeout, never a non-blocking socket
    assert step_timeout(None, math.inf) is None


def test_only_idempotent_requests_or_a_new_store_process_allow_a_resend() -> None:
    assert may_resend(True, 10, 10)
    assert may_resend(True, None, None)
    assert not may_resend(False, 10, 10)  # the same store may have run it
    assert not may_resend(False, None, None)  # TCP: nobody can tell
    assert may_resend(False, 10, 11)  # the store that may have run it is gone, with its data


def test_memory_backend_limit_evicts_like_the_store() -> None:
    cache = Cache("memory://?memory_limit=64KB")
    for i in range(200):
        cache.set(f"k{i}", "x" * 1000)
    stats = cache.stats()
    assert stats["evictions"] > 0
    assert stats["used_memory"] <= 64 * 1024
    assert cache.get("k199") == "x" * 1000
    assert cache.get("k0") is None
    with pytest.raises(CacheResponseError, match="memory limit"):
        cache.set("huge", "x" * 100_000)


def test_memory_backend_incr_rules() -> None:
    cache = Cache("memory://")
    cache.set("big", 2**63 - 1)
    with pytest.raises(CacheResponseError, match="overflow"):
        cache.incr("big")
    cache.set("huge", 2**64)
    with pytest.raises(CacheResponseError, match="not an integer"):
        cache.incr("huge")
    assert cache.get("huge") == 2**64


def test_named_memory_stores_are_shared_private_ones_are_not() -> None:
    a = Cache("memory://core-shared")
    b = Cache("memory://core-shared")
    a.set("k", 1)
    assert b.get("k") == 1
    assert Cache("memory://").get("k") is None
    with pytest.raises(CacheConfigError, match="already exists"):
        Cache("memory://core-shared?memory_limit=1KB")
    assert isinstance(a.backend, MemoryBackend)
    assert isinstance(b.backend, MemoryBackend)
    assert a.backend.engine is b.backend.engine


def test_no_url_anywhere_falls_back_to_one_shared_memory_store_with_one_warning(
    no_store_configured: None, caplog: pytest.LogCaptureFixture
) -> None:
    script = Cache()
    assert script.url.display == FALLBACK_URL
    script.set("fallback-key", "shared")
    middleware = BlinkStoreMiddleware(lambda environ, start_response: [])

    async def from_async() -> object:
        async with AsyncCache() as acache:
            return await acache.get("fallback-key")

    assert asyncio.run(from_async()) == "shared"  # one store for every entry point
    assert middleware.cache.get("fallback-key") == "shared"
    warnings = [r for r in caplog.records if "BLINKSTORE_URL is not set" in r.getMessage()]
    assert len(warnings) == 1
    script.delete("fallback-key")


def test_blinkstore_url_wins_over_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLINKSTORE_URL", "memory://from-env")
    assert Cache().url.display == "memory://from-env"
    assert Cache("memory://explicit").url.display == "memory://explicit"
