"""``cache.lock()`` on every backend, with both clients: the same calls mean the same thing.

Backends: ``store`` (``blinkstore serve``: locks parked in the store), ``resp-redis`` (our
RESP backend talking to a real redis-server: lock keys), ``redis`` (redis-py against
redis-server) and ``memory``. What only the store does (waiters parked in arrival order, a
closed connection freeing its lock at once) is tested in tests/unit/test_locks.py and
tests/e2e/test_gunicorn_locks.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from blinkstore_gunicorn.client import AsyncCache, Cache, LockError, LockNotOwnedError
from blinkstore_gunicorn.protocol import resp
from harness.processes import REDIS_SERVER, RedisProcess, StoreProcess, short_tempdir
from tests.integration.client_support import Blocking, RestartableStore, wait_until

# The backends (and the servers behind them) of the client semantics suite.
from tests.integration.test_client_semantics import (  # noqa: F401 (fixtures)
    _url,
    backend,
    redis_server,
    store_server,
)


class BlockingLock:
    """An :class:`AsyncLock` driven like a :class:`Lock` (each call runs on ``loop``)."""

    def __init__(self, lock: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._lock = lock
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._lock, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: self._loop.run_until_complete(attr(*args, **kwargs))

    def __enter__(self) -> BlockingLock:
        self._loop.run_until_complete(self._lock.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.run_until_complete(self._lock.__aexit__(*exc))


class BlockingCache(Blocking):
    """:class:`Blocking` whose ``lock()`` hands out :class:`BlockingLock` objects."""

    def lock(self, *args: Any, **kwargs: Any) -> BlockingLock:
        return BlockingLock(self._cache.lock(*args, **kwargs), self._loop)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:  # noqa: F811 (the fixture)
    return _url(backend, request)


class Factory:
    """Caches of one flavour on one backend, each with its own connections."""

    def __init__(self, flavour: str, url: str) -> None:
        self.flavour = flavour
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.made: list[Any] = []

    def __call__(self, **kwargs: Any) -> Any:
        cache: Any
        if self.flavour == "sync":
            cache = Cache(self.url, **kwargs)
        else:
            cache = BlockingCache(AsyncCache(self.url, **kwargs), self.loop)
        self.made.append(cache)
        return cache

    def acquire_elsewhere(self, name: str, outcome: list[bool]) -> threading.Thread:
        """A thread with a cache of its own that waits for ``name`` and holds it until
        the thread ends; ``outcome`` receives what ``acquire`` returned."""

        async def in_a_loop() -> None:
            async with AsyncCache(self.url) as cache:
                outcome.append(await cache.lock(name, timeout=30).acquire())

        def blocking() -> None:
            with Cache(self.url) as cache:
                outcome.append(cache.lock(name, timeout=30).acquire())

        run = blocking if self.flavour == "sync" else lambda: asyncio.run(in_a_loop())
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def close(self) -> None:
        for cache in self.made:
            cache.close()
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def make_cache(request: pytest.FixtureRequest, url: str) -> Iterator[Factory]:
    factory = Factory(request.param, url)
    try:
        yield factory
    finally:
        factory.close()


def _name() -> str:
    return f"lock-{uuid.uuid4().hex}"


def test_one_holder_at_a_time(make_cache: Factory) -> None:
    cache, other = make_cache(), make_cache()
    name = _name()
    lock = cache.lock(name, timeout=30)
    assert [lock.locked(), lock.owned(), lock.token] == [False, False, None]
    assert lock.acquire() is True
    assert lock.locked() and lock.owned() and lock.token
    rival = other.lock(name, timeout=30)
    assert rival.acquire(blocking=False) is False
    assert rival.acquire(blocking_timeout=0.05) is False
    assert rival.locked() and not rival.owned()
    lock.release()
    assert not lock.locked()
    assert rival.acquire(blocking=False) is True
    rival.release()


def test_context_manager_and_the_error_when_it_cannot_acquire(make_cache: Factory) -> None:
    cache = make_cache()
    name = _name()
    with cache.lock(name, timeout=30) as held:
        assert held.owned()
        with (
            pytest.raises(LockError, match=r"blocking_timeout=0\.05"),
            cache.lock(name, blocking_timeout=0.05),
        ):
            pytest.fail("acquired a held lock")
        with pytest.raises(LockError, match="blocking=False"), cache.lock(name, blocking=False):
            pytest.fail("acquired a held lock")
    assert not held.locked()


def test_a_waiter_gets_the_lock_when_it_is_released(make_cache: Factory) -> None:
    cache = make_cache()
    name = _name()
    holder = cache.lock(name, timeout=30)
    holder.acquire()
    outcome: list[bool] = []
    thread = make_cache.acquire_elsewhere(name, outcome)
    try:
        holder.release()
    finally:
        thread.join(30)
    assert outcome == [True]


def test_an_expired_lock_cannot_release_or_extend_the_next_holders(make_cache: Factory) -> None:
    cache, other = make_cache(), make_cache()
    name = _name()
    stale = cache.lock(name, timeout=0.05)
    stale.acquire()
    wait_until(lambda: not stale.locked(), timeout=10)
    fresh = other.lock(name, timeout=30)
    assert fresh.acquire(blocking=False)
    assert not stale.owned()
    with pytest.raises(LockNotOwnedError, match="no longer held"):
        stale.extend(10)
    with pytest.raises(LockNotOwnedError, match="no longer held"):
        stale.release()
    assert fresh.owned()
    with pytest.raises(LockError, match="not acquired"):
        stale.release()
    fresh.release()


def test_extend_keeps_the_lock_past_its_first_timeout(make_cache: Factory) -> None:
    cache = make_cache()
    name = _name()
    lock = cache.lock(name, timeout=0.2)
    lock.acquire()
    assert lock.extend(60, replace_ttl=True) is True
    assert lock.extend(1) is True
    # A lock taken after the extension with the first timeout expires; ours must not.
    control = cache.lock(_name(), timeout=0.2)
    control.acquire()
    wait_until(lambda: not control.locked(), timeout=10)
    assert lock.owned()
    lock.release()


def test_misuse_is_a_clear_error(make_cache: Factory) -> None:
    cache = make_cache()
    lock = cache.lock(_name())
    with pytest.raises(LockError, match="not acquired"):
        lock.release()
    with pytest.raises(LockError, match="not acquired"):
        lock.extend(1)
    lock.acquire()
    with pytest.raises(LockError, match="no timeout"):
        lock.extend(1)
    with pytest.raises(LockError, match="already acquired by this object"):
        lock.acquire(blocking=False)
    lock.release()
    with pytest.raises(ValueError, match="timeout must be a finite number of seconds > 0"):
        cache.lock("x", timeout=0)
    with pytest.raises(ValueError, match="blocking_timeout must be"):
        cache.lock("x", blocking_timeout=-1)
    with pytest.raises(TypeError, match="timeout must be a number"):
        cache.lock("x", timeout="10")


def test_namespaces_keep_locks_apart(make_cache: Factory) -> None:
    first, second = make_cache(namespace="a"), make_cache(namespace="b")
    name = _name()
    with first.lock(name):
        assert second.lock(name).acquire(blocking=False) is True


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_our_lock_and_redis_pys_lock_exclude_each_other(
    redis_server: RedisProcess,  # noqa: F811 (the fixture)
) -> None:
    name = _name()
    with Cache(redis_server.redis_url) as cache:
        theirs = redis.Redis(unix_socket_path=redis_server.unix_path).lock(name, timeout=30)
        assert theirs.acquire(blocking=False)
        ours = cache.lock(name, timeout=30)
        assert ours.locked() and not ours.owned()
        assert ours.acquire(blocking=False) is False
        theirs.release()
        assert ours.acquire(blocking=False) is True
        assert theirs.acquire(blocking=False) is False
        ours.release()


def test_a_waiter_that_hangs_up_is_skipped(store_server: StoreProcess) -> None:  # noqa: F811
    """A parked request whose client went away leaves the queue: the lock passes to the next
    waiter, not to a dead one."""
    path = store_server.unix_path
    assert path is not None

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(path)
        return sock

    def ask(sock: socket.socket, *args: str | bytes) -> bytes:
        sock.sendall(resp.encode_command(*args))
        return sock.recv(100)

    name = _name()
    with connect() as holder, connect() as gone, connect() as next_one:
        token = ask(holder, "BLINK.LOCK", name)[1:-2]
        for waiter in (gone, next_one):
            waiter.sendall(resp.encode_command("BLINK.LOCK", name, "BLOCK", "0"))
        assert ask(holder, "PING") == b"+PONG\r\n"  # both requests are parked by now
        gone.shutdown(socket.SHUT_WR)
        assert gone.recv(100) == b""  # the store has read the EOF and closed its side
        assert ask(holder, "BLINK.UNLOCK", name, token) == b":1\r\n"
        # Passed on by the UNLOCK itself: whoever holds it now is the live waiter.
        now_held_by = ask(holder, "BLINK.LOCKTOKEN", name)
        assert now_held_by.startswith(b":")
        assert next_one.recv(100) == now_held_by


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_store_restart_ends_the_lock(flavour: str) -> None:
    with short_tempdir() as directory:
        store = RestartableStore(directory)
        store.start()
        factory = Factory(flavour, store.url)
        try:
            lock = factory().lock(_name())
            assert lock.acquire()
            store.kill()
            store.start()
            assert not lock.locked()
            with pytest.raises(LockNotOwnedError, match="connection was lost"):
                lock.release()
            assert lock.acquire(blocking=False)  # the object is free to try again
            lock.release()
        finally:
            factory.close()
            store.kill()
