"""CONFIG RESETSTAT against redis-server 7.0 and ``blinkstore serve``: the INFO counters Redis
zeroes (connections, commands, keyspace hits and misses, expired and evicted keys...) are zero
on both afterwards and count again from there; the store's region readers' hits and misses, which
its ``keyspace_hits``/``keyspace_misses`` include, are zeroed too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blinkstore_gunicorn.client import Cache
from blinkstore_gunicorn.shm import handout
from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess
from tests.conftest import StoreFactory
from tests.support.differential import RawConnection
from tests.support.processes import resp_server_process

DEADLINE = 20
RESET = [
    "total_connections_received",
    "total_commands_processed",
    "rejected_connections",
    "evicted_clients",
    "expired_keys",
    "evicted_keys",
    "keyspace_hits",
    "keyspace_misses",
]


@pytest.fixture(params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    with resp_server_process(request.param) as process:
        yield process


def _stats(connection: RawConnection) -> dict[str, int]:
    text = connection("INFO", "stats").decode().split("\r\n", 1)[1]
    fields = dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)
    return {name: int(value) for name, value in fields.items() if value.lstrip("-").isdigit()}


def test_resetstat_zeroes_what_redis_zeroes(server: StoreProcess | RedisProcess) -> None:
    control, other = RawConnection(server), RawConnection(server)
    try:
        control("SET", "k", "v")
        control("GET", "k")
        other("GET", "missing")
        control("SET", "gone", "v", "PX", "1")
        assert wait_until(lambda: _stats(control)["expired_keys"] == 1, timeout=DEADLINE)
        before = _stats(control)
        assert before["keyspace_hits"] >= 1 and before["keyspace_misses"] >= 1
        assert before["total_connections_received"] >= 2
        assert control("CONFIG", "RESETSTAT") == b"+OK\r\n"
        # RESETSTAT itself and the INFO that reads the counters count, on both servers.
        assert {name: _stats(control)[name] for name in RESET} == dict.fromkeys(RESET, 0) | {
            "total_commands_processed": 2
        }
        control("GET", "k")
        other("GET", "missing")
        after = _stats(control)
        assert (after["keyspace_hits"], after["keyspace_misses"]) == (1, 1)
        assert control("CONFIG", "RESETSTAT", "x") == (
            b"-ERR wrong number of arguments for 'config|resetstat' command\r\n"
        )
    finally:
        control.close()
        other.close()


@pytest.mark.skipif(not handout.supported(), reason="needs Linux (memfd)")
def test_resetstat_zeroes_the_region_readers_counts(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory("--memory-limit", "4MiB")
    control = RawConnection(store)
    try:
        with Cache(store.url) as cache:
            cache.set("k", "v")
            assert wait_until(lambda: cache.get("k") == "v" and cache.get("nope") is None, 10)
            assert wait_until(lambda: _stats(control)["shm_keyspace_hits"] >= 1, DEADLINE)
            assert control("CONFIG", "RESETSTAT") == b"+OK\r\n"
            stats = _stats(control)
            assert [stats[name] for name in ("shm_keyspace_hits", "shm_keyspace_misses")] == [0, 0]
            assert [stats[name] for name in ("keyspace_hits", "keyspace_misses")] == [0, 0]
            assert cache.get("k") == "v"
            assert cache.get("nope") is None
            stats = _stats(control)
            assert stats["shm_keyspace_hits"] == stats["keyspace_hits"] == 1
            assert stats["shm_keyspace_misses"] == stats["keyspace_misses"] == 1
    finally:
        control.close()
