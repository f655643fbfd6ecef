"""Connection behaviour of the store backends: fork, threads, gevent, asyncio pipelining,
cancellation, in-flight bound, timeouts, reconnects and ``on_error="miss"``.

Each test runs against ``blinkstore serve`` and, through the same RESP backend, a real
redis-server (the client must not depend on quirks of our own server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blinkstore_gunicorn.client import (
    AsyncCache,
    Cache,
    CacheConnectionError,
    CacheTimeoutError,
    Message,
)
from blinkstore_gunicorn.client.backends.store import StoreBackend
from blinkstore_gunicorn.client.backends.store_async import AsyncStoreBackend
from harness.processes import (
    REDIS_SERVER,
    REPO,
    RedisProcess,
    StoreProcess,
    blinkstore_process,
    redis_server_process,
    resp_command,
    short_tempdir,
)
from tests.integration.client_support import RestartableStore, wait_until
from tests.support.processes import resp_server_process


@pytest.fixture(params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    """A running store or redis-server; both are reached through our RESP backends."""
    with resp_server_process(request.param) as server_process:
        yield server_process


@pytest.fixture
def store() -> Iterator[RestartableStore]:
    """A store the test can kill and restart on the same socket path."""
    with short_tempdir() as directory:
        restartable = RestartableStore(directory)
        restartable.start()
        try:
            yield restartable
        finally:
            restartable.kill()


def _store_backend(cache: Cache) -> StoreBackend:
    assert isinstance(cache.backend, StoreBackend)
    return cache.backend


def _async_backend(cache: AsyncCache) -> AsyncStoreBackend:
    assert isinstance(cache.backend, AsyncStoreBackend)
    return cache.backend


# -- fork safety -----------------------------------------------------------------------------


def _wait_child(pid: int, timeout: float = 30.0) -> int:
    """The forked child's exit code; a child still running after ``timeout`` is killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"forked child {pid} still running after {timeout}s")


def test_os_fork_child_never_uses_the_parents_socket(server: StoreProcess | RedisProcess) -> None:
    cache = Cache(server.url)
    cache.set("k", "parent")
    parent_fds = {conn.sock.fileno() for conn in _store_backend(cache)._idle}
    assert parent_fds
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            idle_after_fork = len(_store_backend(cache)._idle)
            ok = cache.get("k") == "parent" and cache.set("k2", "child")
            child_fds = {conn.sock.fileno() for conn in _store_backend(cache)._idle}
            code = 0 if idle_after_fork == 0 and ok and child_fds else 3
        finally:
            os._exit(code)
    assert _wait_child(pid) == 0
    # The parent's connection survived the child closing its copy of the descriptor.
    assert {conn.sock.fileno() for conn in _store_backend(cache)._idle} == parent_fds
    assert cache.get("k2") == "child"
    for i in range(50):
        cache.set(f"p{i}", i)
        assert cache.get(f"p{i}") == i
    cache.close()


_SHARED: dict[str, Cache] = {}


def _count(task: int) -> list[int]:
    cache = _SHARED["cache"]
    seen = []
    for i in range(100):
        seen.append(cache.incr("counter"))
        marker = f"marker:{task}:{i}"
        assert cache.get(marker) is None
        cache.set(marker, [os.getpid(), i])
        assert cache.get(marker) == [os.getpid(), i]
    return seen


def test_multiprocessing_fork_pool_shares_one_preforked_client(
    server: StoreProcess | RedisProcess,
) -> None:
    cache = Cache(server.url)
    cache.set("counter", 0)  # the parent holds an open connection when forking
    _SHARED["cache"] = cache
    try:
        context = multiprocessing.get_context("fork")
        with context.Pool(4) as pool:
            results = pool.map(_count, range(4), chunksize=1)
    finally:
        _SHARED.clear()
    counts = sorted(n for chunk in results for n in chunk)
    assert counts == list(range(1, 401))
    assert cache.get("counter") == 400
    cache.close()


