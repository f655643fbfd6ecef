"""Client libraries compared on the same server in the same run: ours vs redis-py (hiredis).

Both clients talk to the same redis-server over a Unix socket, so the ratio compares the
clients alone; our client against ``blinkstore serve`` is shown as an extra column. Each
scenario runs several times, alternating clients, and reports medians:

    python -m bench.client [--runs 5] [--requests 20000] [--quick]

By default the benchmark process and both servers are pinned to one CPU, so the figures
measure the clients rather than the cost of cross-CPU wake-ups (large in VMs); ``--no-pin``
measures as scheduled.

Scenarios (256 B values): sync GET/SET with one thread (p50 latency), sync GET/SET with 8
threads (throughput), asyncio GET/SET with 100 concurrent tasks (throughput). Targets: sync GET
p50 <= 0.7x redis-py's; async GET throughput with 100 tasks >= 1.5x redis.asyncio's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from blinkstore_gunicorn.client import AsyncCache, Cache
from harness.processes import blinkstore_process, redis_server_process

VALUE = b"v" * 256
KEY = "bench:client"
THREADS = 8
TASKS = 100
TARGET_SYNC_P50 = 0.7
TARGET_ASYNC_OPS = 1.5


@dataclass(frozen=True)
class Scenario:
    """One workload: an operation, a concurrency mode, and what is reported."""

    op: str  # "GET" or "SET"
    mode: str  # "sync-1", "sync-8", "async-100"

    @property
    def label(self) -> str:
        return {
            "sync-1": f"sync {self.op} 256 B, 1 thread",
            "sync-8": f"sync {self.op} 256 B, {THREADS} threads",
            "async-100": f"async {self.op} 256 B, {TASKS} tasks",
        }[self.mode]

    @property
    def metric(self) -> str:
        """``p50_us`` (lower is better) or ``ops_per_s`` (higher is better)."""
        return "p50_us" if self.mode == "sync-1" else "ops_per_s"


SCENARIOS = [
    Scenario(op, mode) for mode in ("sync-1", "sync-8", "async-100") for op in ("GET", "SET")
]


# -- sync -------------------------------------------------------------------------------------


def _sync_ops(client: str, path: str) -> tuple[Callable[[], Any], Callable[[], Any], Any]:
    """(get, set, closer) for one sync client on ``path``."""
    if client == "ours":
        cache = Cache(f"unix://{path}")
        return (lambda: cache.get(KEY)), (lambda: cache.set(KEY, VALUE)), cache
    peer = redis.Redis(unix_socket_path=path)
    return (lambda: peer.get(KEY)), (lambda: peer.set(KEY, VALUE)), peer


def sync_latency(client: str, path: str, op: str, requests: int) -> float:
    """p50 latency in microseconds of ``requests`` calls from one thread."""
    get, put, closer = _sync_ops(client, path)
    put()
    call = get if op == "GET" else put
    for _ in range(min(500, requests)):
        call()
    clock = time.perf_counter_ns
    samples = [0] * requests
    for i in range(requests):
        start = clock()
        call()
        samples[i] = clock() - start
    closer.close()
    return statistics.median(samples) / 1000


def sync_throughput(client: str, path: str, op: str, requests: int, threads: int) -> float:
    """Calls per second with ``threads`` threads sharing one client."""
    get, put, closer = _sync_ops(client, path)
    put()
    call = get if op == "GET" else put
    per_thread = max(1, requests // threads)
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            call()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    closer.close()
    return per_thread * threads / elapsed


# -- asyncio -----------------------------------------------------------------------------------


async def _async_throughput(client: str, path: str, op: str, requests: int, tasks: int) -> float:
    if client == "ours":
        cache = AsyncCache(f"unix://{path}")
        get: Callable[[], Any] = lambda: cache.get(KEY)  # noqa: E731
        put: Callable[[], Any] = lambda: cache.set(KEY, VALUE)  # noqa: E731
        close: Callable[[], Any] = cache.close
    else:
        peer = redis.asyncio.Redis(unix_socket_path=path, max_connections=tasks)
        get = lambda: peer.get(KEY)  # noqa: E731
        put = lambda: peer.set(KEY, VALUE)  # noqa: E731
        close = peer.aclose
    await put()
    call = get if op == "GET" else put
    per_task = max(1, requests // tasks)

    async def work(count: int) -> None:
        for _ in range(count):
            await call()

    await asyncio.gather(*(work(5) for _ in range(tasks)))  # warm up: open connections
    start = time.perf_counter()
    await asyncio.gather(*(work(per_task) for _ in range(tasks)))
    elapsed = time.perf_counter() - start
    await close()
    return per_task * tasks / elapsed


def async_throughput(client: str, path: str, op: str, requests: int, tasks: int) -> float:
    """Calls per second from ``tasks`` concurrent coroutines sharing one client."""
    return asyncio.run(_async_throughput(client, path, op, requests, tasks))


def measure(client: str, path: str, scenario: Scenario, requests: int) -> float:
    """One run of ``scenario``: its metric for ``client`` ("ours" or "peer") on ``path``."""
    if scenario.mode == "sync-1":
        return sync_latency(client, path, scenario.op, requests)
    if scenario.mode == "sync-8":
        return sync_throughput(client, path, scenario.op, requests, THREADS)
    return async_throughput(client, path, scenario.op, requests, TASKS)


# -- the suite ---------------------------------------------------------------------------------


@contextmanager
def _servers(with_store: bool, pin: bool) -> Iterator[dict[str, str]]:
    """Socket paths: redis-server (both clients) and, optionally, ``blinkstore serve``.

    With ``pin``, this process (and the threads it starts) and the servers share one CPU:
    a wake-up across CPUs costs ~60 us in this kind of VM and would drown the client
    difference in scheduler noise; both peers are measured under the same placement.
    """
    with ExitStack() as stack:
        redis_server = stack.enter_context(redis_server_process())
        paths = {"redis": redis_server.unix_path}
        pids = [redis_server.proc.pid]
        if with_store:
            store = stack.enter_context(blinkstore_process("--memory-limit", "0"))
            assert store.unix_path is not None
            paths["store"] = store.unix_path
            pids.append(store.pid)
        if pin:
            original = os.sched_getaffinity(0)
            cpu = {max(original)}
            for pid in [0, *pids]:
                os.sched_setaffinity(pid, cpu)
            stack.callback(os.sched_setaffinity, 0, original)
        yield paths


def run(
    runs: int = 5,
    requests: int = 20000,
    quick: bool = False,
    with_store: bool = True,
    pin: bool = True,
) -> dict[str, Any]:
    """Measure every scenario ``runs`` times; return the medians and ratios.

    ``{"runs": .., "requests": .., "rows": [{"scenario", "metric", "ours", "peer",
    "ours_store", "ratio"}...], "targets": {"sync_get_p50": (ratio, ok), ...}}``; the
    ratio is ours / peer (latency: lower is better; throughput: higher is better).
    """
    if quick:
        runs, requests = min(runs, 3), min(requests, 3000)
    rows: list[dict[str, Any]] = []
    with _servers(with_store, pin and hasattr(os, "sched_setaffinity")) as paths:
        for scenario in SCENARIOS:
            samples: dict[str, list[float]] = {"ours": [], "peer": [], "ours_store": []}
            for index in range(runs):
                order = ("ours", "peer") if index % 2 == 0 else ("peer", "ours")
                for client in order:
                    samples[client].append(measure(client, paths["redis"], scenario, requests))
                if "store" in paths:
                    samples["ours_store"].append(
                        measure("ours", paths["store"], scenario, requests)
                    )
            ours = statistics.median(samples["ours"])
            peer = statistics.median(samples["peer"])
            rows.append(
                {
                    "scenario": scenario.label,
                    "metric": scenario.metric,
                    "ours": ours,
                    "peer": peer,
                    "ours_store": statistics.median(samples["ours_store"])
                    if samples["ours_store"]
                    else None,
                    "ratio": ours / peer,
                }
            )
    by_label = {row["scenario"]: row for row in rows}
    sync_get = by_label[Scenario("GET", "sync-1").label]["ratio"]
    async_get = by_label[Scenario("GET", "async-100").label]["ratio"]
    return {
        "runs": runs,
        "requests": requests,
        "pinned": pin and hasattr(os, "sched_setaffinity"),
        "rows": rows,
        "targets": {
            "sync_get_p50": (sync_get, sync_get <= TARGET_SYNC_P50),
            "async_get_100_tasks": (async_get, async_get >= TARGET_ASYNC_OPS),
        },
    }


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} us" if metric == "p50_us" else f"{value:,.0f}/s"


def print_table(result: dict[str, Any]) -> None:
    """The figures as a plain-text table."""
    headers = ("scenario", "ours", "redis-py", "ratio", "ours @ blinkstore")
    lines = [
        (
            row["scenario"],
            _fmt(row["ours"], row["metric"]),
            _fmt(row["peer"], row["metric"]),
            f"{row['ratio']:.2f}x",
            _fmt(row["ours_store"], row["metric"]),
        )
        for row in result["rows"]
    ]
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *lines, strict=False)
    ]
    for cells in (headers, *lines):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)))
    print(
        f"\nmedians of {result['runs']} runs x {result['requests']} requests; both clients on the "
        "same redis-server (Unix socket); redis-py uses hiredis when installed "
        f"(here: {redis.utils.HIREDIS_AVAILABLE}); ratio = ours / redis-py; "
        + ("clients and servers pinned to one CPU" if result["pinned"] else "not pinned")
    )
    for name, (ratio, ok) in result["targets"].items():
        goal = f"<= {TARGET_SYNC_P50}" if name == "sync_get_p50" else f">= {TARGET_ASYNC_OPS}"
        print(f"target {name}: {ratio:.2f}x (goal {goal}x) {'met' if ok else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.client``."""
    parser = argparse.ArgumentParser(prog="python -m bench.client", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--quick", action="store_true", help="3 runs x 3000 requests")
    parser.add_argument(
        "--no-store", action="store_true", help="skip the blinkstore column (redis-server only)"
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the scheduler place clients and servers (default: all on one CPU)",
    )
    args = parser.parse_args(argv)
    result = run(args.runs, args.requests, args.quick, not args.no_store, not args.no_pin)
    print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
