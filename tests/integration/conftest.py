"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.processes import RedisProcess, StoreProcess
from tests.integration.integration_support import server_url
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
