"""The near cache (``BLINKSTORE_UPSTREAM``): invalidation delay across hosts, a near hit
against redis-py's GET on the same Redis, and memory per host.

``python -m bench.nearcache [--rounds N] [--reads N] [--torture SECONDS] [--chart SVG]``
(``--chart`` draws the read costs and delays into an SVG file). Two stores (two
"hosts") in front of one redis-server on loopback TCP, started by ``harness.nearcache``.

- Invalidation delay: host A sets a key (the clock starts at A's acknowledgement), host B reads
  it in a tight loop until it sees the new value. p50/p99 of that delay.
- Hit: ``Cache.get`` of a 256-byte value on host B (from the shared region) against redis-py's
  ``GET`` of the same key on the same Redis; the ratio is what matters.
- Memory: the store keeps one copy per host. redis-py's own client-side cache
  (``cache_config=``) needs Redis >= 7.4; on an older server it is estimated as one copy of the
  same values per worker (what that design holds), and the output says so.
- ``--torture``: versions in values, writers on both hosts and straight on Redis, a reader per
  host; counts reads older than the last acknowledged write plus the measured p99 delay, torn
  or foreign values, and kills the tracking connections once halfway.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import redis

from bench.shm import bar_chart
from blinkstore_gunicorn import Cache
from harness.nearcache import NearHosts, kill_tracking, near_hosts

VALUE = b"v" * 256


def invalidation_delays(a: Cache, b: Cache, rounds: int) -> list[float]:
    """Seconds from A's acknowledged write to B's first read of it, ``rounds`` times."""
    delays = []
    for version in range(rounds):
        value = f"version-{version}"
        assert b.get("delay") != value
        a.set("delay", value)
        acked = time.perf_counter()
        while b.get("delay") != value:
            os.sched_yield()  # the stores and Redis share the host's cores with this loop
        delays.append(time.perf_counter() - acked)
    return delays


def per_call(function: object, count: int) -> float:
    """Seconds per call of ``function()`` (best of three runs)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(count):
            function()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - start) / count)
    return best


def torture(
    hosts: NearHosts,
    caches: list[Cache],
    seconds: float,
    allowance: float,
    *,
    pace: float = 0.0,
    host_every: int = 1,
) -> dict[str, int]:
    """Writers with increasing versions, readers checking what they see (see module doc).

    ``older`` counts reads that started ``allowance`` seconds after a write was acknowledged
    and still returned an older version; ``torn`` counts values that are not a version
    followed by the expected payload. The tracking connections are killed once, halfway.
    Writes come ``pace`` seconds apart; every ``host_every``-th one goes through a host (in
    turn), the others straight to Redis. A host drops its own copy when it writes, so the
    hosts' writes must be rarer than ``allowance`` for a missed invalidation to show.
    """
    acked: list[tuple[float, int]] = [(time.perf_counter(), 0)]
    hosts.call("SET", "torture", b"0:" + VALUE)
    stop = threading.Event()
    counts = [[0, 0, 0] for _ in caches]  # per reader: reads, older, torn

    def writer() -> None:
        version = 0
        while not stop.wait(pace):
            version += 1
            payload = b"%d:" % version + VALUE
            if version % host_every:
                hosts.call("SET", "torture", payload)
            else:
                caches[version // host_every % len(caches)].set("torture", payload)
            acked.append((time.perf_counter(), version))

    def reader(cache: Cache, mine: list[int]) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            raw = cache.get("torture")
            mine[0] += 1
            head, _, tail = raw.partition(b":") if isinstance(raw, bytes) else (b"", b"", b"")
            if tail != VALUE or not head.isdigit():
                mine[2] += 1
                continue
            floor = max((v for t, v in acked[-200:] if t + allowance < start), default=0)
            mine[1] += int(head) < floor

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(cache, mine))
        for cache, mine in zip(caches, counts, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(seconds / 2)
        kill_tracking(hosts)
        time.sleep(seconds / 2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return {
        name: sum(row[i] for row in counts) for i, name in enumerate(("reads", "older", "torn"))
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=8, help="for the memory estimate")
    parser.add_argument("--torture", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--chart", metavar="SVG", help="also draw the figures into this file")
    args = parser.parse_args(argv)
    with near_hosts(2) as hosts:
        a, b = (Cache(store.url) for store in hosts.stores)
        delays = sorted(invalidation_delays(a, b, args.rounds))
        p50 = statistics.median(delays)
        p99 = delays[int(len(delays) * 0.99) - 1]
        print(f"invalidation delay: p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us"
              f" ({args.rounds} writes on A, read on B)")  # fmt: skip
        a.set("hot", VALUE)
        b.get("hot")
        near = per_call(lambda: b.get("hot"), args.reads)
        peer = redis.Redis(port=hosts.port)
        plain = per_call(lambda: peer.get("hot"), args.reads // 10)
        print(f"hit: near cache {near * 1e6:.2f} us, redis-py GET {plain * 1e6:.1f} us,"
              f" {plain / near:.0f}x")  # fmt: skip
        if args.chart:
            figures = {
                "near-cache hit (Cache.get)": near * 1e6,
                "redis-py GET, same Redis": plain * 1e6,
                "invalidation delay p50": p50 * 1e6,
                "invalidation delay p99": p99 * 1e6,
            }
            with open(args.chart, "w", encoding="utf-8") as out:
                out.write(bar_chart("Near cache: a read, and another host's write", "µs", figures))
        keys = 10_000
        for index in range(keys):
            a.set(f"m:{index}", VALUE)
        for index in range(keys):
            b.get(f"m:{index}")
        info = hosts.store_info(1)
        fetched = int(info["near_fetched_bytes"])
        print(f"memory: {keys} values of {len(VALUE)} B: one copy per host ({fetched / 2**20:.1f}"
              f" MiB fetched); redis-py client-side caching (needs Redis >= 7.4, this is"
              f" {peer.info()['redis_version']}): estimated {args.workers} copies,"
              f" {args.workers * fetched / 2**20:.1f} MiB per host")  # fmt: skip
        if args.torture:
            # The largest delay measured above (p99 is exceeded by 1 % of reads by definition).
            allowance = max(delays[-1] * 1.5, 0.005)
            # A host writes every 80 ms: longer than the allowance, or a missed invalidation
            # would go unseen (a host drops its own copy when it writes).
            found = torture(hosts, [a, b], args.torture, allowance, pace=0.002, host_every=20)
            print(f"torture: {found} (allowance {allowance * 1e3:.1f} ms)")
        peer.close()
        a.close()
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
