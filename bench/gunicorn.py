"""Latency of a cached GET under gunicorn: the shared store vs a per-process dict.

Both endpoints live in the same app under the same gunicorn (2 workers, the plugin's config):
``/get`` reads the shared store through the client the plugin handed the request,
``/local/get`` reads a module-level dict in the worker. The difference is the price of sharing
one cache between workers (a Unix-socket round trip per read). Each run sends ``--requests``
GETs per endpoint over one keep-alive httpx client, alternating endpoints in blocks so both
see the same machine load; the figures are medians over ``--runs`` runs.

With ``--wrk``, throughput instead: wrk (Debian's ``wrk``) holds ``--connections`` keep-alive
connections on each endpoint in turn for ``--seconds``; the figure is requests/s, shared store
over dict, the median of the runs' ratios. Latency with one client shows what a read costs;
throughput with many shows what sharing costs a busy service.

With ``--upstream``, each store is a near cache (``BLINKSTORE_UPSTREAM``) of a redis-server the
suite starts: ``/get`` then reads what the store fetched from Redis (from the shared region),
and a third endpoint, ``/redis/get``, reads the same key with redis.asyncio alone (one client
per worker), measured in the same runs.

``python -m bench.gunicorn [--requests N] [--runs N] [--worker-class sync,asgi,...]
[--wrk [--connections N] [--seconds S]] [--upstream]``
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from harness.gunicorn import CONF, free_port, gunicorn
from harness.processes import redis_server_process

APP_FOR_WORKER = {"uvicorn_worker.UvicornWorker": "asgi_app:app", "asgi": "asgi_app:app"}


#: Set by ``--upstream``: the environment that makes the store a near cache.
UPSTREAM_ENV: dict[str, str] = {}


@contextlib.contextmanager
def _gunicorn(worker_class: str) -> Iterator[str]:
    """A gunicorn master with the plugin and 2 ``worker_class`` workers; yields its base URL."""
    app = APP_FOR_WORKER.get(worker_class, "wsgi_app:app")
    args = [*CONF, "--workers", "2", "--worker-class", worker_class, "--log-level", "warning", app]
    with (
        tempfile.TemporaryDirectory() as cwd,
        gunicorn(args, Path(cwd), env=UPSTREAM_ENV) as server,
    ):
        yield server.url


@contextlib.contextmanager
def _upstream(enabled: bool) -> Iterator[None]:
    """With ``enabled``, a redis-server the stores are near caches of, for the block."""
    if not enabled:
        yield
        return
    port = free_port()
    with redis_server_process("--port", str(port)):
        UPSTREAM_ENV["BLINKSTORE_UPSTREAM"] = f"redis://127.0.0.1:{port}/0"
        UPSTREAM_ENV["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        try:
            yield
        finally:
            UPSTREAM_ENV.clear()


def _p50_us(client: httpx.Client, path: str, count: int) -> float:
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        reply = client.get(path)
        timings.append(time.perf_counter() - start)
        if reply.status_code != 200:
            raise RuntimeError(f"GET {path}: {reply.status_code}")
    return statistics.median(timings) * 1e6


def _fill(base: str, client: httpx.Client) -> None:
    """Every worker gets the value in its dict, and the store gets it once."""
    client.get("/set?key=bench&value=" + "x" * 100)
    for _ in range(50):
        client.get("/local/set?key=bench&value=" + "x" * 100)
        httpx.get(base + "/local/set?key=bench&value=" + "x" * 100)


def _wrk_rps(url: str, connections: int, seconds: int) -> float:
    """Requests/s wrk reaches on ``url``; raises when any request failed."""
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", url]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests on {url}:\n{out}")
    found = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    if found is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    return float(found.group(1))


#: The endpoints ``--wrk`` compares; the per-process dict's is the reference.
SHARED, LOCAL, REDIS = "/get?key=bench", "/local/get?key=bench", "/redis/get?key=bench"


def measure_throughput(
    worker_class: str, connections: int, seconds: int, runs: int
) -> dict[str, tuple[float, float]]:
    """Per endpoint: the median requests/s and the median of the runs' ratios to the
    per-process dict (each run measures every endpoint back to back, the order rotating)."""
    paths = [SHARED, LOCAL, *([REDIS] if UPSTREAM_ENV else [])]
    rps: dict[str, list[float]] = {path: [] for path in paths}
    ratios: dict[str, list[float]] = {path: [] for path in paths}
    with _gunicorn(worker_class) as base, httpx.Client(base_url=base, timeout=10) as client:
        _fill(base, client)
        for path in paths:
            for _ in range(20):  # on new connections, so every worker imports and connects
                httpx.get(base + path, timeout=30).raise_for_status()
            _wrk_rps(base + path, connections, 1)  # warm-up
        for run in range(runs):
            order = paths[run % len(paths) :] + paths[: run % len(paths)]
            found = {path: _wrk_rps(base + path, connections, seconds) for path in order}
            for path in paths:
                rps[path].append(found[path])
                ratios[path].append(found[path] / found[LOCAL])
    return {path: (statistics.median(rps[path]), statistics.median(ratios[path])) for path in paths}


def measure(worker_class: str, requests: int, runs: int) -> tuple[float, float]:
    """Median over runs of the p50 latency (µs) of the shared-store and per-process GETs."""
    shared: list[float] = []
    local: list[float] = []
    with _gunicorn(worker_class) as base, httpx.Client(base_url=base, timeout=10) as client:
        _fill(base, client)
        _p50_us(client, "/get?key=bench", 200)  # warm-up
        _p50_us(client, "/local/get?key=bench", 200)
        block = max(1, requests // 10)
        for _ in range(runs):
            run_shared: list[float] = []
            run_local: list[float] = []
            for _ in range(requests // block):
                run_shared.append(_p50_us(client, "/get?key=bench", block))
                run_local.append(_p50_us(client, "/local/get?key=bench", block))
            shared.append(statistics.median(run_shared))
            local.append(statistics.median(run_local))
    return statistics.median(shared), statistics.median(local)


def main(argv: list[str] | None = None) -> int:
    """Print the p50 latencies and their ratio for each worker class."""
    parser = argparse.ArgumentParser(prog="python -m bench.gunicorn", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="GETs per endpoint per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--worker-class",
        default="sync,uvicorn_worker.UvicornWorker",
        help="comma-separated gunicorn worker classes",
    )
    parser.add_argument("--wrk", action="store_true", help="requests/s with wrk instead")
    parser.add_argument("--connections", type=int, default=32, help="wrk's connections")
    parser.add_argument("--seconds", type=int, default=5, help="wrk's duration per run")
    parser.add_argument(
        "--upstream", action="store_true", help="the store as a near cache of a redis-server"
    )
    args = parser.parse_args(argv)
    with _upstream(args.upstream):
        if args.wrk:
            return _main_throughput(args)
        return _main_latency(args)


def _main_latency(args: argparse.Namespace) -> int:
    print(
        f"gunicorn, 2 workers, p50 of GET latency (client side, keep-alive), median of "
        f"{args.runs} runs x {args.requests} requests per endpoint"
    )
    print(f"{'worker class':32} {'shared store':>14} {'per-process dict':>18} {'ratio':>7}")
    for worker_class in args.worker_class.split(","):
        shared, local = measure(worker_class, args.requests, args.runs)
        print(
            f"{worker_class:32} {shared:11.0f} µs {local:15.0f} µs {shared / local:6.2f}x",
            flush=True,
        )
    return 0


def _main_throughput(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("--wrk needs wrk: install Debian's wrk package", file=sys.stderr)
        return 2
    print(
        f"gunicorn, 2 workers, requests/s with wrk ({args.connections} connections, "
        f"{args.seconds:g} s per endpoint), median of {args.runs} runs"
    )
    redis_head = f" {'redis.asyncio':>14} {'ratio':>7}" if UPSTREAM_ENV else ""
    print(
        f"{'worker class':32} {'shared store':>14} {'per-process dict':>18} {'ratio':>7}"
        + redis_head
    )
    for worker_class in args.worker_class.split(","):
        found = measure_throughput(worker_class, args.connections, args.seconds, args.runs)
        (shared, ratio), (local, _) = found[SHARED], found[LOCAL]
        line = f"{worker_class:32} {shared:10.0f} r/s {local:14.0f} r/s {ratio:6.2f}x"
        if REDIS in found:
            redis_rps, redis_ratio = found[REDIS]
            line += f" {redis_rps:10.0f} r/s {redis_ratio:6.2f}x"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
