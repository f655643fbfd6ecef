"""Latency of a cached GET under gunicorn: the shared store vs a per-process dict.

Both endpoints live in the same app under the same gunicorn (2 workers, the plugin's config):
``/get`` reads the shared store through the client the plugin handed the request,
``/local/get`` reads a module-level dict in the worker. The difference is the price of sharing
one cache between workers (a Unix-socket round trip per read). Each run sends ``--requests``
GETs per endpoint over one keep-alive httpx client, alternating endpoints in blocks so both
see the same machine load; the figures are medians over ``--runs`` runs.

``python -m bench.gunicorn [--requests N] [--runs N] [--worker-class sync,asgi,...]``
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from harness.gunicorn import CONF, gunicorn

APP_FOR_WORKER = {"uvicorn_worker.UvicornWorker": "asgi_app:app", "asgi": "asgi_app:app"}


@contextlib.contextmanager
def _gunicorn(worker_class: str) -> Iterator[str]:
    """A gunicorn master with the plugin and 2 ``worker_class`` workers; yields its base URL."""
    app = APP_FOR_WORKER.get(worker_class, "wsgi_app:app")
    args = [*CONF, "--workers", "2", "--worker-class", worker_class, "--log-level", "warning", app]
    with tempfile.TemporaryDirectory() as cwd, gunicorn(args, Path(cwd)) as server:
        yield server.url


def _p50_us(client: httpx.Client, path: str, count: int) -> float:
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        reply = client.get(path)
        timings.append(time.perf_counter() - start)
        if reply.status_code != 200:
            raise RuntimeError(f"GET {path}: {reply.status_code}")
    return statistics.median(timings) * 1e6


def measure(worker_class: str, requests: int, runs: int) -> tuple[float, float]:
    """Median over runs of the p50 latency (µs) of the shared-store and per-process GETs."""
    shared: list[float] = []
    local: list[float] = []
    with _gunicorn(worker_class) as base, httpx.Client(base_url=base, timeout=10) as client:
        # Every worker gets the value in its dict, and the store gets it once.
        client.get("/set?key=bench&value=" + "x" * 100)
        for _ in range(50):
            client.get("/local/set?key=bench&value=" + "x" * 100)
            httpx.get(base + "/local/set?key=bench&value=" + "x" * 100)
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
