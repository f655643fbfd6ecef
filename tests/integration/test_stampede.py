"""Stampede protection against real servers: the BS.* commands, and get_or_set across
threads, coroutines and processes on the store, Redis and memory backends."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blinkstore_gunicorn import AsyncCache, Cache, CacheStampedeTimeout
from blinkstore_gunicorn.protocol import resp
from harness.processes import (
    REDIS_SERVER,
    RedisProcess,
    StoreProcess,
    blinkstore_process,
    redis_server_process,
)
from tests.integration.client_support import wait_until

# -- the store's commands, on raw sockets ---------------------------------------------------


class Conn:
    """A raw RESP connection to the store."""

    def __init__(self, store: StoreProcess) -> None:
        self.sock = store.connect()
        self.sock.settimeout(5)
        self.reader = resp.ReplyReader()

    def send(self, *args: str | bytes | int) -> None:
        self.sock.sendall(resp.encode_command(*args))

    def reply(self) -> Any:
        while (reply := self.reader.next_reply()) is resp.NEED_MORE:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.reader.feed(data)
        return reply

    def call(self, *args: str | bytes | int) -> Any:
        self.send(*args)
        return self.reply()

    def pending(self, wait: float = 0.1) -> bool:
        """Whether no reply arrives within ``wait`` seconds (the request is parked)."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(5)
        self.reader.feed(data)
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def store() -> Iterator[StoreProcess]:
    with blinkstore_process() as server:
        yield server


@pytest.fixture
def conns(store: StoreProcess) -> Iterator[list[Conn]]:
    made = [Conn(store) for _ in range(3)]
    made[0].call("FLUSHDB")
    yield made
    for conn in made:
        conn.close()


def test_fetch_hit_lease_and_parked_waiter_woken_by_fill(conns: list[Conn]) -> None:
    holder, waiter, other = conns
    other.call("SET", "present", "v")
    assert holder.call("BS.FETCH", "present") == [b"HIT", b"v"]
    kind, token = holder.call("BS.FETCH", "k", "LEASE", 5000, "WAIT", 5000)
    assert kind == b"LEASE" and isinstance(token, int)
    waiter.send("BS.FETCH", "k", "LEASE", 5000, "WAIT", 5000)
    assert waiter.pending()
    assert holder.call("BS.FILL", "k", token, "computed", "PX", 60000) == 1
    assert waiter.reply() == [b"HIT", b"computed"]
    assert 59000 < other.call("PTTL", "k") <= 60000


def test_release_and_disconnect_hand_the_lease_to_the_next_waiter(conns: list[Conn]) -> None:
    holder, first, second = conns
    _, token = holder.call("BS.FETCH", "k")
    first.send("BS.FETCH", "k")
    second.send("BS.FETCH", "k")
    assert first.pending() and second.pending()
    assert holder.call("BS.RELEASE", "k", token + 1000) == 0
    assert holder.call("BS.RELEASE", "k", token) == 1
    kind, first_token = first.reply()
    assert kind == b"LEASE" and first_token != token
    assert second.pending()
    first.close()  # a killed worker: its socket closes
    kind, _ = second.reply()
    assert kind == b"LEASE"


def test_plain_set_wakes_waiters_and_stale_fill_reports_zero(conns: list[Conn]) -> None:
    holder, waiter, other = conns
    _, token = holder.call("BS.FETCH", "k")
    waiter.send("BS.FETCH", "k")
    assert waiter.pending()
    assert other.call("SET", "k", "by-someone-else") == "OK"
    assert waiter.reply() == [b"HIT", b"by-someone-else"]
    assert holder.call("BS.FILL", "k", token, "late") == 0
    assert other.call("GET", "k") == b"late"


def test_wait_timeout_lease_timeout_and_nonblocking_lease(conns: list[Conn]) -> None:
    holder, waiter, other = conns
    # A lease long enough to outlast the calls below on a loaded machine.
    _, _token = holder.call("BS.FETCH", "k", "LEASE", 1500)
    assert waiter.call("BS.FETCH", "k", "WAIT", 0) == [b"TIMEOUT"]
    started = time.monotonic()
    assert waiter.call("BS.FETCH", "k", "WAIT", 150) == [b"TIMEOUT"]
    assert time.monotonic() - started > 0.1  # it waited (no upper bound: a loaded machine)
    assert other.call("BS.LEASE", "k", 1000) is None
    other.send("BS.FETCH", "k", "LEASE", 1000, "WAIT", 10000)
    kind, _ = other.reply()  # the holder's lease ran out
    assert kind == b"LEASE"
    assert waiter.call("BS.LEASE", "fresh", 1000) > 0


def test_pipelined_requests_after_a_parked_fetch_wait_their_turn(conns: list[Conn]) -> None:
    holder, waiter, _ = conns
    _, token = holder.call("BS.FETCH", "k")
    waiter.sock.sendall(resp.encode_command("BS.FETCH", "k") + resp.encode_command("PING"))
    assert waiter.pending()
    holder.call("BS.FILL", "k", token, "v")
    assert waiter.reply() == [b"HIT", b"v"]
    assert waiter.reply() == "PONG"