def test_async_client_after_fork_reconnects_in_child(server: StoreProcess | RedisProcess) -> None:
    cache = AsyncCache(server.url)
    asyncio.run(cache.set("k", "v"))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            assert all(slot is None for slot in _async_backend(cache)._slots)
            code = 0 if asyncio.run(cache.get("k")) == "v" else 3
        finally:
            os._exit(code)
    assert _wait_child(pid) == 0
    # A new event loop in the parent also gets a fresh connection.
    assert asyncio.run(cache.get("k")) == "v"


# -- threads and gevent ----------------------------------------------------------------------


def test_threads_share_a_small_pool_without_mixing_replies(
    server: StoreProcess | RedisProcess,
) -> None:
    cache = Cache(server.url, max_connections=8)
    errors: list[BaseException] = []
    in_use: list[int] = []

    def work(n: int) -> None:
        try:
            for i in range(300):
                key = f"t{n}:{i}"
                cache.set(key, [n, i])
                assert cache.get(key) == [n, i]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    in_use.append(len(_store_backend(cache)._idle))
    assert not errors
    assert 1 <= in_use[0] <= 8
    cache.close()


def test_works_under_gevent_monkeypatching(server: StoreProcess | RedisProcess) -> None:
    script = textwrap.dedent(
        f"""
        from gevent import monkey
        monkey.patch_all()
        import gevent, socket, time
        from blinkstore_gunicorn.client import Cache
        cache = Cache({server.url!r})
        def work(n):
            for i in range(50):
                cache.set(f"g{{n}}:{{i}}", n * i)
                assert cache.get(f"g{{n}}:{{i}}") == n * i
        greenlets = [gevent.spawn(work, n) for n in range(20)]
        gevent.joinall(greenlets, timeout=30, raise_error=True)
        assert all(g.successful() for g in greenlets)
        conns = cache.backend._idle
        assert conns and all(type(c.sock).__module__.startswith("gevent") for c in conns)
        # A greenlet blocked on the store must not block the others.
        ticks = []
        def ticker():
            for _ in range(5):
                ticks.append(time.monotonic()); gevent.sleep(0.01)
        t = gevent.spawn(ticker)
        for i in range(200):
            cache.get("g1:1")
        t.join()
        assert len(ticks) == 5
        # A gevent.Timeout interrupting a call mid-reply must not leave that reply to the
        # next caller: the interrupted connection is closed, not returned to the pool.
        cache.set("big", b"B" * (4 * 1024 * 1024))
        for _ in range(5):
            with gevent.Timeout(0.0005, False):
                cache.get("big")
            assert cache.get("g1:1") == 1
        print("ok", len(conns))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


# -- asyncio pipelining ----------------------------------------------------------------------


async def _with_cache(url: str, **kwargs: Any) -> AsyncCache:
    cache = AsyncCache(url, **kwargs)
    await cache.ping()
    return cache


def test_many_coroutines_share_one_pipelined_connection(
    server: StoreProcess | RedisProcess,
) -> None:
    async def main() -> None:
        # Reads over the socket (not from the shared-memory region): the pipelining is tested.
        cache = await _with_cache(server.url + "?shm=off")
        backend = _async_backend(cache)
        pipeline = backend._slots[0]
        assert pipeline is not None
        writes: list[int] = []
        transport = pipeline._transport
        assert transport is not None
        original = transport.write

        def counting_write(data: Any) -> None:
            writes.append(len(data))
            original(data)

        transport.write = counting_write  # type: ignore[method-assign]
        await cache.set_many({f"k{i}": i for i in range(200)})
        writes.clear()
        results = await asyncio.gather(*(cache.get(f"k{i}") for i in range(200)))
        assert results == list(range(200))
        # 200 requests went out in a handful of writes on the one connection.
        assert 1 <= len(writes) <= 5
        assert backend._slots[0] is pipeline
        await cache.close()

    asyncio.run(main())


def test_cancelled_waiters_never_desynchronize_the_connection(
    server: StoreProcess | RedisProcess,
) -> None:
    async def main() -> None:
        cache = await _with_cache(server.url)
        big = b"B" * (4 * 1024 * 1024)
        await cache.set("big", big)
        await cache.set_many({f"k{i}": i for i in range(300)})
        pipeline = _async_backend(cache)._slots[0]
        assert pipeline is not None

        # A large reply in flight when its waiter is cancelled.
        task = asyncio.create_task(cache.get("big"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert pipeline.pending, "the request should be in flight"
        task.cancel()
        assert await cache.get("k1") == 1

        # Many cancellations at random points of a burst.
        for round_ in range(5):
            tasks = [asyncio.create_task(cache.get(f"k{i}")) for i in range(300)]
            await asyncio.sleep(0)
            for i, t in enumerate(tasks):
                if (i + round_) % 3 == 0:
                    t.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            for i, result in enumerate(done):
                if not isinstance(result, asyncio.CancelledError):
                    assert result == i
            assert await cache.get("k299") == 299
        assert await cache.get("big") == big
        assert _async_backend(cache)._slots[0] is pipeline
        await cache.close()

    asyncio.run(main())


def test_in_flight_requests_are_bounded(server: StoreProcess | RedisProcess) -> None:
    async def main() -> None:
        cache = await _with_cache(server.url + "?shm=off", max_in_flight=4)
        pipeline = _async_backend(cache)._slots[0]
        assert pipeline is not None
        await cache.set_many({f"k{i}": i for i in range(100)})
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, len(pipeline.pending))
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(cache.get(f"k{i}") for i in range(100)))
        watcher.cancel()
        assert results == list(range(100))
        assert 1 <= peak <= 4
        await cache.close()

    asyncio.run(main())


# -- timeouts, outages, reconnects -----------------------------------------------------------


@pytest.fixture
def silent_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Unix socket that accepts connections (backlog) but never answers."""
    path = Path(tmp_path_factory.mktemp("silent")) / "silent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(16)
    try:
        yield f"unix://{path}"
    finally:
        listener.close()


def test_sync_operation_timeout(silent_socket: str) -> None:
    cache = Cache(silent_socket, timeout=0.2)
    with pytest.raises(CacheTimeoutError, match=r"within 0.2s"):
        cache.get("k")
    assert isinstance(CacheTimeoutError("x"), TimeoutError)


def test_async_operation_timeout_fails_every_waiter(silent_socket: str) -> None:
    async def main() -> None:
        cache = AsyncCache(silent_socket, timeout=0.2)
        results = await asyncio.gather(
            *(cache.get(f"k{i}") for i in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, CacheTimeoutError) for r in results), results
        await cache.close()

    asyncio.run(main())


def test_unreachable_store_raises_connection_error(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/nobody.sock"
    with pytest.raises(CacheConnectionError, match="cannot connect"):
        Cache(url).get("k")

    async def main() -> None:
        with pytest.raises(CacheConnectionError, match="cannot connect"):
            await AsyncCache(url).get("k")

    asyncio.run(main())


def test_sync_client_survives_a_store_restart(store: RestartableStore) -> None:
    cache = Cache(store.url)
    cache.set("k", 1)
    store.kill()
    with pytest.raises(CacheConnectionError):
        cache.get("k")
    store.start()

    def works() -> bool:
        try:
            return cache.set("k", 2) and cache.get("k") == 2
        except CacheConnectionError:
            return False

    wait_until(works, timeout=5)
    cache.close()


def test_async_client_survives_a_store_restart(store: RestartableStore) -> None:
    async def main() -> None:
        cache = await _with_cache(store.url)
        await cache.set("k", 1)
        store.kill()
        with pytest.raises(CacheConnectionError):
            await cache.get("k")
        store.start()
        deadline = time.monotonic() + 5
        while True:
            try:
                await cache.set("k", 2)
                assert await cache.get("k") == 2
                break
            except CacheConnectionError:
                assert time.monotonic() < deadline, "no reconnect within 5s"
                await asyncio.sleep(0.02)
        await cache.close()

    asyncio.run(main())


def test_writes_and_counters_wait_for_a_restarting_store(store: RestartableStore) -> None:
    # A generous timeout: starting a store takes a Python start-up on a loaded machine.
    cache = Cache(store.url, on_error="miss", timeout=20.0)
    cache.set("k", "v")
    store.kill()
    assert cache.get("k", "miss") == "miss"  # reads serve misses, without waiting
    restarter = threading.Thread(target=store.start)
    restarter.start()
    try:
        assert cache.incr("n") == 1  # waited for the new store instead of raising
        assert cache.set("k", "again") is True
    finally:
        restarter.join()
    assert cache.get("k") == "again"
    cache.close()


def test_async_writes_and_counters_wait_for_a_restarting_store(store: RestartableStore) -> None:
    async def main() -> None:
        cache = await _with_cache(store.url, on_error="miss", timeout=20.0)
        await cache.set("k", "v")
        store.kill()
        assert await cache.get("k", "miss") == "miss"
        restarter = threading.Thread(target=store.start)
        restarter.start()
        try:
            counts = await asyncio.gather(*(cache.incr("n") for _ in range(20)))
        finally:
            restarter.join()
        assert sorted(counts) == list(range(1, 21))
        await cache.close()

    asyncio.run(main())


def test_waiting_for_a_store_that_does_not_come_back_is_bounded(tmp_path: Path) -> None:
    cache = Cache(f"unix://{tmp_path}/nobody.sock", on_error="miss", timeout=0.3)
    with pytest.raises(CacheConnectionError, match="cannot connect"):
        cache.incr("n")  # waited up to 0.3 s for a restart that did not come
    assert cache.set("k", 1) is False
    assert cache.get("k", "miss") == "miss"


def test_on_error_miss_logs_once_per_outage(
    store: RestartableStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="blinkstore_gunicorn.client")
    # Reads over the socket: a SIGKILLed `blinkstore serve` has no supervisor to revoke its
    # region, so a client that mapped it could still answer "back" from it (documented).
    cache = Cache(store.url + "?shm=off", on_error="miss")
    cache.set("k", "v")
    store.kill()
    for _ in range(20):
        assert cache.get("k", "fallback") == "fallback"
        assert cache.set("k", "new") is False
        assert cache.get_many(["k"]) == {}
        assert cache.delete("k") is False
        assert cache.ping() is False
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1
    store.start()
    wait_until(lambda: cache.set("k", "back"), timeout=20)
    assert cache.get("k") == "back"
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    store.kill()
    # Its region may answer until its heartbeat is stale (half a second), then the socket.
    wait_until(lambda: cache.get("k") is None, timeout=5)
    assert cache.get("k") is None
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 2
    cache.close()


def test_async_on_error_miss(store: RestartableStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="blinkstore_gunicorn.client")

    async def main() -> None:
        cache = await _with_cache(store.url, on_error="miss")
        store.kill()
        for _ in range(10):
            assert await cache.get("k", 7) == 7
            assert await cache.set("k", 1) is False
            assert [key async for key in cache.keys()] == []  # noqa: SIM118 (our keys())
        unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(unreachable) == 1
        await cache.close()

    asyncio.run(main())


# -- authentication --------------------------------------------------------------------------


@pytest.fixture(params=["store", "redis"])
def password_server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    if request.param == "redis":
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed")
        with redis_server_process("--requirepass", "s3cret") as redis_server:
            yield redis_server
    else:
        with blinkstore_process("--password", "s3cret") as store_process:
            yield store_process


def test_password_in_url_authenticates(password_server: StoreProcess | RedisProcess) -> None:
    good = f"{password_server.url}?password=s3cret"
    bad = f"{password_server.url}?password=wrong"
    with Cache(good) as cache:
        cache.set("k", 1)
        assert cache.get("k") == 1
    with pytest.raises(CacheConnectionError, match="authentication") as info:
        Cache(bad).get("k")
    assert "wrong" not in str(info.value)
    assert "s3cret" not in repr(Cache(good))

    async def main() -> None:
        async with AsyncCache(good) as cache:
            assert await cache.get("k") == 1
        with pytest.raises(CacheConnectionError, match="authentication"):
            await AsyncCache(bad).get("k")

    asyncio.run(main())


# -- more transports and failure shapes ------------------------------------------------------


def test_tcp_url_sync_and_async() -> None:
    with blinkstore_process(unix=False, tcp=True) as store_process:
        url = store_process.tcp_url
        with Cache(url) as cache:
            cache.set("k", "tcp")
            assert cache.get("k") == "tcp"

        async def main() -> None:
            async with AsyncCache(url) as acache:
                assert await acache.get("k") == "tcp"
                assert await asyncio.gather(*(acache.incr("n") for _ in range(50)))

        asyncio.run(main())
        with Cache(url) as cache:
            assert cache.get("n") == 50


@pytest.fixture
def slow_redis() -> Iterator[RedisProcess]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    with redis_server_process("--enable-debug-command", "yes") as redis_server:
        yield redis_server


def _answers(cache: Cache) -> bool:
    try:
        return cache.ping()
    except CacheConnectionError:
        return False


# Long, so that a loaded machine cannot delay the caller past it, or have the probe below take
# a slow server for a stalled one; the tests wait for its end on a condition.
STALL = 3.0


def _stall(server: RedisProcess) -> socket.socket:
    """Make the single-threaded server unresponsive for :data:`STALL` seconds (DEBUG SLEEP);
    return once a probe PING goes unanswered, so the stall has surely begun."""
    sock = server.connect()
    sock.sendall(resp_command("DEBUG", "SLEEP", str(STALL)))
    with server.connect(timeout=0.5) as probe:
        while True:
            probe.sendall(resp_command("PING"))
            try:
                probe.recv(64)
            except TimeoutError:
                return sock
            time.sleep(0.005)


def test_a_late_reply_never_reaches_the_next_sync_caller(slow_redis: RedisProcess) -> None:
    cache = Cache(slow_redis.url, timeout=0.2)
    cache.set("a", "A")
    cache.set("b", "B")
    staller = _stall(slow_redis)
    try:
        with pytest.raises(CacheTimeoutError):
            cache.get("a")
    finally:
        staller.close()
    wait_until(lambda: _answers(cache), timeout=STALL + 10)
    assert [cache.get("b") for _ in range(20)] == ["B"] * 20
    cache.close()


def test_a_late_reply_never_reaches_the_next_async_caller(slow_redis: RedisProcess) -> None:
    async def main() -> None:
        cache = await _with_cache(slow_redis.url, timeout=0.2)
        await cache.set("a", "A")
        await cache.set("b", "B")
        staller = _stall(slow_redis)
        try:
            with pytest.raises(CacheTimeoutError):
                await cache.get("a")
        finally:
            staller.close()
        deadline = time.monotonic() + STALL + 10
        while True:
            try:
                if await cache.ping():
                    break
            except CacheConnectionError:
                assert time.monotonic() < deadline, "the server did not come back"
                await asyncio.sleep(0.01)
        assert await asyncio.gather(*(cache.get("b") for _ in range(20))) == ["B"] * 20
        await cache.close()

    asyncio.run(main())


def test_on_error_miss_covers_timeouts(
    silent_socket: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="blinkstore_gunicorn.client")
    cache = Cache(silent_socket, timeout=0.1, on_error="miss")
    assert cache.get("k", "default") == "default"
    assert cache.set("k", 1) is False
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


def test_async_client_under_uvloop_with_several_connections(
    server: StoreProcess | RedisProcess,
) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        cache = await _with_cache(server.url + "?shm=off", max_connections=3)
        await cache.set_many({f"k{i}": i for i in range(300)})
        results = await asyncio.gather(*(cache.get(f"k{i}") for i in range(300)))
        assert results == list(range(300))
        slots = _async_backend(cache)._slots
        assert len(slots) == 3 and all(slot is not None and slot.usable for slot in slots)
        task = asyncio.create_task(cache.get("k1"))
        await asyncio.sleep(0)
        task.cancel()
        assert await cache.get("k2") == 2
        await cache.close()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


class DroppingServer:
    """A Unix socket server that closes the first ``drops`` connections once a request has
    arrived on them (a store killed under the request, again and again), then answers every
    request with the bulk string ``v`` (which the client's serializer hands back as bytes)."""

    def __init__(self, path: Path, drops: int) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        self.listener.settimeout(10)
        self.drops = drops
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(10)
            while request := conn.recv(65536):
                if self.drops:
                    self.drops -= 1
                    return  # closed with the request unanswered
                conn.sendall(b"$1\r\nv\r\n" * request.count(b"*"))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        self.listener.close()
        self.thread.join(10)


def test_a_request_rides_out_a_store_that_dies_again_while_it_resends(tmp_path: Path) -> None:
    server = DroppingServer(tmp_path / "s.sock", drops=2)
    try:
        cache = Cache(f"unix://{tmp_path}/s.sock", timeout=5.0)
        assert cache.get("k") == b"v"  # sent three times: two connections died under it
        cache.close()
    finally:
        server.close()


def test_async_request_rides_out_a_store_that_dies_again_while_it_resends(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        cache = AsyncCache(f"unix://{tmp_path}/s.sock", timeout=5.0)
        assert await cache.get("k") == b"v"
        await cache.close()

    server = DroppingServer(tmp_path / "s.sock", drops=2)
    try:
        asyncio.run(main())
    finally:
        server.close()


# -- pub/sub ---------------------------------------------------------------------------------


def test_subscriptions_survive_a_store_restart(store: RestartableStore) -> None:
    with Cache(store.url) as cache, cache.subscribe("config") as subscription:
        assert cache.publish("config", "v1") == 1
        assert _message_data(subscription.get(10.0)) == "v1"
        store.kill()
        store.start()
        # The next get() finds the connection lost, subscribes again, then waits.
        assert subscription.get(0.2) is None
        assert cache.publish("config", "v2") == 1
        assert _message_data(subscription.get(10.0)) == "v2"

    async def main() -> None:
        async with AsyncCache(store.url) as cache, cache.subscribe("config") as subscription:
            assert await cache.publish("config", "v3") == 1
            assert _message_data(await subscription.get(10.0)) == "v3"
            store.kill()
            store.start()
            assert await subscription.get(0.2) is None
            assert await cache.publish("config", "v4") == 1
            assert _message_data(await subscription.get(10.0)) == "v4"

    asyncio.run(main())


def _message_data(message: Message | None) -> Any:
    assert message is not None, "no message within the timeout"
    return message.data


def test_subscriptions_authenticate(password_server: StoreProcess | RedisProcess) -> None:
    url = f"{password_server.url}?password=s3cret"
    with Cache(url) as cache, cache.subscribe("private") as subscription:
        assert cache.publish("private", "sync") == 1
        assert _message_data(subscription.get(10.0)) == "sync"

    async def main() -> None:
        async with AsyncCache(url) as cache, cache.subscribe("private") as subscription:
            assert await cache.publish("private", "async") == 1
            assert _message_data(await subscription.get(10.0)) == "async"
        with pytest.raises(CacheConnectionError, match="authentication"):
            await AsyncCache(f"{password_server.url}?password=wrong").subscribe("x").open()

    asyncio.run(main())
