"""What the shared region costs writes: the store with the region on vs ``--shm off`` vs Redis.

    python -m bench.shm_writes [--rounds 3] [--requests 200000] [--loop 200000] [--keys 100000]
                               [--quick]

Two measurements, each a ratio within one run:

* **publish CPU**: ``MemoryEngine.set`` in this process at the scale of the store under
  ``redis-benchmark -r 100000`` (the default 64 MiB limit, ``--keys`` keys named as
  redis-benchmark names them, ``key:000000012345``, in random order, fresh 3-byte values as
  the server parses them), with a region attached (the C helper's writer, then the Python
  reference's) and without: a **fill** (``--loop`` SETs of random keys into an empty engine,
  mostly new keys while the table grows: what a fresh server's first ``redis-benchmark`` run
  is) and an **overwrite** of random keys once all are present. CPU time per call
  (``time.process_time_ns``), so other load on the machine matters less than for wall time.
* **redis-benchmark** ``-c 50 -r 100000`` SET and INCR over a Unix socket against four servers
  started side by side: ``blinkstore serve`` (region on, C helper), the same with
  ``BLINKSTORE_NATIVE=0`` (region on, Python writer), ``blinkstore serve --shm off`` and
  redis-server; ``--rounds`` rounds take turns, and the ratios are medians of each round's
  ratio (issue 23's bars: on >= 0.9x off, on >= 0.8x redis-server). Beside each figure, the
  server process's CPU time per request (``/proc/<pid>/stat``, user + system) during that
  test: on a loaded machine the requests/s of the peers taking turns swing with the load,
  their CPU per request much less, and a single-threaded server saturated by 50 clients
  answers about 1 / (CPU per request) requests per second.

Like for like: every server gets a ``FLUSHALL`` before each test, so each peer starts each test
from the same, empty state. Without it, SET (``key:*``) then INCR (``counter:*``) of every round
piled up in the stores' default 64 MB limit (~430 B a key), and from the second round the stores
evicted during INCR while redis-server (no ``maxmemory``) never does. The keys one test writes
fit the limit; ``evicted_keys`` (``INFO stats``) is read around each test and the keys evicted
are printed, so a test that evicts anyway shows.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack

import redis

from bench.datatypes import cpu_seconds, redis_benchmark
from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from blinkstore_gunicorn.shm.native import native
from blinkstore_gunicorn.shm.writer import RegionWriter
from harness.processes import blinkstore_process, redis_server_process

_LIMIT = 64 * 2**20
#: redis-benchmark's keyspace for ``-r 100000``.
_KEYSPACE = 100_000
_TESTS = ("SET", "INCR")
# Bars from issue 23.
TARGETS = {"on/off": 0.9, "on/redis": 0.8}


def _engine(region: bool) -> tuple[MemoryEngine, RegionWriter | None]:
    engine = MemoryEngine(memory_limit=_LIMIT)
    writer = RegionWriter(_LIMIT) if region else None  # the path BLINKSTORE_NATIVE chooses
    if writer is not None:
        writer.seal()  # as the store does: freed pages are kept, spare tables zeroed by writes
        engine.attach_region(writer)
    return engine, writer


def _cpu_ns(loop: Callable[[], None], calls: int) -> float:
    start = time.process_time_ns()
    loop()
    return (time.process_time_ns() - start) / calls


def _requests(calls: int, keys: int, rng: random.Random) -> list[tuple[bytes, bytes]]:
    """``calls`` SETs of random keys among ``keys``, each with its own 3-byte value object."""
    return [(b"key:%012d" % rng.randrange(keys), bytes(bytearray(b"xxx"))) for _ in range(calls)]


def publish_cpu(calls: int, region: bool, keys: int = _KEYSPACE) -> dict[str, float]:
    """CPU ns per SET of a fill (random keys among ``keys``, from empty) and per overwrite
    (random keys, all present), with or without a region."""
    engine, writer = _engine(region)
    try:
        rng = random.Random(23)
        setter = engine.set
        fill, overwrite = _requests(calls, keys, rng), _requests(calls, keys, rng)

        def run(requests: list[tuple[bytes, bytes]]) -> Callable[[], None]:
            def loop() -> None:
                for key, value in requests:
                    setter(key, value)

            return loop

        figures = {"fill": _cpu_ns(run(fill), calls)}
        for i in rng.sample(range(keys), keys):  # then every key present
            setter(b"key:%012d" % i, b"xxx")
        figures["overwrite"] = _cpu_ns(run(overwrite), calls)
        return figures
    finally:
        if writer is not None:
            writer.close()


def evicted_keys(socket_path: str, *, flush: bool = False) -> int:
    """``evicted_keys`` of ``INFO stats`` of the server at ``socket_path``; with ``flush``,
    after a ``FLUSHALL`` (the state every peer starts a test from)."""
    with redis.Redis(unix_socket_path=socket_path, socket_timeout=60) as client:
        if flush:
            client.flushall()
        return int(client.info("stats")["evicted_keys"])


def throughput(
    rounds: int, requests: int
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, list[float]]], dict[str, int]]:
    """requests/s and the server's CPU us per request, per test and peer, one entry per round
    (the peers take turns), and the keys each peer evicted during its tests."""
    found: dict[str, dict[str, list[float]]] = {t: {} for t in _TESTS}
    cpu: dict[str, dict[str, list[float]]] = {t: {} for t in _TESTS}
    with ExitStack() as stack:
        on = stack.enter_context(blinkstore_process())
        python = stack.enter_context(blinkstore_process(env={NATIVE_ENV: "0"}))
        off = stack.enter_context(blinkstore_process("--shm", "off"))
        redis_server = stack.enter_context(redis_server_process())
        peers = {
            "on": (str(on.unix_path), on.pid),
            "on, Python": (str(python.unix_path), python.pid),
            "off": (str(off.unix_path), off.pid),
            "redis": (redis_server.unix_path, redis_server.proc.pid),
        }
        evicted = dict.fromkeys(peers, 0)
        for _ in range(rounds):
            for name, (path, pid) in peers.items():
                for test in _TESTS:
                    evictions = evicted_keys(path, flush=True)
                    before = cpu_seconds(pid)
                    flags = ("-r", "100000", "-t", test.lower())
                    found[test].setdefault(name, []).append(
                        redis_benchmark(path, requests, *flags)[test]
                    )
                    used = cpu_seconds(pid) - before
                    cpu[test].setdefault(name, []).append(used / requests * 1e6)
                    evicted[name] += evicted_keys(path) - evictions
    return found, cpu, evicted


def _ratio(rounds: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(rounds[a], rounds[b], strict=True))


def main(argv: list[str] | None = None) -> int:
    """Print the publish CPU figures and the redis-benchmark ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.shm_writes", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--loop", type=int, default=200_000, help="engine.set calls per figure")
    parser.add_argument("--keys", type=int, default=_KEYSPACE, help="keys of the in-process SETs")
    parser.add_argument("--quick", action="store_true", help="fewer calls and requests")
    args = parser.parse_args(argv)
    if min(args.rounds, args.requests, args.loop, args.keys) < 1:
        parser.error("--rounds, --requests, --loop and --keys must be at least 1")
    if args.quick:
        args.rounds, args.requests, args.loop = 1, 50_000, 50_000
    built = native() is not None
    cpu = {"off": publish_cpu(args.loop, False, args.keys)}
    with ExitStack() as stack:
        stack.callback(_restore_env, os.environ.get(NATIVE_ENV))
        os.environ[NATIVE_ENV] = "0"
        cpu["on, Python"] = publish_cpu(args.loop, True, args.keys)
        os.environ[NATIVE_ENV] = "1"
        cpu["on"] = publish_cpu(args.loop, True, args.keys)  # Python's without the helper
    print(
        f"engine.set CPU ns/call, {args.keys} keys   region off   region on"
        f" (C helper{'' if built else ' NOT BUILT'})"
    )
    print("                                                 C     Python   C/off  Python/off")
    for op in ("fill", "overwrite"):
        off, on, py = cpu["off"][op], cpu["on"][op], cpu["on, Python"][op]
        print(
            f"  {op:<33} {off:>10.0f} {on:>6.0f} {py:>10.0f} {on / off:>7.2f}x {py / off:>10.2f}x"
        )
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark not found: throughput skipped")
        return 0
    found, cpu_per_request, evicted = throughput(args.rounds, args.requests)
    print(f"redis-benchmark -c 50 -r 100000, {args.rounds} round(s), requests/s (median)")
    print("  test     shm on  on,Python    shm off     redis   on/off  on/redis  Python:on/off")
    for test, peers in found.items():
        med = {name: statistics.median(v) for name, v in peers.items()}
        on_off, on_redis = _ratio(peers, "on", "off"), _ratio(peers, "on", "redis")
        print(
            f"  {test:<5} {med['on']:>9.0f} {med['on, Python']:>10.0f} {med['off']:>10.0f}"
            f" {med['redis']:>9.0f} {on_off:>8.2f} {on_redis:>9.2f}"
            f" {_ratio(peers, 'on, Python', 'off'):>14.2f}"
            f"   (bars {TARGETS['on/off']}, {TARGETS['on/redis']})"
        )
    print("server CPU us/request (median)  shm on  on,Python  shm off  redis   off/on  redis/on")
    for test, peers in cpu_per_request.items():
        med = {name: statistics.median(v) for name, v in peers.items()}
        print(
            f"  {test:<28} {med['on']:>7.1f} {med['on, Python']:>9.1f} {med['off']:>8.1f}"
            f" {med['redis']:>6.1f} {_ratio(peers, 'off', 'on'):>8.2f}"
            f" {_ratio(peers, 'redis', 'on'):>9.2f}"
        )
    print("keys evicted during the tests (0 = like for like):", end="")
    print(", ".join(f" {name} {count}" for name, count in evicted.items()))
    return 0


def _restore_env(value: str | None) -> None:
    if value is None:
        os.environ.pop(NATIVE_ENV, None)
    else:
        os.environ[NATIVE_ENV] = value


if __name__ == "__main__":
    raise SystemExit(main())
