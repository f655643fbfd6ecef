"""The client budget, its setting and the reply-size cap, without sockets."""

from __future__ import annotations

import asyncio

import pytest

from blinkstore_gunicorn.config import ConfigError, StoreSettings
from blinkstore_gunicorn.server.budget import ClientBudget
from blinkstore_gunicorn.server.commands import ServerStats
from tests.unit.test_commands import Harness

MiB = 1024 * 1024


class FakeHolder:
    def __init__(self, client_id: int, requests: int = 0, replies: int = 0) -> None:
        self.client_id = client_id
        self.peer = f"peer{client_id}"
        self.charged = 0
        self.requests = requests
        self.replies = replies
        self.was_shed = False

    def held(self) -> tuple[int, int]:
        return self.requests, self.replies

    def shed(self) -> None:
        self.was_shed = True


def test_budget_sheds_the_largest_holders_until_the_total_fits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = ServerStats()
    small = FakeHolder(1, requests=1 * MiB)
    large = FakeHolder(2, replies=6 * MiB)
    medium = FakeHolder(3, requests=2 * MiB, replies=2 * MiB)
    holders = {small, large, medium}
    budget = ClientBudget(8 * MiB, holders, stats)

    async def main() -> None:
        for holder in (small, large):
            budget.charge(holder)
        assert budget.total == 7 * MiB
        budget.charge(medium)  # 11 MiB: over, shed on the next loop iteration
        assert not large.was_shed
        await asyncio.sleep(0)

    asyncio.run(main())
    assert (small.was_shed, large.was_shed, medium.was_shed) == (False, True, False)
    assert budget.total == 5 * MiB and large.charged == 0
    assert stats.evicted_clients == 1
    assert "closing client 2 (peer2) holding 6291456 bytes (0 in requests, 6291456" in caplog.text


def test_budget_audit_measures_holders_that_never_reported() -> None:
    stats = ServerStats()
    quiet = [FakeHolder(i, replies=MiB) for i in range(10)]
    budget = ClientBudget(4 * MiB, set(quiet), stats)
    budget.audit()
    assert sum(holder.was_shed for holder in quiet) == 6
    assert budget.total == 4 * MiB
    for holder in quiet:
        if not holder.was_shed:
            budget.release(holder)
    assert budget.total == 0


def test_client_buffer_limit_default_and_validation() -> None:
    assert StoreSettings().client_buffer_budget == 64 * MiB
    assert StoreSettings(memory_limit=1024 * MiB).client_buffer_budget == 512 * MiB
    assert StoreSettings(memory_limit=0).client_buffer_budget == 64 * MiB
    custom = StoreSettings.from_env({"BLINKSTORE_CLIENT_BUFFER_LIMIT": "100MB"})
    assert custom.client_buffer_budget == 100 * MiB
    assert custom.to_argv() == ["--client-buffer-limit", str(100 * MiB)]
    with pytest.raises(ConfigError, match=r"client_buffer_limit: must be at least .*64MiB"):
        StoreSettings(client_buffer_limit=16 * MiB)
    assert StoreSettings(client_buffer_limit=16 * MiB, max_request_size=MiB).client_buffer_budget


def test_mget_reply_is_capped_by_the_reply_limit() -> None:
    r = Harness(max_reply_size=10 * MiB)
    r("SET", "big", b"v" * MiB)
    assert r("MGET", *["big"] * 10).startswith(b"*10\r\n")
    assert r("MGET", *["big"] * 11) == (
        b"-ERR reply too large: 11534336 bytes exceeds the client buffer limit 10485760\r\n"
    )
