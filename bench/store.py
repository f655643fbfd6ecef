"""Store round trips over a Unix socket, compared with redis-server in the same run.

Both servers are driven by the same minimal client (blocking socket, our RESP encoder and
reply parser), so the ratio compares the servers, not client libraries. Each scenario runs
several times, alternating peers, and reports medians:

    python -m bench.store [--runs 5] [--requests 20000] [--quick]

Scenarios: GET and SET of 256 B and 64 KiB values, one connection (per-request latency
p50/p99 and throughput) and several connections in separate processes (throughput).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from blinkstore_gunicorn.protocol import ProtocolError, resp
from tests.support.processes import blinkstore_process, redis_server_process

KEY = b"bench:key"


@dataclass(frozen=True)
class Scenario:
    """One measured workload."""

    command: str  # "GET" or "SET"
    value_size: int
    connections: int

    @property
    def label(self) -> str:
        size = (
            f"{self.value_size // 1024} KiB" if self.value_size >= 1024 else f"{self.value_size} B"
        )
        return f"{self.command} {size}, {self.connections} conn"


@dataclass(frozen=True)
class Sample:
    """What one run of one scenario against one server measured."""

    p50_us: float
    p99_us: float
    ops_per_s: float


def _round_trip(sock: socket.socket, reader: resp.ReplyReader, request: bytes) -> object:
    sock.sendall(request)
    while True:
        reply = reader.next_reply()
        if reply is not resp.NEED_MORE:
            if isinstance(reply, ProtocolError | resp.ErrorReply):
                raise RuntimeError(f"server answered {reply!r}")
            return reply
        data = sock.recv(262144)
        if not data:
            raise ConnectionError("server closed the connection")
        reader.feed(data)


def _client_loop(path: str, scenario: Scenario, requests: int) -> list[int]:
    """Run ``requests`` round trips on one fresh connection; return latencies in ns."""
    value = b"v" * scenario.value_size
    get = resp.encode_command("GET", KEY)
    put = resp.encode_command("SET", KEY, value)
    request = get if scenario.command == "GET" else put
    latencies = [0] * requests
    clock = time.perf_counter_ns
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        reader = resp.ReplyReader()
        _round_trip(sock, reader, put)
        for _ in range(min(200, requests)):  # warm up both ends
            _round_trip(sock, reader, request)
        for i in range(requests):
            start = clock()
            _round_trip(sock, reader, request)
            latencies[i] = clock() - start
    return latencies


def _worker(
    path: str, scenario: Scenario, requests: int, out: multiprocessing.Queue[list[int]]
) -> None:
    out.put(_client_loop(path, scenario, requests))


def measure(path: str, scenario: Scenario, requests: int) -> Sample:
    """One run of ``scenario`` against the server listening on ``path``."""
    if scenario.connections == 1:
        started = time.perf_counter()
        latencies = _client_loop(path, scenario, requests)
        elapsed = time.perf_counter() - started
    else:
        context = multiprocessing.get_context("fork")
        queue: multiprocessing.Queue[list[int]] = context.Queue()
        per_process = max(1, requests // scenario.connections)
        processes = [
            context.Process(target=_worker, args=(path, scenario, per_process, queue))
            for _ in range(scenario.connections)
        ]
        started = time.perf_counter()
        for process in processes:
            process.start()
        latencies = []
        for _ in processes:
            latencies.extend(queue.get(timeout=300))
        elapsed = time.perf_counter() - started
        for process in processes:
            process.join(timeout=10)
    latencies.sort()
    return Sample(
        p50_us=latencies[len(latencies) // 2] / 1000,
        p99_us=latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] / 1000,
        ops_per_s=len(latencies) / elapsed,
    )


def scenarios(quick: bool) -> Iterator[Scenario]:
    """The workloads, smallest first."""
    for size in (256, 65536):
        for command in ("GET", "SET"):
            for connections in (1,) if quick else (1, 4):
                yield Scenario(command, size, connections)


@contextmanager
def _store() -> Iterator[tuple[str, int]]:
    with blinkstore_process("--memory-limit", "0") as store:
        assert store.unix_path is not None
        yield store.unix_path, store.pid


@contextmanager
def _redis() -> Iterator[tuple[str, int]]:
    with redis_server_process() as redis:
        yield redis.unix_path, redis.proc.pid


@contextmanager
def _pinned(server_pid: int, pin: bool) -> Iterator[None]:
    """With ``pin``, this process, its children and the server share one CPU: on a VM a
    wake-up across CPUs costs tens of microseconds and would swamp what is measured."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        yield
        return
    original = os.sched_getaffinity(0)
    cpu = {min(original)}
    os.sched_setaffinity(0, cpu)
    os.sched_setaffinity(server_pid, cpu)
    try:
        yield
    finally:
        os.sched_setaffinity(0, original)


PEERS: dict[str, Callable[[], AbstractContextManager[tuple[str, int]]]] = {
    "blinkstore": _store,
    "redis": _redis,
}


def run(
    runs: int = 5, requests: int = 20000, quick: bool = False, pin: bool = True
) -> list[dict[str, object]]:
    """Measure every scenario ``runs`` times per peer; return one row per scenario."""
    rows = []
    for scenario in scenarios(quick):
        samples: dict[str, list[Sample]] = {name: [] for name in PEERS}
        count = requests if scenario.value_size < 4096 else max(1000, requests // 10)
        for _ in range(runs):
            # Fresh servers per run, alternating peers, so neither always runs second.
            for name, start in PEERS.items():
                with start() as (path, pid), _pinned(pid, pin):
                    samples[name].append(measure(path, scenario, count))
        rows.append(_summarise(scenario, samples))
    return rows


def _summarise(scenario: Scenario, samples: dict[str, list[Sample]]) -> dict[str, object]:
    def median(name: str, field: str) -> float:
        return statistics.median(getattr(sample, field) for sample in samples[name])

    ours_p50, theirs_p50 = median("blinkstore", "p50_us"), median("redis", "p50_us")
    ours_ops, theirs_ops = median("blinkstore", "ops_per_s"), median("redis", "ops_per_s")
    return {
        "scenario": scenario.label,
        "blinkstore_p50_us": round(ours_p50, 1),
        "blinkstore_p99_us": round(median("blinkstore", "p99_us"), 1),
        "redis_p50_us": round(theirs_p50, 1),
        "redis_p99_us": round(median("redis", "p99_us"), 1),
        "p50_ratio": round(ours_p50 / theirs_p50, 2),
        "blinkstore_ops_s": round(ours_ops),
        "redis_ops_s": round(theirs_ops),
        "throughput_ratio": round(ours_ops / theirs_ops, 2),
    }


def print_table(rows: list[dict[str, object]]) -> None:
    """Rows as an aligned text table (p50 ratio < 1.0 means faster than Redis)."""
    if not rows:
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per peer (default 5)")
    parser.add_argument("--requests", type=int, default=20000, help="requests per run")
    parser.add_argument("--quick", action="store_true", help="one connection only")
    parser.add_argument(
        "--no-pin", action="store_true", help="let clients and server run on any CPU"
    )
    args = parser.parse_args(argv)
    print_table(run(args.runs, args.requests, args.quick, pin=not args.no_pin))
    print("clients and server pinned to one CPU" if not args.no_pin else "not pinned")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
