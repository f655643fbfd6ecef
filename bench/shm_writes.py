"""What the shared region costs writes: the store with the region on vs ``--shm off`` vs Redis.

    python -m bench.shm_writes [--rounds 3] [--requests 200000] [--loop 200000] [--quick]

Two measurements, each a ratio within one run:

* **publish CPU**: ``MemoryEngine.set`` overwriting one of 10,000 keys (and inserting fresh
  keys), in this process, with a region attached (the C helper's writer, then the Python
  reference's) and without. CPU time per call (``time.process_time_ns``), so other load on
  the machine matters less than for wall time.
* **redis-benchmark** ``-c 50 -r 100000`` SET and INCR over a Unix socket against four servers
  started side by side: ``blinkstore serve`` (region on, C helper), the same with
  ``BLINKSTORE_NATIVE=0`` (region on, Python writer), ``blinkstore serve --shm off`` and
  redis-server; ``--rounds`` rounds take turns, and the ratios are medians of each round's
  ratio (issue 23's bars: on >= 0.9x off, on >= 0.8x redis-server).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from blinkstore_gunicorn.shm.native import native
from blinkstore_gunicorn.shm.writer import RegionWriter
from harness.processes import blinkstore_process, redis_server_process

_LIMIT = 64 * 2**20
_KEYS = [b"key:%06d" % i for i in range(10_000)]
_TESTS = ("SET", "INCR")
# Bars from issue 23.
TARGETS = {"on/off": 0.9, "on/redis": 0.8}


def _engine(region: bool) -> tuple[MemoryEngine, RegionWriter | None]:
    engine = MemoryEngine(memory_limit=_LIMIT)
    writer = RegionWriter(_LIMIT) if region else None  # the path BLINKSTORE_NATIVE chooses
    if writer is not None:
        engine.attach_region(writer)
    return engine, writer


def _cpu_ns(loop: Callable[[], None], calls: int) -> float:
    start = time.process_time_ns()
    loop()
    return (time.process_time_ns() - start) / calls


def publish_cpu(calls: int, region: bool) -> dict[str, float]:
    """CPU ns per overwrite and per insert of a fresh key, with or without a region."""
    engine, writer = _engine(region)
    try:
        keys = _KEYS
        value = b"xyz"
        for key in keys:
            engine.set(key, value)
        n = len(keys)
        setter = engine.set

        def overwrite() -> None:
            for i in range(calls):
                setter(keys[i % n], value)

        fresh = [b"new:%08d" % i for i in range(calls)]

        def insert() -> None:
            for key in fresh:
                setter(key, value)

        return {"overwrite": _cpu_ns(overwrite, calls), "insert": _cpu_ns(insert, calls)}
    finally:
        if writer is not None:
            writer.close()


def _redis_benchmark(socket_path: str, requests: int) -> dict[str, float]:
    tests = ",".join(t.lower() for t in _TESTS)
    out = subprocess.run(
        [
            "redis-benchmark",
            "-s",
            socket_path,
            "-c",
            "50",
            "-r",
            "100000",
            "-n",
            str(requests),
            "-t",
            tests,
            "--csv",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    rows = csv.reader(io.StringIO(out))
    return {row[0]: float(row[1]) for row in rows if row and row[0] in _TESTS}


def throughput(rounds: int, requests: int) -> dict[str, dict[str, list[float]]]:
    """requests/s per test and peer, one entry per round (the peers take turns)."""
    found: dict[str, dict[str, list[float]]] = {t: {} for t in _TESTS}
    with ExitStack() as stack:
        on = stack.enter_context(blinkstore_process())
        python = stack.enter_context(blinkstore_process(env={NATIVE_ENV: "0"}))
        off = stack.enter_context(blinkstore_process("--shm", "off"))
        redis = stack.enter_context(redis_server_process())
        paths = {
            "on": str(on.unix_path),
            "on, Python": str(python.unix_path),
            "off": str(off.unix_path),
            "redis": redis.unix_path,
        }
        for _ in range(rounds):
            for name, path in paths.items():
                for test, rps in _redis_benchmark(path, requests).items():
                    found[test].setdefault(name, []).append(rps)
    return found


def _ratio(rounds: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(rounds[a], rounds[b], strict=True))


def main(argv: list[str] | None = None) -> int:
    """Print the publish CPU figures and the redis-benchmark ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.shm_writes", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--loop", type=int, default=200_000, help="engine.set calls per figure")
    parser.add_argument("--quick", action="store_true", help="fewer calls and requests")
    args = parser.parse_args(argv)
    if min(args.rounds, args.requests, args.loop) < 1:
        parser.error("--rounds, --requests and --loop must be at least 1")
    if args.quick:
        args.rounds, args.requests, args.loop = 1, 50_000, 50_000
    built = native() is not None
    cpu = {"off": publish_cpu(args.loop, False)}
    with ExitStack() as stack:
        stack.callback(_restore_env, os.environ.get(NATIVE_ENV))
        os.environ[NATIVE_ENV] = "0"
        cpu["on, Python"] = publish_cpu(args.loop, True)
        os.environ[NATIVE_ENV] = "1"
        cpu["on"] = publish_cpu(args.loop, True)  # the same as Python's without the helper
    print(
        f"engine.set CPU ns/call   region off   region on (C helper{'' if built else ' NOT BUILT'})"
    )
    print("                                      C     Python   C/off  Python/off")
    for op in ("overwrite", "insert"):
        off, on, py = cpu["off"][op], cpu["on"][op], cpu["on, Python"][op]
        print(
            f"  {op:<22} {off:>10.0f} {on:>6.0f} {py:>10.0f} {on / off:>7.2f}x {py / off:>10.2f}x"
        )
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark not found: throughput skipped")
        return 0
    found = throughput(args.rounds, args.requests)
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
    return 0


def _restore_env(value: str | None) -> None:
    if value is None:
        os.environ.pop(NATIVE_ENV, None)
    else:
        os.environ[NATIVE_ENV] = value


if __name__ == "__main__":
    raise SystemExit(main())
