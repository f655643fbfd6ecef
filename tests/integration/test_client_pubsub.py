"""``publish`` and ``subscribe`` on every backend, with both clients.

Backends as in ``test_client_semantics.py``: the store, our RESP backend on redis-server,
redis-py on redis-server, and ``memory://``. An :class:`AsyncCache` runs through
:class:`Blocking` (its subscription through :class:`BlockingSubscription`), so each test body
checks both clients.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blinkstore_gunicorn.client import AsyncCache, Cache
from blinkstore_gunicorn.client._core import Message
from harness.processes import (
    REDIS_SERVER,
    RedisProcess,
    StoreProcess,
    blinkstore_process,
    redis_server_process,
    short_tempdir,
)
from tests.integration.client_support import Blocking, RestartableStore, wait_until

BACKENDS = ["store", "resp-redis", "redis", "memory"]
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def store_server() -> Iterator[StoreProcess]:
    with blinkstore_process() as server:
        yield server


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisProcess]:
    with redis_server_process() as server:
        yield server


class BlockingSubscription:
    """An ``AsyncSubscription`` used like a ``Subscription``."""

    def __init__(self, subscription: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._subscription = subscription
        self._loop = loop

    def open(self) -> None:
        self._loop.run_until_complete(self._subscription.open())

    def get(self, timeout: float | None = None) -> Message | None:
        message: Message | None = self._loop.run_until_complete(self._subscription.get(timeout))
        return message

    def close(self) -> None:
        self._loop.run_until_complete(self._subscription.close())

    def __enter__(self) -> BlockingSubscription:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    backend = request.param
    if backend != "memory" and REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    if backend == "store":
        return str(request.getfixturevalue("store_server").url)
    if backend == "resp-redis":
        return str(request.getfixturevalue("redis_server").url)
    if backend == "redis":
        return str(request.getfixturevalue("redis_server").redis_url)
    return f"memory://pubsub-{uuid.uuid4().hex}"


@pytest.fixture(params=["sync", "async"])
def make_cache(request: pytest.FixtureRequest, url: str) -> Iterator[Callable[..., Any]]:
    """Caches on one backend; an async one's ``subscribe`` is wrapped to block too."""
    loop = asyncio.new_event_loop()
    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        if request.param == "sync":
            cache: Any = Cache(url, **kwargs)
        else:
            async_cache = AsyncCache(url, **kwargs)
            cache = Blocking(async_cache, loop)
            cache.subscribe = lambda *args, **kw: BlockingSubscription(
                async_cache.subscribe(*args, **kw), loop
            )
        made.append(cache)
        return cache

    try:
        yield make
    finally:
        for cache in made:
            cache.close()
        loop.close()


def next_message(subscription: Any) -> Message:
    message = subscription.get(TIMEOUT)
    assert message is not None, "no message within the timeout"
    assert isinstance(message, Message)
    return message


def test_publish_reaches_channel_and_pattern_subscribers(make_cache: Callable[..., Any]) -> None:
    cache = make_cache()
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


def test_channels_are_namespaced_like_keys(make_cache: Callable[..., Any]) -> None:
    ours, theirs = make_cache(namespace="ours"), make_cache(namespace="theirs")
    with ours.subscribe("events", patterns=["ev*"]) as subscription:
        assert theirs.publish("events", "not for us") == 0
        assert ours.publish("events", "for us") == 2
        received = {next_message(subscription), next_message(subscription)}
        assert received == {Message("events", "for us"), Message("events", "for us", "ev*")}


def test_a_closed_subscription_receives_nothing(make_cache: Callable[..., Any]) -> None:
    cache = make_cache()
    channel = f"closing-{uuid.uuid4().hex}"
    subscription = cache.subscribe(channel)
    subscription.open()
    assert cache.publish(channel, 1) == 1
    subscription.close()
    # The server notices the closed connection on its next turn.
    wait_until(lambda: cache.publish(channel, 2) == 0, TIMEOUT)


def test_subscribe_needs_a_channel_or_a_pattern(make_cache: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="at least one channel or pattern"):
        make_cache().subscribe()


@pytest.fixture
def restartable() -> Iterator[RestartableStore]:
    with short_tempdir() as directory:
        store = RestartableStore(Path(directory))
        store.start()
        try:
            yield store
        finally:
            store.kill()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_subscription_survives_a_store_restart(
    restartable: RestartableStore, flavour: str
) -> None:
    loop = asyncio.new_event_loop()
    if flavour == "sync":
        cache: Any = Cache(restartable.url)
        subscription: Any = cache.subscribe("config")
    else:
        async_cache = AsyncCache(restartable.url)
        cache = Blocking(async_cache, loop)
        subscription = BlockingSubscription(async_cache.subscribe("config"), loop)
    try:
        with subscription:
            assert cache.publish("config", "v1") == 1
            assert next_message(subscription).data == "v1"
            restartable.kill()
            restartable.start()
            # The next get() finds the connection lost, subscribes again and waits.
            assert subscription.get(0.2) is None
            assert cache.publish("config", "v2") == 1
            assert next_message(subscription).data == "v2"
    finally:
        cache.close()
        loop.close()