def test_bad_arguments_get_redis_style_errors(conns: list[Conn]) -> None:
    conn = conns[0]
    assert conn.call("BS.FETCH", "k", "LEASE") == resp.ErrorReply("ERR syntax error")
    assert conn.call("BS.FETCH", "k", "LEASE", "x") == resp.ErrorReply(
        "ERR value is not an integer or out of range"
    )
    assert conn.call("BS.FETCH", "k", "LEASE", 0).message.startswith("ERR invalid expire time")
    assert conn.call("BS.FILL", "k", "nope", "v") == resp.ErrorReply(
        "ERR value is not an integer or out of range"
    )
    assert conn.call("BS.FILL", "k", 1, "v", "EX", 5) == resp.ErrorReply("ERR syntax error")
    assert conn.call("PING") == "PONG"


def test_text_protocol_does_not_offer_the_stampede_commands(store: StoreProcess) -> None:
    with store.connect() as sock:
        sock.settimeout(5)
        sock.sendall(b"GET nothing\nBS.FETCH nothing\n")
        data = b""
        while data.count(b"\n") < 2:
            data += sock.recv(1024)
    assert data == b"NOT_FOUND\nERROR unknown command\n"


# -- get_or_set on every backend --------------------------------------------------------------


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisProcess]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    with redis_server_process() as server:
        yield server


