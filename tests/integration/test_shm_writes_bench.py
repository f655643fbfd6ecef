"""``bench/shm_writes.py`` stays runnable: a tiny run gives every figure for every peer."""

from __future__ import annotations

import shutil

import pytest
import redis

from bench import shm_writes
from harness.processes import REDIS_SERVER, RedisProcess

pytestmark = pytest.mark.redis


def test_publish_cpu_measures_fill_and_overwrite() -> None:
    for region in (False, True):
        figures = shm_writes.publish_cpu(200, region, keys=300)
        assert set(figures) == {"fill", "overwrite"}
        assert all(ns > 0 for ns in figures.values())


@pytest.mark.skipif(
    REDIS_SERVER is None or shutil.which("redis-benchmark") is None,
    reason="redis-server or redis-benchmark is not installed",
)
def test_tiny_redis_benchmark_run_has_every_peer_and_test() -> None:
    found, cpu, evicted = shm_writes.throughput(rounds=2, requests=2000)
    for figures in (found, cpu):
        assert set(figures) == {"SET", "INCR"}
        for peers in figures.values():
            assert set(peers) == {"on", "on, Python", "off", "redis"}
            assert all(len(rounds) == 2 and rounds[0] >= 0 for rounds in peers.values())
    assert all(rps[0] > 0 for peers in found.values() for rps in peers.values())
    assert evicted == {"on": 0, "on, Python": 0, "off": 0, "redis": 0}


def test_every_test_starts_from_an_empty_server(redis_server: RedisProcess) -> None:
    with redis.Redis(unix_socket_path=redis_server.unix_path) as client:
        client.set("left:over", "x")
        assert shm_writes.evicted_keys(redis_server.unix_path, flush=True) == 0
        assert client.dbsize() == 0


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        shm_writes.main(["--rounds", "0"])
    assert info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
