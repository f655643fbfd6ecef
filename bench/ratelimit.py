"""Rate limit round trip: ``cache.rate_limit`` on the store (``BLINK.RATELIMIT``) against the
same call on redis-server (the GCRA Lua script by ``EVALSHA``), same run, same client code:

    python -m bench.ratelimit [--calls 20000] [--keys 100] [--rounds 5]

Both servers run at once; each round makes ``--calls`` sequential calls spread over ``--keys``
keys (a limit that is never reached, so every call writes) on one server, then on the other.
Reports the medians over rounds of the calls per second and the p50/p99 latency per server,
and the median of the per-round store / Redis ratios of calls per second.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from bench.stampede import SERVERS
from blinkstore_gunicorn import Cache


def one_round(cache: Cache, calls: int, keys: int) -> tuple[float, float, float]:
    """(calls per second, p50 us, p99 us) of ``calls`` sequential rate_limit calls."""
    names = [f"rl:{index}" for index in range(keys)]
    latencies: list[float] = []
    clock = time.perf_counter
    started = clock()
    for index in range(calls):
        before = clock()
        cache.rate_limit(names[index % keys], 1_000_000, 60)
        latencies.append(clock() - before)
    elapsed = clock() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e6
    p99 = latencies[int(len(latencies) * 0.99)] * 1e6
    return calls / elapsed, p50, p99


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in SERVERS}
    ratios: list[float] = []
    with contextlib.ExitStack() as stack:
        caches = {
            name: stack.enter_context(Cache(stack.enter_context(server())))
            for name, server in SERVERS.items()
        }
        for cache in caches.values():
            cache.rate_limit("warm-up", 1, 1)  # connect and load the script first
        # Both servers run side by side and take turns, so drifts of a shared machine hit both.
        for _ in range(args.rounds):
            for name, cache in caches.items():
                rounds[name].append(one_round(cache, args.calls, args.keys))
            ratios.append(rounds["blinkstore"][-1][0] / rounds["redis"][-1][0])
    print(f"{'server':<14}{'calls/s':>12}{'p50 us':>10}{'p99 us':>10}")
    for name, measured in rounds.items():
        rate, p50, p99 = (statistics.median(r[i] for r in measured) for i in range(3))
        print(f"{name:<14}{rate:>12,.0f}{p50:>10.1f}{p99:>10.1f}")
    print(
        f"store / redis calls per second: {statistics.median(ratios):.2f}x "
        f"(median of {args.rounds} per-round ratios; range {min(ratios):.2f}-{max(ratios):.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
