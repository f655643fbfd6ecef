"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.integration_support import server_url


@pytest.fixture
def store_url() -> Iterator[str]:
    """The URL of a real ``blinkstore serve`` for this test."""
    with server_url("store") as url:
        yield url
