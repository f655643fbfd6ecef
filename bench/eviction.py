"""Eviction quality: hit ratio of the engine against reference policies on a Zipf trace.

    python -m bench.eviction [--requests 1000000] [--keys 100000] [--alpha 0.99]
                             [--cache-fraction 0.1 ...] [--seed 1]

The trace is cache-aside traffic: a GET of a key drawn from a Zipf(alpha) distribution over
``--keys`` keys (fixed seed, so every run sees the same trace), and a SET on every miss. All
policies hold the same number of entries: the engine's memory limit is that many entries of the
fixed key/value size the trace uses. References, each written for clarity rather than speed:

* ``lru``: exact least-recently-used;
* ``redis-lru``: Redis's ``allkeys-lru`` approximation (5 random samples per eviction feeding a
  16-entry pool of the idlest candidates), with an exact logical clock (kinder to it than
  Redis's one-second LRU clock);
* ``sampled-5``: plain 5-sample LRU without the pool (Redis before 3.0);
* ``sieve``: SIEVE (NSDI'24), a FIFO with visited bits and a moving hand.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from blinkstore_gunicorn.engine import ENTRY_OVERHEAD, MemoryEngine

KEY_FORMAT = b"key:%08d"
VALUE = b"v" * 100
SAMPLES = 5
POOL_SIZE = 16


def zipf_trace(requests: int, keys: int, alpha: float, seed: int) -> list[int]:
    """``requests`` key ids in ``range(keys)``, id ``i`` drawn with weight ``1 / (i+1)**alpha``."""
    weights = [1.0 / (rank**alpha) for rank in range(1, keys + 1)]
    cumulative = list(itertools.accumulate(weights))
    return random.Random(seed).choices(range(keys), cum_weights=cumulative, k=requests)


class LRU:
    """Exact LRU over an ordered dict: the reference policy."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[int, None] = OrderedDict()

    def access(self, key: int) -> bool:
        """Look the key up, inserting it on a miss; return whether it was a hit."""
        if key in self.entries:
            self.entries.move_to_end(key)
            return True
        self.entries[key] = None
        if len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
        return False


class SampledLRU:
    """Redis-style approximate LRU: evict the idlest of a few random samples.

    With ``pool_size`` > 0, candidates accumulate in a pool kept across evictions (idlest
    first out), as Redis has done since 3.0; with 0 each eviction looks only at its samples.
    """

    def __init__(self, capacity: int, seed: int, samples: int = SAMPLES, pool_size: int = 0):
        self.capacity = capacity
        self.samples = samples
        self.pool_size = pool_size
        self.rng = random.Random(seed)
        self.last_access: dict[int, int] = {}
        self.keys: list[int] = []  # for O(1) random sampling
        self.slot: dict[int, int] = {}
        self.pool: list[int] = []
        self.clock = 0

    def access(self, key: int) -> bool:
        """Look the key up, inserting it on a miss; return whether it was a hit."""
        self.clock += 1
        if key in self.last_access:
            self.last_access[key] = self.clock
            return True
        if len(self.keys) >= self.capacity:
            self._remove(self._victim())
        self.last_access[key] = self.clock
        self.slot[key] = len(self.keys)
        self.keys.append(key)
        return False

    def _victim(self) -> int:
        sampled = [self.rng.choice(self.keys) for _ in range(self.samples)]
        if not self.pool_size:
            return min(sampled, key=self.last_access.__getitem__)
        # Idle time is re-read at selection, as Redis does when it pops the pool.
        merged = set(self.pool).union(sampled)
        merged &= self.last_access.keys()
        self.pool = sorted(merged, key=self.last_access.__getitem__)[: self.pool_size]
        return self.pool.pop(0)

    def _remove(self, key: int) -> None:
        index = self.slot.pop(key)
        last = self.keys.pop()
        if last != key:
            self.keys[index] = last
            self.slot[last] = index
        del self.last_access[key]


