"""One suite, every backend, both clients: the same calls must mean the same thing.

Backends: ``store`` (``blinkstore serve``: reads from its shared-memory region, the rest over
RESP), ``store-socket`` (the same store with ``?shm=off``: everything over RESP),
``resp-redis`` (our RESP backend talking to a real redis-server), ``redis`` (redis-py against
redis-server) and ``memory``. Each test runs with :class:`Cache` and with :class:`AsyncCache`
(through :class:`Blocking`).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from blinkstore_gunicorn.client import (
    AsyncCache,
    Cache,
    CacheResponseError,
    CacheSerializationError,
    Message,
)
from harness.processes import (
    REDIS_SERVER,
    RedisProcess,
    StoreProcess,
    blinkstore_process,
    redis_server_process,
)
from tests.integration.client_support import Blocking, wait_until

BACKENDS = ["store", "store-socket", "resp-redis", "redis", "memory"]


@pytest.fixture(scope="module")
def store_server() -> Iterator[StoreProcess]:
    with blinkstore_process() as server:
        yield server


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisProcess]:
    with redis_server_process() as server:
        yield server


def _url(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "store":
        return request.getfixturevalue("store_server").url
    if backend == "store-socket":
        return request.getfixturevalue("store_server").url + "?shm=off"
    if backend == "resp-redis":
        return request.getfixturevalue("redis_server").url
    if backend == "redis":
        return request.getfixturevalue("redis_server").redis_url
    return f"memory://semantics-{uuid.uuid4().hex}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param != "memory" and REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def make_cache(request: pytest.FixtureRequest, backend: str) -> Iterator[Any]:
    """A factory of caches on one backend (same data); all flushed and closed afterwards."""
    url = _url(backend, request)
    loop = asyncio.new_event_loop()
    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        if request.param == "sync":
            cache: Any = Cache(url, **kwargs)
        else:
            cache = Blocking(AsyncCache(url, **kwargs), loop)
        made.append(cache)
        return cache

    first = make()
    first.clear()
    try:
        yield make
    finally:
        first.clear()
        for cache in made:
            cache.close()
        loop.close()


@pytest.fixture
def cache(make_cache: Any) -> Any:
    return make_cache()


VALUES: list[Any] = [
    "text",
    "",
    "ünïcødé ✓",
    b"\x00\xff binary",
    b"",
    0,
    -17,
    2**70,
    3.25,
    True,
    False,
    None,
    [1, "two", [3.0], None],
    {"a": {"b": [1, 2]}, "n": None},
    "123",
    b"123",
    "\xfbnot-a-tag",
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:20] for v in VALUES])
def test_values_round_trip_as_their_type(cache: Any, value: Any) -> None:
    assert cache.set("k", value) is True
    got = cache.get("k", "DEFAULT")
    assert got == value
    assert type(got) is type(value)


def test_missing_key_returns_default(cache: Any) -> None:
    assert cache.get("nope") is None
    assert cache.get("nope", 5) == 5
    cache.set("none", None)
    assert cache.get("none", 5) is None


def test_unsupported_value_raises_type_error_before_io(cache: Any) -> None:
    with pytest.raises(TypeError, match="serializer='pickle'"):
        cache.set("k", object())
    with pytest.raises(TypeError):
        cache.set("k", {"when": datetime.datetime(2024, 1, 1)})
    assert cache.get("k") is None


def test_undecodable_values_follow_on_error(
    make_cache: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Written by another client: a counter past int()'s 4,300-digit limit, and a pickle.
    writer = make_cache()
    writer.set("big", 1)  # the key exists, so any backend can overwrite it raw below
    raw = Cache(writer.url.display) if not isinstance(writer, Cache) else writer
    raw.backend.set(b"big", b"9" * 5000, None, False, False)
    raw.backend.set(b"pickled", b"\xfd\x80\x04K\x01.", None, False, False)

    strict = make_cache(on_error="raise")
    for key in ("big", "pickled"):
        with pytest.raises(CacheSerializationError):
            strict.get(key)
    with pytest.raises(CacheSerializationError, match="4300"):
        strict.get_many(["big"])

    caplog.set_level(logging.WARNING, logger="blinkstore_gunicorn.client")
    lenient = make_cache(on_error="miss")
    assert lenient.get("big", "default") == "default"
    assert lenient.get("pickled") is None
    lenient.set("fine", 1)
    assert lenient.get_many(["big", "pickled", "fine"]) == {"fine": 1}
    # get_or_set computes it and replaces the undecodable value.
    assert lenient.get_or_set("big", lambda: "computed") == "computed"
    assert strict.get("big") == "computed"
    assert [r for r in caplog.records if "cannot be decoded" in r.getMessage()] != []
    assert len([r for r in caplog.records if "cannot be decoded" in r.getMessage()]) == 1
    if raw is not writer:
        raw.close()


def test_bytes_and_str_keys_are_the_same_key(cache: Any) -> None:
    cache.set("key", 1)
    assert cache.get(b"key") == 1
    with pytest.raises(TypeError):
        cache.get(12)


def test_ttl_expires_and_accepts_timedelta(cache: Any) -> None:
    cache.set("short", "x", ttl=0.15)
    cache.set("delta", "y", ttl=datetime.timedelta(seconds=30))
    cache.set("forever", "z")
    assert 29 < cache.ttl("delta") <= 30
    assert cache.ttl("forever") == math.inf
    assert cache.ttl("missing") is None
    time.sleep(0.3)
    assert cache.get("short") is None
    assert cache.exists("short") is False
    assert cache.get("delta") == "y"


def test_invalid_ttls_are_refused(cache: Any) -> None:
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError):
            cache.set("k", 1, ttl=bad)
    with pytest.raises(TypeError):
        cache.set("k", 1, ttl="10")
    with pytest.raises(ValueError):
        cache.set("k", 1, nx=True, xx=True)


def test_nx_xx_and_add(cache: Any) -> None:
    assert cache.set("k", 1, xx=True) is False
    assert cache.get("k") is None
    assert cache.set("k", 1, nx=True) is True
    assert cache.set("k", 2, nx=True) is False
    assert cache.add("k", 3) is False
    assert cache.set("k", 4, xx=True) is True
    assert cache.get("k") == 4
    assert cache.add("other", 5, ttl=10) is True
    assert 9 < cache.ttl("other") <= 10


def test_delete_exists_and_delete_many(cache: Any) -> None:
    cache.set_many({"a": 1, "b": 2, "c": 3})
    assert cache.exists("a") is True
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    assert cache.exists("a") is False
    assert cache.delete_many(["b", "c", "zz"]) == 2
    assert cache.delete_many([]) == 0


def test_get_many_and_set_many(cache: Any) -> None:
    cache.set_many({"a": 1, b"b": "two", "c": None}, ttl=30)
    assert cache.get_many(["a", b"b", "c", "missing"]) == {"a": 1, b"b": "two", "c": None}
    assert 29 < cache.ttl("a") <= 30
    assert cache.get_many([]) == {}
    cache.set_many({})


def test_counters_read_back_as_int(cache: Any) -> None:
    assert cache.incr("hits") == 1
    assert cache.incr("hits", 10) == 11
    assert cache.decr("hits", 2) == 9
    assert cache.decr("fresh") == -1
    assert cache.get("hits") == 9
    assert type(cache.get("hits")) is int
    cache.set("preset", 41)
    assert cache.incr("preset") == 42
    cache.set("word", "forty")
    with pytest.raises(CacheResponseError, match="not an integer"):
        cache.incr("word")
    with pytest.raises(TypeError):
        cache.incr("hits", 1.5)


def test_incr_keeps_the_ttl(cache: Any) -> None:
    cache.set("counter", 1, ttl=30)
    cache.incr("counter")
    assert 29 < cache.ttl("counter") <= 30


def test_expire_and_touch(cache: Any) -> None:
    assert cache.expire("missing", 10) is False
    cache.set("k", 1)
    assert cache.expire("k", 20) is True
    assert 19 < cache.ttl("k") <= 20
    assert cache.touch("k", datetime.timedelta(seconds=5)) is True
    assert 4 < cache.ttl("k") <= 5
    assert cache.touch("k") is True
    assert cache.ttl("k") == math.inf
    assert cache.expire("k", None) is True
    assert cache.expire("k", 0) is True
    assert cache.get("k") is None
    assert cache.touch("missing") is False


def test_namespaces_are_isolated_and_cleared_alone(make_cache: Any) -> None:
    plain = make_cache()
    one = make_cache(namespace="one")
    two = make_cache(namespace="t*o")
    plain.set("k", "plain")
    one.set("k", "one")
    two.set("k", "two")
    assert (plain.get("k"), one.get("k"), two.get("k")) == ("plain", "one", "two")
    assert plain.get("one:k") == "one"
    assert sorted(two.keys()) == ["k"]
    two.clear()
    assert two.get("k") is None
    assert (plain.get("k"), one.get("k")) == ("plain", "one")
    one.clear()
    assert one.get("k") is None
    assert plain.get("k") == "plain"
    plain.clear()
    assert plain.get("k") is None


def test_keys_scans_everything_in_batches_without_prefix(make_cache: Any) -> None:
    cache = make_cache(namespace="scan")
    cache.set_many({f"item:{i}": i for i in range(1200)})
    cache.set_many({f"other:{i}": i for i in range(10)})
    make_cache().set("outside", 1)
    keys = list(cache.keys("item:*"))
    assert len(keys) == len(set(keys)) == 1200
    assert set(keys) == {f"item:{i}" for i in range(1200)}
    assert sorted(cache.keys("other:?")) == [f"other:{i}" for i in range(10)]
    assert len(list(cache.keys())) == 1210


def test_values_are_shared_between_clients(make_cache: Any) -> None:
    writer = make_cache(namespace="shared")
    reader = make_cache(namespace="shared")
    writer.set("k", {"v": 1})
    assert reader.get("k") == {"v": 1}


def test_get_or_set_computes_once(cache: Any) -> None:
    calls: list[int] = []

    def load() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    assert cache.get_or_set("k", load, ttl=30) == {"n": 1}
    assert cache.get_or_set("k", load, ttl=30) == {"n": 1}
    assert calls == [1]
    assert cache.get_or_set("plain", "default") == "default"
    cache.set("none", None)
    assert cache.get_or_set("none", load) is None
    assert calls == [1]


def test_cached_decorator(cache: Any) -> None:
    calls: list[tuple[int, int]] = []

    @cache.cached(ttl=30)
    def add(a: int, b: int = 0) -> int:
        calls.append((a, b))
        return a + b

    assert add(1, 2) == 3
    assert add(1, b=2) == 3
    assert add(a=1, b=2) == 3
    assert add(2) == 2
    assert calls == [(1, 2), (2, 0)]
    add.invalidate(1, 2)
    assert add(1, 2) == 3
    assert calls == [(1, 2), (2, 0), (1, 2)]

    @cache.cached(key="user:{user_id}")
    def user(user_id: int) -> str:
        return f"user {user_id}"

    assert user(7) == "user 7"
    assert cache.get("user:7") == "user 7"


def test_ping_and_stats(cache: Any, backend: str) -> None:
    assert cache.ping() is True
    cache.set("a", 1)
    cache.get("a")
    cache.get("missing")
    stats = cache.stats()
    assert stats["backend"] == {"resp-redis": "store", "store-socket": "store"}.get(
        backend, backend
    )
    assert stats["keys"] >= 1
    assert isinstance(stats["used_memory"], int)
    assert isinstance(stats["hits"], int) and stats["hits"] >= 1
    assert isinstance(stats["misses"], int) and stats["misses"] >= 1
    assert isinstance(stats["memory_limit"], int)


def test_clear_without_namespace_flushes(make_cache: Any) -> None:
    cache = make_cache()
    make_cache(namespace="x").set("k", 1)
    cache.set("k", 1)
    cache.clear()
    assert list(cache.keys()) == []


def test_context_manager_closes_and_reconnects(make_cache: Any) -> None:
    cache = make_cache()
    cache.set("k", 1)
    cache.close()
    assert cache.get("k") == 1


# -- pub/sub ---------------------------------------------------------------------------------


def next_message(subscription: Any) -> Message:
    message = subscription.get(10.0)
    assert isinstance(message, Message), "no message within 10 s"
    return message


def test_publish_reaches_channel_and_pattern_subscribers(cache: Any) -> None:
    channel = f"news-{uuid.uuid4().hex}"
    with cache.subscribe(channel, patterns=[f"{channel}.*"]) as subscription:
        assert cache.publish(channel, "hello") == 1
        assert cache.publish(f"{channel}.sports", {"score": [2, 1]}) == 1
        assert cache.publish(f"{channel}.weather", 42) == 1
        assert cache.publish(f"{channel}-other", b"unheard") == 0
        assert next_message(subscription) == Message(channel, "hello")
        assert next_message(subscription) == Message(
            f"{channel}.sports", {"score": [2, 1]}, f"{channel}.*"
        )
        assert next_message(subscription) == Message(f"{channel}.weather", 42, f"{channel}.*")
        assert subscription.get(0.05) is None


def test_channels_are_namespaced_like_keys(make_cache: Any) -> None:
    ours, theirs = make_cache(namespace="ours"), make_cache(namespace="theirs")
    with ours.subscribe("events", patterns=["ev*"]) as subscription:
        assert theirs.publish("events", "not for us") == 0
        assert ours.publish("events", "for us") == 2
        received = {next_message(subscription), next_message(subscription)}
        assert received == {Message("events", "for us"), Message("events", "for us", "ev*")}


def test_a_closed_subscription_receives_nothing(cache: Any) -> None:
    channel = f"closing-{uuid.uuid4().hex}"
    subscription = cache.subscribe(channel)
    subscription.open()
    assert cache.publish(channel, 1) == 1
    subscription.close()
    # The server notices the closed connection on its next turn.
    wait_until(lambda: cache.publish(channel, 2) == 0, 10.0)
    with pytest.raises(ValueError, match="at least one channel or pattern"):
        cache.subscribe()


# -- rate limits ------------------------------------------------------------------------------


def test_rate_limit_allows_a_burst_of_limit_then_refuses(make_cache: Any) -> None:
    cache = make_cache(namespace="rl")
    verdicts = [cache.rate_limit("api", 3, 60) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[0].limit == 3
    assert 19.9 <= verdicts[0].reset <= 20.0  # one request takes a third of the period
    refused = verdicts[3]
    assert 19.0 < refused.retry_after <= 20.0 and 59.0 < refused.reset <= 60.0
    assert verdicts[0].retry_after == 0.0
    assert cache.rate_limit("api", 3, 60, cost=0).remaining == 0  # only looks
    assert 0 < cache.ttl("api") <= 60  # the state is a key of the namespace, with a TTL
    assert make_cache().rate_limit("api", 3, 60).allowed  # another namespace, another key


def test_rate_limit_refills_one_request_per_interval(cache: Any) -> None:
    assert cache.rate_limit("slow", 1, 0.2).allowed
    assert not cache.rate_limit("slow", 1, 0.2).allowed
    wait_until(lambda: cache.rate_limit("slow", 1, 0.2).allowed, timeout=5.0)


def test_rate_limit_costs_and_refuses_bad_arguments_before_io(cache: Any) -> None:
    assert cache.rate_limit("heavy", 10, 60, cost=7).remaining == 3
    assert not cache.rate_limit("heavy", 10, 60, cost=4).allowed
    assert cache.rate_limit("heavy", 10, 60, cost=3).allowed
    with pytest.raises(ValueError, match="cost must be between 0 and the limit"):
        cache.rate_limit("k", 2, 60, cost=3)
    with pytest.raises(ValueError, match="limit must be between"):
        cache.rate_limit("k", 0, 60)
    with pytest.raises(ValueError, match="period must be > 0"):
        cache.rate_limit("k", 2, 0)
    with pytest.raises(TypeError, match="limit must be an int"):
        cache.rate_limit("k", 2.5, 60)
    with pytest.raises(TypeError, match="period must be seconds"):
        cache.rate_limit("k", 2, True)
    minute = cache.rate_limit("td", 2, datetime.timedelta(minutes=1))
    assert (minute.remaining, minute.reset) == (1, 30.0)
    cache.set("text", "not a state")
    with pytest.raises(CacheResponseError, match="not a rate limit state"):
        cache.rate_limit("text", 2, 60)


def test_incr_window_counts_until_its_window_ends(cache: Any) -> None:
    assert [cache.incr_window("w", 60) for _ in range(3)] == [1, 2, 3]
    assert cache.incr_window("w", 60, delta=5) == 8
    assert cache.get("w") == 8
    assert 0 < cache.ttl("w") <= 60
    assert cache.incr_window("short", 0.2) == 1
    assert cache.incr_window("short", 0.2) == 2  # the window does not move
    wait_until(lambda: cache.incr_window("short", 0.2) == 1, timeout=5.0)
    cache.set("forever", 41)
    assert cache.incr_window("forever", 60) == 42
    assert 0 < cache.ttl("forever") <= 60  # a counter without TTL gets the window's
    with pytest.raises(TypeError, match="delta must be an int"):
        cache.incr_window("w", 60, delta=1.5)
