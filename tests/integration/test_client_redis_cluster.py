"""Redis Cluster through ``redis+cluster://`` and ``?cluster=true``: a real 3-primary cluster."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from blinkstore_gunicorn.client import AsyncCache, Cache, CacheConfigError

pytestmark = pytest.mark.redis

REDIS_CLI = shutil.which("redis-cli")
REDIS_SERVER = shutil.which("redis-server")


def _free_ports(count: int) -> list[int]:
    # Cluster nodes also listen on port + 10000 (the bus): pick ports whose bus port is free.
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 < 65536 and port not in ports:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            ports.append(port)
    return ports


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server and redis-cli are needed")
    directory = Path(tmp_path_factory.mktemp("cluster"))
    ports = _free_ports(3)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            command = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1"]
            command += ["--cluster-enabled", "yes", "--dir", str(directory)]
            command += ["--cluster-config-file", str(directory / f"nodes-{port}.conf")]
            command += ["--save", "", "--appendonly", "no"]
            procs.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        deadline = time.monotonic() + 10
        for port in ports:
            while (
                subprocess.run(
                    [REDIS_CLI, "-p", str(port), "ping"], capture_output=True, check=False
                ).stdout.strip()
                != b"PONG"
            ):
                assert time.monotonic() < deadline, "cluster nodes did not start"
                time.sleep(0.05)
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            check=True,
            timeout=30,
        )
        while (
            b"cluster_state:ok"
            not in subprocess.run(
                [REDIS_CLI, "-p", str(ports[0]), "cluster", "info"],
                capture_output=True,
                check=False,
            ).stdout
        ):
            assert time.monotonic() < deadline + 10, "cluster did not become ok"
            time.sleep(0.05)
        yield ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def test_sync_cluster_semantics(cluster: list[int]) -> None:
    cache = Cache(f"redis+cluster://127.0.0.1:{cluster[0]}", namespace="ns")
    other = Cache(f"redis://127.0.0.1:{cluster[1]}?cluster=true")
    values = {f"k{i}": i for i in range(200)}
    cache.set_many(values, ttl=60)
    assert cache.get_many(list(values)) == values
    assert sorted(cache.keys("k1?")) == sorted(f"k{i}" for i in range(10, 20))
    assert len(list(cache.keys())) == 200
    assert cache.incr("counter") == 1 and cache.get("counter") == 1
    other.set("outside", "x")
    stats = cache.stats()
    assert stats["cluster_nodes"] == 3
    assert stats["keys"] == 202
    cache.clear()
    assert list(cache.keys()) == []
    assert other.get("outside") == "x"
    assert other.delete_many(["outside", "ns:k1", "missing"]) == 1
    other.set("a", 1)
    other.clear()
    assert list(other.keys()) == []
    cache.close()
    other.close()


def test_async_cluster_semantics(cluster: list[int]) -> None:
    async def main() -> None:
        async with AsyncCache(f"redis+cluster://127.0.0.1:{cluster[0]}", namespace="a") as cache:
            values = {f"k{i}": [i] for i in range(100)}
            await cache.set_many(values)
            assert await cache.get_many(list(values)) == values
            assert len([k async for k in cache.keys()]) == 100  # noqa: SIM118 (our keys())
            assert await cache.delete_many(list(values)[:50]) == 50
            assert (await cache.stats())["keys"] == 50
            await cache.clear()
            assert [k async for k in cache.keys()] == []  # noqa: SIM118 (our keys())

    asyncio.run(main())


def test_cluster_callers_wait_for_a_connection(cluster: list[int]) -> None:
    # Many more concurrent callers than connections per node: they wait, none fails.
    url = f"redis+cluster://127.0.0.1:{cluster[0]}"
    callers, pool = 200, 4

    async def main() -> int | None:
        async with AsyncCache(url, namespace="wait", max_connections=pool) as cache:
            await asyncio.gather(*(cache.incr("hits") for _ in range(callers)))
            return await cache.get("hits")

    assert asyncio.run(main()) == callers
    with Cache(url, namespace="wait", max_connections=pool) as cache:

        def work(_: int) -> None:
            for _ in range(10):
                cache.incr("hits")

        with ThreadPoolExecutor(max_workers=32) as threads:
            list(threads.map(work, range(callers // 10)))
        assert cache.get("hits") == 2 * callers
        cache.clear()


def test_cluster_publishes_but_does_not_subscribe(cluster: list[int]) -> None:
    url = f"redis+cluster://127.0.0.1:{cluster[0]}"
    with Cache(url) as cache:
        assert cache.publish("news", "hello") == 0
        with pytest.raises(CacheConfigError, match="subscribe is not offered on a cluster URL"):
            cache.subscribe("news").open()
