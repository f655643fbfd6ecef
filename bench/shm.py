"""Shared-memory reads: the region's GET against its peers in one run, and the torture run.

    python -m bench.shm [--runs 5] [--no-pin] [--torture-reads 10000000] [--quick]

Latency scenarios (a 256 B hit, p50 per call over batches, median of ``--runs``): a dict (the
per-process cache the region replaces), the raw region reader and ``Cache.get`` through the
region (with the C helper when it is built, and on the pure-Python reader, ``(Python)``,
in the same run), ``Cache.get`` over the socket of
a ``blinkstore serve`` on the same host, diskcache on tmpfs (when installed), redis-py against
redis-server on a Unix socket. Also a miss in the region, and reads per second of two reader
processes against one (the region has no lock, so two should approach 2x on two CPUs).

By default this process and the servers share one CPU, as in ``bench.client`` (a cross-CPU
wake-up in this kind of VM costs more than the socket path itself); ``--no-pin`` measures as
scheduled. The torture run (``bench/shm_torture.py``) then checks every value readers saw.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from html import escape
from typing import Any

import redis

from bench.shm_torture import report, torture
from blinkstore_gunicorn.client import AsyncCache, Cache
from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.shm import handout
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from blinkstore_gunicorn.shm.reader import RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter
from harness.processes import blinkstore_process, redis_server_process

VALUE = b"v" * 256
KEY = b"bench:shm"
# The same bytes stored as they are (Cache.set tags bytes for its serializer).
RAW_KEY = b"bench:raw"
BATCH = 100
# Issue 15's bars for ``Cache.get`` through the region: this much faster than each peer.
TARGETS = {"Cache.get, socket": 5.0, "diskcache (tmpfs)": 3.0, "redis-py": 30.0}


def p50_ns(call: Callable[[], Any], batches: int) -> float:
    """Median per-call time in ns, timing batches of BATCH calls (timer cost amortised)."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(batches):
        start = clock()
        for _ in range(BATCH):
            call()
        samples.append((clock() - start) / BATCH)
    return statistics.median(samples)


@contextmanager
def _region() -> Iterator[tuple[MemoryEngine, RegionWriter]]:
    writer = RegionWriter(64 * 2**20)
    engine = MemoryEngine(memory_limit=64 * 2**20)
    engine.attach_region(writer)
    try:
        yield engine, writer
    finally:
        writer.close()


def _reads_per_second(fds: tuple[int, int], counter: int, seconds: float, out: Any) -> None:
    reader = RegionReader(fds[0], fds[1], counter)
    get = reader.lookup
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(1000):
            get(KEY)
        done += 1000
    out.put(done / seconds)
    reader.close()


def scaling(fds: tuple[int, int], seconds: float) -> float:
    """Reads per second of two reader processes over one (same region, same key)."""
    ctx = multiprocessing.get_context("fork")
    totals = []
    for processes in (1, 2):
        queue = ctx.Queue()
        procs = [
            ctx.Process(target=_reads_per_second, args=(fds, n, seconds, queue))
            for n in range(processes)
        ]
        for proc in procs:
            proc.start()
        totals.append(sum(queue.get() for _ in procs))
        for proc in procs:
            proc.join()
    return totals[1] / totals[0]


def _diskcache(stack: ExitStack) -> Callable[[], Any] | None:
    try:
        import diskcache  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    directory = stack.enter_context(tempfile.TemporaryDirectory(dir="/dev/shm"))
    cache = diskcache.Cache(directory)
    stack.callback(cache.close)
    cache.set(KEY, VALUE)
    return lambda: cache.get(KEY)


def async_p50_ns(cache: AsyncCache, key: str, batches: int) -> float:
    """:func:`p50_ns` for ``await cache.get(key)``, timed inside one event loop."""

    async def sample() -> float:
        await cache.get(key)  # AsyncCache maps the region in a thread: wait for it
        shared = cache._shared
        while shared is not None and not shared.attached:
            await asyncio.sleep(0.01)
        samples = []
        clock = time.perf_counter_ns
        get = cache.get
        for _ in range(batches):
            start = clock()
            for _ in range(BATCH):
                await get(key)
            samples.append((clock() - start) / BATCH)
        await cache.close()
        return statistics.median(samples)

    return asyncio.run(sample())


