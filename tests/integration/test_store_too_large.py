"""Requests over the store's size limits are refused by name, never by a dropped connection
(issue 19): an error reply in the request's turn, its bytes dropped unbuffered as they arrive,
the connection still serving, and a client that sent the value once and says why.

The sizes are the reported ones: over 32 MiB, the client buffer limit of a store with the
default 64 MB memory limit, which used to close the connection before it could answer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from blinkstore_gunicorn import AsyncCache, Cache, CacheConnectionError, CacheValueTooLarge
from blinkstore_gunicorn.client import CacheResponseError
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from harness.processes import StoreProcess, resp_command, short_tempdir
from tests.conftest import StoreFactory
from tests.support.processes import memory_kib
from tests.support.sockets import recv_exactly, recv_line

MiB = 1024 * 1024
SIZES = [33 * MiB, 40 * MiB]
REFUSED = "value too large: value of {size} bytes exceeds max value size 16777216"
PING = resp_command("PING")


def redis_client(store: StoreProcess, **options: Any) -> redis.Redis:
    """A redis-py client of ``store`` (its Unix socket, else TCP)."""
    if store.unix_path is not None:
        return redis.Redis(unix_socket_path=store.unix_path, **options)
    assert store.tcp_address is not None
    host, port = store.tcp_address
    return redis.Redis(host=host, port=port, **options)


def counters(client: redis.Redis) -> tuple[int, int]:
    """(commands processed, connections received); this INFO counts as one command."""
    info = client.info("stats")
    return int(info["total_commands_processed"]), int(info["total_connections_received"])


def send_in_background(sock: socket.socket, *parts: bytes) -> threading.Thread:
    """Send ``parts`` from a thread (the replies come while the value is still being sent)."""

    def send() -> None:
        for part in parts:
            sock.sendall(part)

    sender = threading.Thread(target=send)
    sender.start()
    return sender


@pytest.fixture
def value_file() -> Iterator[Path]:
    with short_tempdir() as directory:
        path = directory / "value"
        path.write_bytes(os.urandom(40 * MiB))
        yield path


@pytest.mark.parametrize("size", SIZES)
def test_redis_py_gets_the_error_and_keeps_its_connection(
    blinkstore: StoreProcess, size: int
) -> None:
    counting = redis_client(blinkstore)
    client = redis_client(blinkstore, single_connection_client=True)
    with client, counting:
        before = counters(counting)
        with pytest.raises(redis.ResponseError, match=REFUSED.format(size=size)):
            client.set("k", os.urandom(size))
        assert counters(counting)[0] - before[0] == 2  # the SET once, this INFO
        # The same connection goes on.
        assert client.set("k", b"small") and client.get("k") == b"small"


def test_a_request_over_the_client_buffer_limit_names_the_setting(
    blinkstore_unix: StoreProcess,
) -> None:
    # Each value fits, the request does not fit what all connections may hold (32 MiB).
    values = {f"k{i}": os.urandom(12 * MiB) for i in range(3)}
    with redis.Redis(unix_socket_path=blinkstore_unix.unix_path) as client:
        with pytest.raises(redis.ResponseError) as refused:
            client.mset(values)
        assert str(refused.value).startswith("request too large: request of at least ")
        assert str(refused.value).endswith(
            "exceeds client buffer limit 33554432 (--client-buffer-limit)"
        )
        assert client.exists(*values) == 0
        assert client.ping()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_our_clients_raise_value_too_large_having_sent_it_once(
    blinkstore_unix: StoreProcess,
    size: int,
    flavour: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with redis_client(blinkstore_unix) as counting:
        before = counters(counting)
        # on_error="miss" hides outages; a refusal is not one, so it is raised.
        error, then = set_then_ping(flavour, blinkstore_unix.url, size, on_error="miss")
        assert isinstance(error, CacheValueTooLarge)
        assert not isinstance(error, CacheConnectionError)
        # The value as sent: serialized, so a byte longer than the bytes given.
        assert str(error) == "ERR " + REFUSED.format(size=size + 1)
        assert then is True  # the same client goes on
        assert counters(counting)[0] - before[0] == 3  # the SET once, the PING, this INFO
        assert counters(counting)[1] - before[1] == 1
    assert "unreachable" not in caplog.text


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_refusal_that_closes_reaches_a_client_still_sending(
    blinkstore_factory: StoreFactory, flavour: str
) -> None:
    # Before AUTH the store refuses any large request and closes; the client is still writing
    # the value (a broken pipe), reads the refusal instead, and does not send it again.
    store = blinkstore_factory("--password", "pw")
    with redis_client(store, password="pw") as counting:
        before = counters(counting)
        error, _ = set_then_ping(flavour, store.url, 40 * MiB)
        assert type(error) is CacheResponseError
        assert str(error) == "NOAUTH Authentication required."
        assert counters(counting)[1] - before[1] == 2  # the SET's connection, the PING's


def set_then_ping(
    flavour: str, url: str, size: int, **options: str
) -> tuple[BaseException | None, object]:
    """``set("k", <size random bytes>)``, then ``ping()``, on one new ``Cache`` or
    ``AsyncCache``: the exception the set raised (or None), and what the ping returned or
    raised."""
    value = os.urandom(size)
    if flavour == "sync":
        with Cache(url, **options) as cache:  # type: ignore[arg-type]
            return outcome(lambda: cache.set("k", value)), outcome(cache.ping)

    async def main() -> tuple[BaseException | None, object]:
        cache = AsyncCache(url, **options)  # type: ignore[arg-type]
        try:
            return await async_outcome(cache.set("k", value)), await async_outcome(cache.ping())
        finally:
            await cache.close()

    return asyncio.run(main())


def outcome(call: Callable[[], object]) -> Any:
    """What ``call()`` returned, or the exception it raised."""
    try:
        return call()
    except Exception as exc:
        return exc


async def async_outcome(call: Awaitable[object]) -> Any:
    """What ``await call`` returned, or the exception it raised."""
    try:
        return await call
    except Exception as exc:
        return exc


def test_pipelined_requests_after_a_refused_one_are_answered_in_order_in_bounded_memory(
    blinkstore_factory: StoreFactory,
) -> None:
    store = blinkstore_factory()
    rss_before = memory_kib(store, "VmRSS")
    size = 40 * MiB
    header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % size
    chunk = os.urandom(MiB)
    after = PING + resp_command("SET", "j", "v") + resp_command("GET", "j")
    with store.connect(timeout=30) as sock:
        sender = send_in_background(sock, PING + header, *[chunk] * 40, b"\r\n" + after)
        try:
            assert recv_exactly(sock, 7) == b"+PONG\r\n"
            assert recv_line(sock) == b"-ERR " + REFUSED.format(size=size).encode() + b"\r\n"
            assert recv_exactly(sock, 7 + 5 + 7) == b"+PONG\r\n+OK\r\n$1\r\nv\r\n"
        finally:
            sender.join(30)
    # Dropped as it arrived: the peak is nowhere near the value's size.
    assert memory_kib(store, "VmHWM") - rss_before < 8 * 1024


def test_a_text_protocol_line_over_the_limit_is_dropped_then_refused(
    blinkstore_factory: StoreFactory,
) -> None:
    store = blinkstore_factory()
    rss_before = memory_kib(store, "VmRSS")
    chunk = b"v" * MiB
    with store.connect(timeout=30) as sock:
        sender = send_in_background(sock, b"SET k ", *[chunk] * 40, b"\nGET k\nSET j v\nGET j\n")
        try:
            refusal = recv_line(sock)
            assert recv_line(sock) == b"NOT_FOUND\n"
            assert recv_line(sock) == b"OK\n"
            assert recv_line(sock) == b"VALUE dg==\n"
        finally:
            sender.join(30)
    limit = 16 * MiB + 64 * 1024 + 4096
    assert refusal == (
        b"ERROR value too large: line of %d bytes exceeds %d bytes (max value size 16777216"
        b" + max key size 65536)\n" % (6 + 40 * MiB, limit)
    )
    # At most one line limit was buffered before the rest was dropped, not the 40 MiB.
    assert memory_kib(store, "VmHWM") - rss_before < 28 * 1024


def test_redis_cli_prints_the_error(blinkstore_unix: StoreProcess, value_file: Path) -> None:
    assert blinkstore_unix.unix_path is not None
    with value_file.open("rb") as stdin:
        done = subprocess.run(
            ["redis-cli", "-s", blinkstore_unix.unix_path, "-x", "set", "k"],
            stdin=stdin,
            capture_output=True,
            timeout=60,
            check=False,
        )
    # redis-cli prints an error reply and exits 0 (as it does against redis-server), instead
    # of dying of SIGPIPE (141) with nothing said.
    assert done.returncode == 0, done
    assert done.stdout.decode() == "ERR " + REFUSED.format(size=40 * MiB) + "\n\n"


@pytest.mark.parametrize("native", ["1", "0"], ids=["C", "python"])
def test_one_request_over_a_small_limit_in_one_read_is_refused_by_the_readers_words(
    blinkstore_factory: StoreFactory, native: str
) -> None:
    # A read holding one whole request takes the hot path, which used to take anything up to
    # 1 KiB: with 16-byte keys and values it echoed a 100-byte ECHO and answered a GET of a
    # 100-byte key.
    store = blinkstore_factory(
        "--max-key-size", "16", "--max-value-size", "16", env={NATIVE_ENV: native}
    )
    refused = b"-ERR value too large: value of 100 bytes exceeds max value size 16\r\n"
    with store.connect() as sock:
        for request in (resp_command("ECHO", "x" * 100), resp_command("GET", "k" * 100)):
            sock.sendall(PING)  # alone, so the next read is not taken for a pipeline's
            assert recv_line(sock) == b"+PONG\r\n"
            sock.sendall(request)
            assert recv_line(sock) == refused
            sock.sendall(PING + request)  # the reader's own answer, for comparison
            assert recv_line(sock) + recv_line(sock) == b"+PONG\r\n" + refused
