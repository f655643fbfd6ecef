"""Prometheus's redis_exporter (Debian's prometheus-redis-exporter) scraping a real store: the
dashboard metrics exist and move as the store is used (docs/operations.md#prometheus)."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from blinkstore_gunicorn.client import Cache
from harness.gunicorn import free_port, wait_until
from harness.processes import StoreProcess, resp_command, stop_process
from tests.conftest import StoreFactory

EXPORTER = shutil.which("prometheus-redis-exporter")
pytestmark = pytest.mark.skipif(
    EXPORTER is None, reason="prometheus-redis-exporter is not installed (make system-deps)"
)

_SAMPLE = re.compile(r"^(?P<name>[a-z_:]+)(?P<labels>\{[^}]*\})? (?P<value>\S+)$")


@contextlib.contextmanager
def exporter_for(address: str, log: Path) -> Iterator[str]:
    """redis_exporter scraping ``address``; yields its /metrics URL once it answers."""
    assert EXPORTER is not None
    port = free_port()
    argv = [
        EXPORTER,
        "-redis.addr", address,
        "-web.listen-address", f"127.0.0.1:{port}",
        "-redis-only-metrics",
        "-include-system-metrics",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        assert wait_until(lambda: _answers(url), 30.0), log.read_text(errors="replace")
        yield url
    finally:
        stop_process(proc)


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=5.0).status_code == 200
    return False


def scrape(url: str) -> dict[str, float]:
    """One scrape: ``name{labels}`` -> value."""
    samples: dict[str, float] = {}
    for line in httpx.get(url, timeout=10.0).text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples[match["name"] + (match["labels"] or "")] = float(match["value"])
    return samples


@pytest.fixture
def small_store(blinkstore_factory: StoreFactory) -> StoreProcess:
    return blinkstore_factory("--memory-limit", "2MB")


def test_dashboard_metrics_move_with_use(small_store: StoreProcess, tmp_path: Path) -> None:
    address = f"unix://{small_store.unix_path}"
    with exporter_for(address, tmp_path / "exporter.log") as url, Cache(small_store.url) as cache:
        before = scrape(url)
        assert before["redis_up"] == 1
        assert before["redis_memory_max_bytes"] == 2 * 1024 * 1024

        cache.set("hit", "x" * 100)
        for _ in range(5):
            cache.get("hit")
        for index in range(3):
            cache.get(f"absent-{index}")
        for index in range(200):  # 20 KB each against a 2 MB limit: evictions
            cache.set(f"big-{index}", "y" * 20_000)
        extra = [Cache(small_store.url) for _ in range(3)]
        for client in extra:
            client.ping()
        # One connection computes "slow" (it holds the lease), another waits in the store.
        with small_store.connect() as holder, small_store.connect() as waiter:
            holder.sendall(resp_command("BS.FETCH", "slow"))
            assert holder.recv(100).startswith(b"*2\r\n$5\r\nLEASE")
            waiter.sendall(resp_command("BS.FETCH", "slow", "WAIT", "30000"))
            assert wait_until(lambda: scrape(url)["redis_blocked_clients"] == 1, 10.0)
            try:
                after = scrape(url)
            finally:
                for client in extra:
                    client.close()

    assert after["redis_keyspace_hits_total"] - before["redis_keyspace_hits_total"] >= 5
    assert after["redis_keyspace_misses_total"] - before["redis_keyspace_misses_total"] >= 3
    assert after["redis_evicted_keys_total"] > before["redis_evicted_keys_total"]
    assert after["redis_memory_used_bytes"] > before["redis_memory_used_bytes"]
    assert after["redis_memory_used_bytes"] <= after["redis_memory_max_bytes"]
    # The exporter's own connection, the cache's, and the three extra clients.
    assert after["redis_connected_clients"] >= 5
    assert after['redis_db_keys{db="db0"}'] > 1
    assert after["redis_commands_processed_total"] > before["redis_commands_processed_total"]
    # The fields the store adds for dashboards beyond the cache counters.
    assert after["redis_memory_used_peak_bytes"] >= after["redis_memory_used_bytes"]
    assert after["redis_total_system_memory_bytes"] > after["redis_memory_max_bytes"]
    assert after["redis_cpu_user_seconds_total"] + after["redis_cpu_sys_seconds_total"] > 0
    assert after["redis_connected_slaves"] == 0
    assert any(
        name.startswith("redis_instance_info{") and 'role="master"' in name for name in after
    )
