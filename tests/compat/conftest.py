"""The compatibility suite: each library runs the same test against a real redis-server and a
real ``blinkstore serve``; both must pass."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.compat.compat_support import SERVERS, Server, compat_server


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The server under test, emptied before each test that uses :func:`fresh`."""
    with compat_server(request.param) as started:
        yield started


@pytest.fixture
def fresh(server: Server) -> Server:
    """The module's server with nothing in it (each library test starts clean)."""
    with server.client() as client:
        client.flushall()
        client.script_flush()
    return server