class Sieve:
    """SIEVE: FIFO insertion order, a visited bit per key, a hand sweeping from old to new."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.visited: dict[int, bool] = {}
        self.newer: dict[int, int | None] = {}  # towards the head (newest)
        self.older: dict[int, int | None] = {}  # towards the tail (oldest)
        self.head: int | None = None
        self.tail: int | None = None
        self.hand: int | None = None

    def access(self, key: int) -> bool:
        """Look the key up, inserting it on a miss; return whether it was a hit."""
        if key in self.visited:
            self.visited[key] = True
            return True
        if len(self.visited) >= self.capacity:
            self._evict()
        self.visited[key] = False
        self.older[key] = self.head
        self.newer[key] = None
        if self.head is not None:
            self.newer[self.head] = key
        self.head = key
        if self.tail is None:
            self.tail = key
        return False

    def _evict(self) -> None:
        node = self.hand if self.hand is not None else self.tail
        while node is not None and self.visited[node]:
            self.visited[node] = False
            node = self.newer[node]
            if node is None:
                node = self.tail
        assert node is not None
        self.hand = self.newer[node]
        older, newer = self.older.pop(node), self.newer.pop(node)
        if older is None:
            self.tail = newer
        else:
            self.newer[older] = newer
        if newer is None:
            self.head = older
        else:
            self.older[newer] = older
        del self.visited[node]


def _engine_hits(trace: Sequence[int], capacity: int) -> int:
    entry_size = len(KEY_FORMAT % 0) + len(VALUE) + ENTRY_OVERHEAD
    engine = MemoryEngine(memory_limit=capacity * entry_size)
    get, set_ = engine.get, engine.set
    for key_id in trace:
        key = KEY_FORMAT % key_id
        if get(key) is None:
            set_(key, VALUE)
    assert len(engine) == min(capacity, len(set(trace)))
    return engine.stats().hits


def _policy_hits(trace: Sequence[int], policy: Callable[[int], bool]) -> int:
    return sum(map(policy, trace))


def run(
    requests: int = 1_000_000,
    keys: int = 100_000,
    alpha: float = 0.99,
    cache_fraction: float = 0.1,
    seed: int = 1,
) -> dict[str, object]:
    """Replay one trace through every policy; return the parameters and per-policy results.

    ``results`` maps a policy name to ``{"hit_ratio": float, "seconds": float}``.
    """
    trace = zipf_trace(requests, keys, alpha, seed)
    capacity = max(1, int(keys * cache_fraction))
    runners: dict[str, Callable[[], int]] = {
        "engine (SIEVE)": lambda: _engine_hits(trace, capacity),
        "lru": lambda: _policy_hits(trace, LRU(capacity).access),
        "redis-lru (5 samples, pool 16)": lambda: _policy_hits(
            trace, SampledLRU(capacity, seed, pool_size=POOL_SIZE).access
        ),
        "sampled-5 (no pool)": lambda: _policy_hits(trace, SampledLRU(capacity, seed).access),
        "sieve": lambda: _policy_hits(trace, Sieve(capacity).access),
    }
    results: dict[str, dict[str, float]] = {}
    for name, runner in runners.items():
        started = time.perf_counter()
        hits = runner()
        results[name] = {
            "hit_ratio": hits / requests,
            "seconds": time.perf_counter() - started,
        }
    return {
        "requests": requests,
        "keys": keys,
        "alpha": alpha,
        "capacity": capacity,
        "seed": seed,
        "results": results,
    }


def _print_table(report: dict[str, object]) -> None:
    results = report["results"]
    assert isinstance(results, dict)
    reference = results["lru"]["hit_ratio"]
    print(
        f"Zipf({report['alpha']}) trace: {report['requests']} requests over {report['keys']} "
        f"keys, cache of {report['capacity']} entries, seed {report['seed']}"
    )
    print(f"{'policy':<32} {'hit ratio':>9} {'vs lru':>8} {'time':>7}")
    for name, figures in results.items():
        ratio = figures["hit_ratio"]
        print(
            f"{name:<32} {ratio:>9.4f} {(ratio - reference) * 100:>+7.2f}p "
            f"{figures['seconds']:>6.1f}s"
        )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints one table per cache size."""
    parser = argparse.ArgumentParser(prog="python -m bench.eviction", description=__doc__)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--alpha", type=float, default=0.99)
    parser.add_argument(
        "--cache-fraction",
        type=float,
        nargs="+",
        default=[0.1],
        help="cache size as a fraction of the key space (several allowed)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for index, fraction in enumerate(args.cache_fraction):
        if index:
            print()
        _print_table(run(args.requests, args.keys, args.alpha, fraction, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
