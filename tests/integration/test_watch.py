"""WATCH with redis-py's ``transaction()`` and pipelines, against the store and redis-server:
optimistic increments under contention come out exact, and a watched key changed by another
client makes EXEC fail (``WatchError``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from harness.processes import RedisProcess, StoreProcess
from tests.support.processes import resp_server_process

Server = StoreProcess | RedisProcess


@pytest.fixture(scope="module", params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with resp_server_process(request.param) as process:
        yield process


def connect(server: Server) -> redis.Redis:
    assert server.unix_path is not None
    return redis.Redis(unix_socket_path=server.unix_path)


def test_watch_error_when_another_client_writes(server: Server) -> None:
    with connect(server) as client, connect(server) as other:
        client.flushall()
        client.set("balance", 10)
        with client.pipeline() as pipe:
            pipe.watch("balance")
            balance = int(pipe.get("balance") or 0)
            other.set("balance", 0)
            pipe.multi()
            pipe.set("balance", balance - 3)
            with pytest.raises(redis.exceptions.WatchError):
                pipe.execute()
        assert client.get("balance") == b"0"
        with client.pipeline() as pipe:
            pipe.watch("balance")
            pipe.multi()
            pipe.set("balance", 7)
            assert pipe.execute() == [True]
        with client.pipeline() as pipe:
            pipe.watch("balance")
            pipe.unwatch()
            other.set("balance", 1)
            pipe.multi()
            pipe.get("balance")
            assert pipe.execute() == [b"1"]


def test_transaction_retries_make_contended_increments_exact(server: Server) -> None:
    with connect(server) as client:
        client.flushall()
        client.set("counter", 0)

    retries: list[int] = []

    def increment(pipe: redis.client.Pipeline) -> None:
        value = int(pipe.get("counter") or 0)
        pipe.multi()
        pipe.set("counter", value + 1)

    def worker() -> None:
        with connect(server) as connection:
            for _ in range(50):
                attempts = 0

                def counted(pipe: redis.client.Pipeline) -> None:
                    nonlocal attempts
                    attempts += 1
                    increment(pipe)

                connection.transaction(counted, "counter")
                retries.append(attempts - 1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    with connect(server) as client:
        assert int(client.get("counter") or 0) == 200
    assert len(retries) == 200
