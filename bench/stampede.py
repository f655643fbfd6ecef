"""A cache stampede: many callers in several processes ask for one cold key at once.

Compares plain get-then-set (every caller that misses runs the loader) with ``get_or_set``
(single-flight), on redis-server and on the store, same run:

    python -m bench.stampede [--processes 4] [--threads 25] [--loader-ms 100] [--rounds 5]

Reports, per strategy and server, the median over rounds of the loader calls per stampede
and of the p99 and max caller latency.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from bench import print_rows
from blinkstore_gunicorn import Cache
from harness.processes import blinkstore_process, redis_server_process


@contextmanager
def _store() -> Iterator[str]:
    with blinkstore_process() as store:
        yield store.url


@contextmanager
def _redis() -> Iterator[str]:
    with redis_server_process() as redis:
        yield redis.redis_url


SERVERS: dict[str, Callable[[], AbstractContextManager[str]]] = {
    "redis": _redis,
    "blinkstore": _store,
}
STRATEGIES = ("get-then-set", "get_or_set")


def _caller(cache: Cache, strategy: str, key: str, loader: Callable[[], str]) -> None:
    if strategy == "get_or_set":
        cache.get_or_set(key, loader, ttl=60)
        return
    if cache.get(key) is None:
        cache.set(key, loader(), ttl=60)


def _process(
    url: str,
    strategy: str,
    key: str,
    threads: int,
    loader_ms: int,
    barrier: Any,
    out: Any,
) -> None:
    calls = 0
    lock = threading.Lock()
    latencies: list[float] = []

    def loader() -> str:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(loader_ms / 1000)  # the database query the cache protects
        return "x" * 256

    cache = Cache(url, max_connections=threads)
    cache.ping()  # connect before the clock starts
    start_line = threading.Barrier(threads)

    def thread_main() -> None:
        start_line.wait()
        started = time.perf_counter()
        _caller(cache, strategy, key, loader)
        latencies.append(time.perf_counter() - started)

    workers = [threading.Thread(target=thread_main) for _ in range(threads - 1)]
    barrier.wait(30)  # every process is connected and ready
    for worker in workers:
        worker.start()
    thread_main()
    for worker in workers:
        worker.join()
    cache.close()
    out.put((calls, latencies))


def stampede(
    url: str, strategy: str, processes: int, threads: int, loader_ms: int
) -> dict[str, float]:
    """One stampede on a fresh key: loader calls and caller latencies (ms)."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes)
    out = context.Queue()
    key = f"stampede:{uuid.uuid4().hex}"
    workers = [
        context.Process(
            target=_process, args=(url, strategy, key, threads, loader_ms, barrier, out)
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    calls = 0
    latencies: list[float] = []
    try:
        for _ in workers:
            process_calls, process_latencies = out.get(timeout=120)
            calls += process_calls
            latencies.extend(process_latencies)
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    latencies.sort()
    return {
        "loader_calls": calls,
        "p99_ms": latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def run(
    processes: int = 4, threads: int = 25, loader_ms: int = 100, rounds: int = 5
) -> list[dict[str, object]]:
    """Every strategy on every server, ``rounds`` stampedes each; medians."""
    rows: list[dict[str, object]] = []
    for server, start in SERVERS.items():
        with start() as url:
            for strategy in STRATEGIES:
                samples = [
                    stampede(url, strategy, processes, threads, loader_ms) for _ in range(rounds)
                ]
                rows.append(
                    {
                        "server": server,
                        "strategy": strategy,
                        "callers": processes * threads,
                        "loader_calls": statistics.median(s["loader_calls"] for s in samples),
                        "p99_ms": round(statistics.median(s["p99_ms"] for s in samples), 1),
                        "max_ms": round(statistics.median(s["max_ms"] for s in samples), 1),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=25, help="callers per process")
    parser.add_argument("--loader-ms", type=int, default=100, help="simulated query time")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = run(args.processes, args.threads, args.loader_ms, args.rounds)
    print_rows(rows, 14)
    print(f"(loader takes {args.loader_ms} ms; medians of {args.rounds} stampedes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