@contextmanager
def _python_path() -> Iterator[None]:
    """Readers made inside use the pure-Python lookup (BLINKSTORE_NATIVE=0)."""
    before = os.environ.get(NATIVE_ENV)
    os.environ[NATIVE_ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[NATIVE_ENV]
        else:
            os.environ[NATIVE_ENV] = before


def latencies(pin: bool, batches: int) -> dict[str, float]:
    """One run of every latency scenario: p50 in ns per peer."""
    with ExitStack() as stack:
        store = stack.enter_context(blinkstore_process("--memory-limit", "0"))
        redis_server = stack.enter_context(redis_server_process())
        if pin:
            original = os.sched_getaffinity(0)
            cpu = {max(original)}
            for pid in (0, store.pid, redis_server.proc.pid):
                os.sched_setaffinity(pid, cpu)
            stack.callback(os.sched_setaffinity, 0, original)
        assert store.unix_path is not None
        cache = Cache(store.url)
        stack.callback(cache.close)
        cache.set(KEY.decode(), VALUE)
        socket_cache = Cache(store.url + "?shm=off")
        stack.callback(socket_cache.close)
        reader = handout.attach(store.unix_path, None, 10)
        stack.callback(reader.close)
        py_cache = Cache(store.url)
        stack.callback(py_cache.close)
        with _python_path():
            py_reader = handout.attach(store.unix_path, None, 10)
            py_cache.get("bench:shm")  # maps the region now, on the Python path
        stack.callback(py_reader.close)
        lookup, py_lookup = reader.lookup, py_reader.lookup
        raw_store = redis.Redis(unix_socket_path=store.unix_path)
        stack.callback(raw_store.close)
        raw_store.set(RAW_KEY, VALUE)
        peer = redis.Redis(unix_socket_path=redis_server.unix_path)
        stack.callback(peer.close)
        peer.set(RAW_KEY, VALUE)
        table = {KEY: VALUE}
        calls: dict[str, Callable[[], Any]] = {
            "dict": lambda: table.get(KEY),
            "region (raw reader)": lambda: lookup(RAW_KEY),
            "region (raw reader, Python)": lambda: py_lookup(RAW_KEY),
            "region miss (raw reader)": lambda: lookup(b"bench:absent"),
            "Cache.get, region": lambda: cache.get("bench:shm"),
            "Cache.get, region (Python)": lambda: py_cache.get("bench:shm"),
            "Cache.get miss, region": lambda: cache.get("bench:absent"),
            "Cache.get, socket": lambda: socket_cache.get("bench:shm"),
            "redis-py": lambda: peer.get(RAW_KEY),
        }
        disk = _diskcache(stack)
        if disk is not None:
            calls["diskcache (tmpfs)"] = disk
        for name, call in calls.items():
            assert call() == (None if "miss" in name else VALUE), name
        result = {name: p50_ns(call, batches) for name, call in calls.items()}
        result["AsyncCache.get, region"] = async_p50_ns(AsyncCache(store.url), "bench:shm", batches)
        return result


def run(runs: int, pin: bool, batches: int, scaling_seconds: float) -> dict[str, Any]:
    """Median latencies over ``runs`` runs, and the two-reader scaling."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        for name, value in latencies(pin, batches).items():
            samples.setdefault(name, []).append(value)
    p50 = {name: statistics.median(values) for name, values in samples.items()}
    with _region() as (engine, writer):
        engine.set(KEY, VALUE)
        two_over_one = scaling(writer.fds, scaling_seconds)
    return {"p50_ns": p50, "two_readers": two_over_one}


_ROW = 26
_LABEL = 190
_WIDTH = 620


def bar_chart(title: str, unit: str, values: dict[str, float]) -> str:
    """SVG text: one bar per ``values`` item (smallest first), on a log scale, labelled."""
    items = sorted(values.items(), key=lambda item: item[1])
    low = math.floor(math.log10(min(v for _, v in items)))
    high = math.ceil(math.log10(max(v for _, v in items)))
    span = max(1, high - low)
    plot = _WIDTH - _LABEL - 90
    height = 40 + _ROW * len(items) + 24

    def x(value: float) -> float:
        return _LABEL + plot * (math.log10(value) - low) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        'font-family="sans-serif" font-size="13">',
        f'<text x="10" y="20" font-weight="bold">{escape(title)}</text>',
    ]
    for decade in range(low, high + 1):
        at = _LABEL + plot * (decade - low) / span
        parts.append(
            f'<line x1="{at:.1f}" y1="30" x2="{at:.1f}" y2="{height - 22}" stroke="#ddd"/>'
            f'<text x="{at:.1f}" y="{height - 6}" text-anchor="middle" fill="#666">'
            f"{10.0**decade:g} {escape(unit)}</text>"
        )
    for row, (name, value) in enumerate(items):
        top = 36 + row * _ROW
        parts.append(
            f'<text x="{_LABEL - 8}" y="{top + 15}" text-anchor="end">{escape(name)}</text>'
            f'<rect x="{_LABEL}" y="{top + 3}" width="{max(1.0, x(value) - _LABEL):.1f}" '
            f'height="{_ROW - 8}" fill="#4a7ab8"/>'
            f'<text x="{x(value) + 6:.1f}" y="{top + 15}">{value:.3g} {escape(unit)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def print_table(result: dict[str, Any]) -> None:
    """Latencies with ratios to ``Cache.get`` through the region, and issue 15's targets."""
    p50 = result["p50_ns"]
    ours = p50["Cache.get, region"]
    print(f"{'GET of a 256 B value':28s} {'p50':>9s} {'/ Cache.get, region':>20s}  target")
    for name, value in sorted(p50.items(), key=lambda item: item[1]):
        target = TARGETS.get(name)
        note = f">= {target:g}x" if target else ""
        print(f"{name:28s} {value / 1000:7.2f}us {value / ours:19.2f}x  {note}")
    print("targets: Cache.get hit <= 2us, AsyncCache.get <= 2.5us, a miss <= 1.5us")
    print(f"two reader processes over one: {result['two_readers']:.2f}x (target >= 1.8x)")


def main(argv: list[str] | None = None) -> int:
    """Run the suite and print its table (and the torture run's counts)."""
    parser = argparse.ArgumentParser(prog="python -m bench.shm", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--torture-reads", type=int, default=10_000_000, metavar="N")
    parser.add_argument("--quick", action="store_true", help="few samples, short torture")
    parser.add_argument("--chart", metavar="SVG", help="also draw the GET p50s into this file")
    args = parser.parse_args(argv)
    runs, batches, seconds, reads = args.runs, 2000, 2.0, args.torture_reads
    if args.quick:
        runs, batches, seconds, reads = 1, 200, 0.3, 100_000
    result = run(runs, args.pin, batches, seconds)
    print_table(result)
    if args.chart:
        p50_us = {name: ns / 1000 for name, ns in result["p50_ns"].items()}
        title = "GET of a 256 B value, p50 per call (python -m bench.shm)"
        with open(args.chart, "w", encoding="utf-8") as out:
            out.write(bar_chart(title, "µs", p50_us))
    readers = 3
    with tempfile.TemporaryDirectory() as workdir:
        # Every read checked against a live writer; then a shorter run with the store
        # SIGKILLed and restarted unsupervised (region off): no read of the dead region after.
        long_run = torture(workdir, readers=readers, reads=reads // readers)
        killed = torture(workdir, readers=readers, reads=min(reads, 400_000), restart=True)
    print(report(long_run, readers))
    print(report(killed, readers) + " (store killed, restarted with the region off)")
    failed = [run for run in (long_run, killed) if run.bad or run.stale]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