@pytest.fixture(params=["store", "redis", "memory"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "store":
        return str(request.getfixturevalue("store").url)
    if request.param == "redis":
        return str(request.getfixturevalue("redis").redis_url)
    return f"memory://stampede-{uuid.uuid4().hex}"


@pytest.fixture
def key() -> str:
    return f"stampede:{uuid.uuid4().hex}"


def test_threads_compute_a_cold_key_once(url: str, key: str) -> None:
    calls = []
    results: list[Any] = []
    barrier = threading.Barrier(16)

    def loader() -> dict[str, int]:
        calls.append(1)
        time.sleep(0.2)
        return {"answer": 42}

    def worker() -> None:
        with Cache(url) as cache:
            barrier.wait()
            results.append(cache.get_or_set(key, loader, ttl=30))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [{"answer": 42}] * 16
    assert len(calls) == 1


def test_coroutines_compute_a_cold_key_once(url: str, key: str) -> None:
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return "value"

    async def scenario() -> list[Any]:
        # The 100 calls open up to 100 connections at once (redis-py's pool): on a loaded
        # machine one event loop takes longer than the default 2 s to connect them all, and
        # this test is about one loader call, not about the client's deadline.
        caches = [AsyncCache(url, timeout=10.0) for _ in range(4)]
        try:
            return await asyncio.gather(
                *(caches[i % 4].get_or_set(key, loader, ttl=30) for i in range(100))
            )
        finally:
            for cache in caches:
                await cache.close()

    assert asyncio.run(scenario()) == ["value"] * 100
    assert calls == 1


def test_loader_error_reaches_the_caller_and_frees_the_key(url: str, key: str) -> None:
    with Cache(url) as cache:

        def broken() -> str:
            raise RuntimeError("database down")

        with pytest.raises(RuntimeError, match="database down"):
            cache.get_or_set(key, broken, ttl=30, wait_timeout=1)
        assert cache.get_or_set(key, lambda: "recovered", ttl=30, wait_timeout=1) == "recovered"


def test_stale_value_is_served_while_one_caller_refreshes(url: str, key: str) -> None:
    versions = iter(["v1", "v2", "v3"])
    calls = []
    refreshing, release = threading.Event(), threading.Event()

    def loader() -> str:
        calls.append(1)
        if calls[1:]:  # the refresh: held in the loader until the test has read
            refreshing.set()
            release.wait(10)
        return next(versions)

    with Cache(url) as cache:

        def read() -> Any:
            return cache.get_or_set(key, loader, ttl=0.2, stale_ttl=30)

        try:
            assert read() == "v1"
            # Read until the value is stale and a refresh starts, then on while that refresh
            # is held: a caller that waited for it would get "v2" (after release.wait's bound).
            served = []
            deadline = time.monotonic() + 10
            while not refreshing.is_set():
                assert time.monotonic() < deadline, "no refresh started"
                served.append(read())
                time.sleep(0.02)
            served += [read() for _ in range(5)]
            assert set(served) == {"v1"}
        finally:
            release.set()
        wait_until(lambda: cache.get(key) == "v2")
        assert len(calls) == 2  # exactly one background refresh


def test_async_stale_value_is_served_while_one_task_refreshes(url: str, key: str) -> None:
    async def scenario() -> None:
        calls = 0
        refreshing, release = asyncio.Event(), asyncio.Event()

        async def loader() -> int:
            nonlocal calls
            calls += 1
            if calls > 1:  # the refresh: held in the loader until the test has read
                refreshing.set()
                await asyncio.wait_for(release.wait(), 10)
            return calls

        async with AsyncCache(url) as cache:

            async def read() -> Any:
                return await cache.get_or_set(key, loader, ttl=0.2, stale_ttl=30)

            assert await read() == 1
            served = []
            deadline = time.monotonic() + 10
            while not refreshing.is_set():
                assert time.monotonic() < deadline, "no refresh started"
                served.append(await read())
                await asyncio.sleep(0.02)
            served += await asyncio.gather(*(read() for _ in range(20)))
            assert set(served) == {1}
            release.set()
            for _ in range(250):
                if await cache.get(key) == 2:
                    break
                await asyncio.sleep(0.02)
            assert await cache.get(key) == 2
            assert calls == 2

    asyncio.run(scenario())


def test_early_refresh_refreshes_before_expiry(url: str, key: str) -> None:
    calls = []

    def loader() -> int:
        calls.append(1)
        time.sleep(0.02)
        return len(calls)

    with Cache(url) as cache:
        assert cache.get_or_set(key, loader, ttl=60, early_refresh=1e9) == 1
        # With a huge beta the XFetch rule fires on the next read, long before expiry.
        assert cache.get_or_set(key, loader, ttl=60, early_refresh=1e9) == 1
        deadline = time.monotonic() + 5
        while cache.get(key) != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cache.get(key) == 2


def test_cached_decorator_is_single_flight(url: str) -> None:
    calls = []
    with Cache(url) as cache:

        @cache.cached(ttl=30, key="square:" + uuid.uuid4().hex + ":{n}")
        def square(n: int) -> int:
            calls.append(n)
            time.sleep(0.1)
            return n * n

        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(square(7))) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert results == [49] * 8
        assert calls == [7]


# -- across processes -----------------------------------------------------------------------


def _process_worker(url: str, key: str, barrier: Any, out: Any) -> None:
    with Cache(url) as cache:

        def loader() -> str:
            cache.incr(key + ":calls")
            time.sleep(0.2)
            return f"computed by {os.getpid()}"

        barrier.wait(10)
        out.put(cache.get_or_set(key, loader, ttl=30, lock_timeout=5))


@pytest.mark.heavy  # four spawned interpreters
@pytest.mark.parametrize("server", ["store", "redis"])
def test_processes_compute_a_cold_key_once(server: str, request: pytest.FixtureRequest) -> None:
    fixture = request.getfixturevalue(server)
    url = fixture.url if server == "store" else fixture.redis_url
    key = f"procs:{uuid.uuid4().hex}"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    out = context.Queue()
    processes = [
        context.Process(target=_process_worker, args=(url, key, barrier, out)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    try:
        results = [out.get(timeout=30) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    assert len(set(results)) == 1
    with Cache(url) as cache:
        assert cache.get(key + ":calls") == 1


HOLDER = """
import sys, time
from pathlib import Path
from blinkstore_gunicorn import Cache

url, key, marker = sys.argv[1:4]
cache = Cache(url)

def loader():
    Path(marker).write_text("holding")
    time.sleep(60)
    return "never"

cache.get_or_set(key, loader, ttl=30, lock_timeout=float(sys.argv[4]))
"""


# The store frees a lease when its holder's connection closes, long before the 60 s lease ends
# (the waiter's join bound below proves it); Redis has no such signal: its 1 s lock expires.
@pytest.mark.parametrize(("server", "lock_timeout"), [("store", 60), ("redis", 1)])
def test_killed_lease_holder_is_taken_over(
    server: str, lock_timeout: float, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    fixture = request.getfixturevalue(server)
    url = fixture.url if server == "store" else fixture.redis_url
    key = f"killed:{uuid.uuid4().hex}"
    marker = tmp_path / "holding"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, key, str(marker), str(lock_timeout)],
        cwd=Path(__file__).parents[2],
    )
    try:
        deadline = time.monotonic() + 15
        while not marker.exists():
            assert time.monotonic() < deadline, "the holder never started its loader"
            assert holder.poll() is None, "the holder exited early"
            time.sleep(0.02)
        results: list[Any] = []
        waiter = threading.Thread(
            target=lambda: results.append(
                Cache(url).get_or_set(key, lambda: "taken over", ttl=30, lock_timeout=60)
            )
        )
        waiter.start()
        time.sleep(0.2)
        assert waiter.is_alive()  # parked behind the holder
        os.kill(holder.pid, signal.SIGKILL)
        waiter.join(30)
        assert results == ["taken over"]
    finally:
        holder.kill()
        holder.wait(10)


def test_waiter_times_out_or_computes_itself(store: StoreProcess, tmp_path: Path) -> None:
    key = f"slow:{uuid.uuid4().hex}"
    with Cache(store.url) as other:
        holder = socket.socket(socket.AF_UNIX)
        holder.connect(str(store.unix_path))
        try:
            holder.sendall(resp.encode_command("BS.FETCH", key))
            assert holder.recv(100).startswith(b"*2\r\n$5\r\nLEASE")
            started = time.monotonic()
            with pytest.raises(CacheStampedeTimeout):
                other.get_or_set(key, lambda: "x", ttl=30, wait_timeout=0.3)
            assert time.monotonic() - started > 0.2  # it waited (no upper bound: a loaded machine)
            assert (
                other.get_or_set(key, lambda: "mine", wait_timeout=0.2, on_wait_timeout="compute")
                == "mine"
            )
        finally:
            holder.close()
