"""Host-wide locks: the store's ``cache.lock()`` vs redis-server, same run.

    python -m bench.locks [--iterations 2000] [--processes 4] [--turns 200] [--rounds 5]

Two measurements, each the median of ``--rounds`` runs:

* **round trip**: one process acquires and releases a free lock, ``--iterations`` times; the
  time of one acquire + release, in microseconds.
* **contended**: ``--processes`` processes take turns with one lock, ``--turns`` times each,
  holding it for nothing; acquisitions per second (all processes together) and the longest
  wait of one ``acquire`` (a polling lock is unfair: the releasing process takes it again
  while the others sleep).

Peers: our ``Cache.lock`` on the store (parked waiters), our ``Cache.lock`` on redis-server
(``SET NX PX`` and scripts, polling), and redis-py's own ``Lock`` on redis-server with its
defaults (polling every 0.1 s). Ratios are to redis-py's ``Lock``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from bench import print_rows
from blinkstore_gunicorn import Cache
from harness.processes import blinkstore_process, redis_server_process

#: A peer: (name, factory of a lock for a lock name given the server URLs).
Peer = tuple[str, Callable[[dict[str, str], str], Any]]


def _ours(server: str) -> Callable[[dict[str, str], str], Any]:
    def make(urls: dict[str, str], name: str) -> Any:
        return Cache(urls[server]).lock(name, timeout=10)

    return make


def _redis_py(urls: dict[str, str], name: str) -> Any:
    return redis.Redis.from_url(urls["redis-py"]).lock(name, timeout=10)


PEERS: list[Peer] = [
    ("store cache.lock", _ours("store")),
    ("redis cache.lock", _ours("redis")),
    ("redis redis-py Lock", _redis_py),
]


def round_trip(make: Callable[[dict[str, str], str], Any], urls: dict[str, str], n: int) -> float:
    """Microseconds per acquire + release of a free lock."""
    lock = make(urls, f"bench:{uuid.uuid4().hex}")
    lock.acquire()
    lock.release()  # connected before the clock starts
    started = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return (time.perf_counter() - started) / n * 1e6


def _taker(
    make: Callable[[dict[str, str], str], Any],
    urls: dict[str, str],
    name: str,
    turns: int,
    barrier: Any,
    out: Any,
) -> None:
    lock = make(urls, name)
    waits: list[float] = []
    barrier.wait(30)
    for _ in range(turns):
        started = time.perf_counter()
        lock.acquire()
        waits.append(time.perf_counter() - started)
        lock.release()
    out.put(waits)


def contended(
    make: Callable[[dict[str, str], str], Any],
    urls: dict[str, str],
    processes: int,
    turns: int,
) -> tuple[float, float]:
    """One lock that ``processes`` processes take turns with: acquisitions per second (all
    together) and the longest wait of one ``acquire`` in ms (how unfair the hand-over is)."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes + 1)
    out = context.Queue()
    name = f"bench:{uuid.uuid4().hex}"
    workers = [
        context.Process(target=_taker, args=(make, urls, name, turns, barrier, out))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    waits: list[float] = []
    try:
        barrier.wait(30)
        started = time.perf_counter()
        for _ in workers:
            waits.extend(out.get(timeout=300))
        took = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    return processes * turns / took, max(waits) * 1000


@contextmanager
def _servers() -> Iterator[dict[str, str]]:
    with blinkstore_process() as store, redis_server_process() as server:
        # Every peer on a Unix socket; redis-py spells redis-server's URL unix://.
        yield {"store": store.url, "redis": server.redis_url, "redis-py": server.url}


def run(
    iterations: int = 2000, processes: int = 4, turns: int = 200, rounds: int = 5
) -> list[dict[str, object]]:
    """Both measurements for every peer, the peers' rounds interleaved; medians, ratios."""
    trips: dict[str, list[float]] = {name: [] for name, _ in PEERS}
    rates: dict[str, list[float]] = {name: [] for name, _ in PEERS}
    waits: dict[str, list[float]] = {name: [] for name, _ in PEERS}
    with _servers() as urls:
        # Every round trip before the first fork: the contended runs' processes come after.
        for _ in range(rounds):
            for name, make in PEERS:
                trips[name].append(round_trip(make, urls, iterations))
        for _ in range(rounds):
            for name, make in PEERS:
                rate, wait = contended(make, urls, processes, turns)
                rates[name].append(rate)
                waits[name].append(wait)
    peer = PEERS[-1][0]
    peer_trip, peer_rate = statistics.median(trips[peer]), statistics.median(rates[peer])
    rows: list[dict[str, object]] = []
    for name, _ in PEERS:
        trip, rate = statistics.median(trips[name]), statistics.median(rates[name])
        rows.append(
            {
                "lock": name,
                "round_trip_us": round(trip, 1),
                "trip_speedup": round(peer_trip / trip, 2),
                "contended_per_s": round(rate),
                "contended_speedup": round(rate / peer_rate, 1),
                "contended_max_wait_ms": round(statistics.median(waits[name]), 1),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=2000, help="round trips per run")
    parser.add_argument("--processes", type=int, default=4, help="contending processes")
    parser.add_argument("--turns", type=int, default=200, help="acquisitions per process")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = run(args.iterations, args.processes, args.turns, args.rounds)
    print_rows(rows, 21)
    print(
        f"(medians of {args.rounds} runs; speedups are ratios to redis-py's Lock; "
        f"contended: {args.processes} processes x {args.turns} acquisitions)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
