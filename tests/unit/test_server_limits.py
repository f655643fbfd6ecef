"""The client budget, its setting and the reply-size cap, without sockets."""

from __future__ import annotations

import asyncio

import pytest

from blinkstore_gunicorn.config import ConfigError, StoreSettings
from blinkstore_gunicorn.server.budget import ClientBudget
from blinkstore_gunicorn.server.commands.replies import MAX_PATTERN
from blinkstore_gunicorn.server.dispatch import ServerStats
from tests.unit.test_commands import Harness

MiB = 1024 * 1024


class FakeHolder:
    def __init__(self, client_id: int, requests: int = 0, replies: int = 0) -> None:
        self.client_id = client_id
        self.peer = f"peer{client_id}"
        self.charged = 0
        self.requests = requests
        self.replies = replies
        self.shed_now: bool | None = None
        self.reading = True

    def held(self) -> tuple[int, int]:
        return self.requests, self.replies

    def shed(self, *, now: bool) -> None:
        self.shed_now = now

    def hold_reading(self, hold: bool) -> None:
        self.reading = not hold


def readers(holders: set[FakeHolder]) -> set[FakeHolder]:
    return {holder for holder in holders if holder.reading}


def test_budget_sheds_the_largest_and_freezes_reads_until_their_memory_is_freed(
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
        assert budget.total == 7 * MiB and stats.evicted_clients == 0
        # 11 MiB: over, so the largest go until at most half the limit is held; the one
        # reporting (inside its own callback) is dropped once that callback has returned.
        budget.charge(medium)
        assert (small.shed_now, large.shed_now, medium.shed_now) == (None, True, False)
        assert budget.total == 1 * MiB and stats.evicted_clients == 2
        # Their 10 MiB are not free until the loop has dropped their buffers: no one reads.
        assert budget.frozen and readers(holders) == set()
        budget.release(large)
        budget.release(medium)
        assert readers(holders) == set()
        for _ in range(3):
            await asyncio.sleep(0)
        assert readers(holders) == holders

    asyncio.run(main())
    assert "closing client 2 (peer2) holding 6291456 bytes" in caplog.text


def test_budget_audit_measures_holders_that_never_reported() -> None:
    stats = ServerStats()
    quiet = [FakeHolder(i, replies=MiB) for i in range(10)]
    budget = ClientBudget(8 * MiB, set(quiet), stats)
    budget.audit()
    assert budget.total == 10 * MiB - 6 * MiB
    assert sum(holder.shed_now is True for holder in quiet) == 6


def test_client_buffer_limit_default_and_validation() -> None:
    assert StoreSettings().client_buffer_budget == 32 * MiB
    assert StoreSettings(memory_limit=1024 * MiB).client_buffer_budget == 512 * MiB
    assert StoreSettings(memory_limit=0).client_buffer_budget == 1024 * MiB
    # Never below one request storing the largest value.
    assert StoreSettings(memory_limit=MiB).client_buffer_budget == 17 * MiB + 64 * 1024
    custom = StoreSettings.from_env({"BLINKSTORE_CLIENT_BUFFER_LIMIT": "100MB"})
    assert custom.client_buffer_budget == 100 * MiB
    assert custom.to_argv() == ["--client-buffer-limit", str(100 * MiB)]
    with pytest.raises(ConfigError, match=r"client_buffer_limit: must be at least 17472KiB"):
        StoreSettings(client_buffer_limit=16 * MiB)
    assert StoreSettings(client_buffer_limit=16 * MiB, max_value_size=MiB).client_buffer_budget


def test_mget_reply_is_capped_by_the_reply_limit() -> None:
    r = Harness(max_reply_size=10 * MiB)
    r("SET", "big", b"v" * MiB)
    assert r("MGET", *["big"] * 10).startswith(b"*10\r\n")
    assert r("MGET", *["big"] * 11) == (
        b"-ERR reply too large: 11534336 bytes exceeds the client buffer limit 10485760\r\n"
    )


def test_glob_patterns_are_length_capped() -> None:
    # A 1 MiB pattern blocked the store for 0.8 s to compile and stayed cached; CONFIG GET's
    # fnmatch cached up to 32768 of them.
    r = Harness()
    r("SET", "a", "1")
    too_long = b"*" + b"a" * MAX_PATTERN
    for command in (("KEYS", too_long), ("SCAN", "0", "MATCH", too_long)):
        assert r(*command) == b"-ERR pattern too long (max 4096 bytes)\r\n"
    assert r("CONFIG", "GET", "save", too_long) == b"-ERR pattern too long (max 4096 bytes)\r\n"
    assert r("KEYS", b"*" + b"?" * (MAX_PATTERN - 2) + b"a") == b"*0\r\n"
    assert r("CONFIG", "GET", "MAXMEMORY-[PC]*") == (
        b"*4\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n"
        b"$17\r\nmaxmemory-clients\r\n$8\r\n67108864\r\n"
    )


def test_frozen_budget_thaws_when_a_holder_closes() -> None:
    # Not only freed shed memory: a peer closing its connection makes room too (the store
    # used to stay frozen until a later shed, starving every client for seconds).
    stats = ServerStats()
    big = FakeHolder(1, replies=5 * MiB)
    other = FakeHolder(2, replies=3 * MiB)
    holders = {big, other}
    budget = ClientBudget(8 * MiB, holders, stats)

    async def main() -> None:
        budget.charge(big)
        budget.charge(other)
        budget.frozen = True  # as if an earlier shed were still being freed
        budget.release(other)
        assert not budget.frozen and readers(holders) == holders

    asyncio.run(main())
