"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from harness.processes import RedisProcess, StoreProcess
from tests.integration.integration_support import server_url
from tests.support.differential import RawConnection
from tests.support.processes import resp_server_process


@pytest.fixture
def store_url() -> Iterator[str]:
    """The URL of a real ``blinkstore serve`` for this test."""
    with server_url("store") as url:
        yield url


@pytest.fixture(scope="module")
def redis_and_store() -> Iterator[tuple[RedisProcess | StoreProcess, RedisProcess | StoreProcess]]:
    """A redis-server and a ``blinkstore serve`` shared by a module's differential tests
    (redis-server first, as :func:`tests.support.differential.compare` takes them)."""
    with resp_server_process("redis") as redis_server, resp_server_process("store") as store:
        yield redis_server, store


@pytest.fixture(scope="module", params=["store", "redis"])
def either_server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    """A ``blinkstore serve``, then a redis-server: a module's conformance tests run against
    both, and must pass on both."""
    with resp_server_process(request.param) as process:
        yield process


@pytest.fixture
def connect(either_server: StoreProcess | RedisProcess) -> Iterator[Callable[[], RawConnection]]:
    """Opens connections to ``either_server`` (on a flushed database), closed after the test."""
    opened: list[RawConnection] = []

    def make() -> RawConnection:
        connection = RawConnection(either_server)
        opened.append(connection)
        return connection

    make()("FLUSHALL")
    yield make
    for connection in opened:
        connection.close()
