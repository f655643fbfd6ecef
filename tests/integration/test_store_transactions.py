"""MULTI / EXEC / DISCARD: the same exchanges, byte for byte, against the store and
redis-server; redis-py's transaction pipeline; fastapi-cache2's Redis backend (which reads
through one) against the store."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fastapi_cache import FastAPICache
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache
from redis.asyncio import Redis as AsyncRedis

from harness.processes import RedisProcess, StoreProcess, resp_command
from tests.support.processes import resp_server_process


@pytest.fixture(scope="module", params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    with resp_server_process(request.param) as process:
        yield process


def exchange(sock: socket.socket, *commands: tuple[str, ...]) -> bytes:
    """Send the commands in one write; read until every reply (one per command) is in."""
    sock.sendall(b"".join(resp_command(*command) for command in commands))
    data = b""
    while _replies(data) < len(commands):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def _replies(data: bytes) -> int:
    """How many whole top-level replies ``data`` holds (simple, error, integer and arrays)."""
    count, index = 0, 0
    while True:
        end = _skip(data, index)
        if end is None:
            return count
        count, index = count + 1, end


def _skip(data: bytes, index: int) -> int | None:
    line_end = data.find(b"\r\n", index)
    if line_end < 0:
        return None
    kind, header = data[index : index + 1], data[index + 1 : line_end]
    index = line_end + 2
    if kind == b"$":
        size = int(header)
        return None if size >= 0 and len(data) < index + size + 2 else index + max(size + 2, 0)
    if kind == b"*":
        for _ in range(max(int(header), 0)):
            found = _skip(data, index)
            if found is None:
                return None
            index = found
    return index


@pytest.fixture
def sock(server: StoreProcess | RedisProcess) -> Iterator[socket.socket]:
    with server.connect() as connection:
        assert exchange(connection, ("FLUSHALL",)) == b"+OK\r\n"
        yield connection


def test_exec_runs_the_queue_in_order(sock: socket.socket) -> None:
    replies = exchange(
        sock,
        ("MULTI",),
        ("SET", "k", "1"),
        ("INCR", "k"),
        ("set", "s", "text"),
        ("INCR", "s"),
        ("Get", "k"),
        ("EXEC",),
    )
    assert replies == (
        b"+OK\r\n" + b"+QUEUED\r\n" * 5 + b"*5\r\n+OK\r\n:2\r\n+OK\r\n"
        b"-ERR value is not an integer or out of range\r\n$1\r\n2\r\n"
    )


def test_queueing_errors_abort_the_transaction(sock: socket.socket) -> None:
    replies = exchange(
        sock, ("MULTI",), ("SET", "a", "1"), ("GET",), ("NOSUCH", "x"), ("EXEC",), ("GET", "a")
    )
    assert replies == (
        b"+OK\r\n+QUEUED\r\n-ERR wrong number of arguments for 'get' command\r\n"
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"
        b"-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n"
    )


def test_discard_nesting_and_strays(sock: socket.socket) -> None:
    assert exchange(sock, ("EXEC",), ("DISCARD",)) == (
        b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n"
    )
    replies = exchange(
        sock, ("MULTI",), ("MULTI",), ("SET", "d", "1"), ("DISCARD",), ("EXISTS", "d")
    )
    assert replies == (b"+OK\r\n-ERR MULTI calls can not be nested\r\n+QUEUED\r\n+OK\r\n:0\r\n")
    assert exchange(sock, ("MULTI",), ("EXEC",)) == b"+OK\r\n*0\r\n"


def test_redis_py_transaction_pipeline(server: StoreProcess | RedisProcess) -> None:
    with server.connect() as probe:
        exchange(probe, ("FLUSHALL",))
    client = redis.Redis(unix_socket_path=server.unix_path, socket_timeout=10)
    try:
        with client.pipeline() as pipe:  # transaction=True by default
            pipe.set("p", "v", ex=60)
            pipe.ttl("p")
            pipe.get("p")
            pipe.incr("n")
            assert pipe.execute() == [True, 60, b"v", 1]
        with client.pipeline() as pipe:
            pipe.set("q", "1")
            pipe.execute_command("NOSUCH")  # type: ignore[no-untyped-call]
            # A command refused while queueing fails the whole transaction before it runs.
            with pytest.raises(redis.ResponseError, match=r"EXECABORT|NOSUCH"):
                pipe.execute()
        assert client.exists("q") == 0
    finally:
        client.close()


def test_fastapi_cache2_redis_backend_caches_in_the_store(blinkstore: StoreProcess) -> None:
    url = blinkstore.url if blinkstore.unix_path else blinkstore.tcp_url.replace("tcp", "redis")
    calls = {"n": 0}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = AsyncRedis.from_url(url)
        FastAPICache.init(RedisBackend(client), prefix="fc")
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/slow/{item}")
    @cache(expire=60)
    async def slow(item: str) -> dict[str, object]:
        calls["n"] += 1
        return {"item": item, "computed": calls["n"]}

    @app.delete("/cached")
    async def forget() -> int:
        # FastAPICache.clear() deletes by Lua script, which the store lacks; one key works.
        backend = FastAPICache.get_backend()
        assert isinstance(backend, RedisBackend)
        keys = [key async for key in backend.redis.scan_iter(match="fc:*")]
        return sum([await backend.clear(key=key.decode()) for key in keys])

    try:
        with TestClient(app) as http:
            first, second = http.get("/slow/a"), http.get("/slow/a")
            assert first.json() == second.json() == {"item": "a", "computed": 1}
            assert (first.headers["X-FastAPI-Cache"], second.headers["X-FastAPI-Cache"]) == (
                "MISS",
                "HIT",
            )
            assert 0 < int(second.headers["Cache-Control"].removeprefix("max-age=")) <= 60
            assert http.delete("/cached").json() == 1
            assert http.get("/slow/a").json()["computed"] == 2
    finally:
        FastAPICache.reset()
