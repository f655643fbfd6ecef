"""Store round trips over a Unix socket, compared with redis-server in the same run.

Both servers are driven by the same minimal client (blocking socket, our RESP encoder and
reply parser), so the ratio compares the servers, not client libraries:

    python -m bench.store [--rounds 40] [--runs 5] [--requests 20000] [--quick] [--no-pin]
                          [--floor]

Scenarios: GET and SET of 256 B and 64 KiB values. One connection: both servers run side by
side and take turns, ``--rounds`` rounds of ``requests / rounds`` round trips each. Several
connections (4 client processes): ``--runs`` runs per peer, fresh servers each run,
alternating peers. Latency and throughput columns are medians over rounds (runs);
``p50_ratio`` is the median of each round's store/Redis p50 ratio, and ``p50_lower`` counts
the rounds in which the store's p50 was the lower one. ``--floor`` adds a third peer,
``bench/bare_uvloop.py``: GET/SET from a dict with no checks, the least any uvloop + CPython
server can do per request.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass

from blinkstore_gunicorn.protocol import ProtocolError, resp
from harness.processes import (
    blinkstore_process,
    redis_server_process,
    short_tempdir,
    stop_process,
)

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


def _connect(path: str, value_size: int) -> tuple[socket.socket, resp.ReplyReader]:
    """A connection to ``path`` with the benchmark key stored (``value_size`` bytes)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    reader = resp.ReplyReader()
    _round_trip(sock, reader, resp.encode_command("SET", KEY, b"v" * value_size))
    return sock, reader


def _request(scenario: Scenario) -> bytes:
    if scenario.command == "GET":
        return resp.encode_command("GET", KEY)
    return resp.encode_command("SET", KEY, b"v" * scenario.value_size)


def _timed(sock: socket.socket, reader: resp.ReplyReader, request: bytes, count: int) -> list[int]:
    """``count`` round trips of ``request``; their latencies in ns."""
    latencies = [0] * count
    clock = time.perf_counter_ns
    for i in range(count):
        start = clock()
        _round_trip(sock, reader, request)
        latencies[i] = clock() - start
    return latencies


def _sample(latencies: list[int], elapsed_s: float) -> Sample:
    latencies = sorted(latencies)
    return Sample(
        p50_us=latencies[len(latencies) // 2] / 1000,
        p99_us=latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] / 1000,
        ops_per_s=len(latencies) / elapsed_s,
    )


def interleaved(
    paths: dict[str, str], scenario: Scenario, rounds: int, per_round: int
) -> dict[str, list[Sample]]:
    """One connection per server; the servers take turns, ``per_round`` requests each.

    Taking turns every few milliseconds puts both peers under the same machine conditions
    (a noisy neighbour, a frequency change), which separate runs seconds apart do not.
    """
    request = _request(scenario)
    connections = {name: _connect(path, scenario.value_size) for name, path in paths.items()}
    samples: dict[str, list[Sample]] = {name: [] for name in paths}
    try:
        for sock, reader in connections.values():  # warm up both ends
            _timed(sock, reader, request, min(200, per_round))
        for _ in range(rounds):
            for name, (sock, reader) in connections.items():
                latencies = _timed(sock, reader, request, per_round)
                samples[name].append(_sample(latencies, sum(latencies) / 1e9))
    finally:
        for sock, _ in connections.values():
            sock.close()
    return samples


def _worker(
    path: str, scenario: Scenario, requests: int, out: multiprocessing.Queue[list[int]]
) -> None:
    sock, reader = _connect(path, scenario.value_size)
    with sock:
        request = _request(scenario)
        _timed(sock, reader, request, min(200, requests))
        out.put(_timed(sock, reader, request, requests))


def concurrent(path: str, scenario: Scenario, requests: int) -> Sample:
    """``scenario.connections`` client processes at once against the server on ``path``."""
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
    latencies: list[int] = []
    for _ in processes:
        latencies.extend(queue.get(timeout=300))
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join(timeout=10)
    return _sample(latencies, elapsed)


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
def _floor() -> Iterator[tuple[str, int]]:
    """``bench/bare_uvloop.py``: what a uvloop + CPython server costs with no features."""
    with short_tempdir() as directory:
        path = str(directory / "floor.sock")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_uvloop", path],
            stdout=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        try:
            assert proc.stdout is not None
            if not proc.stdout.readline().startswith(b"listening"):
                raise RuntimeError("bench.bare_uvloop did not start")
            yield path, proc.pid
        finally:
            stop_process(proc)


@contextmanager
def _pinned(server_pids: list[int], pin: bool) -> Iterator[None]:
    """With ``pin``, this process, its children and the servers share one CPU: on a VM a
    wake-up across CPUs costs tens of microseconds and would swamp what is measured."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        yield
        return
    original = os.sched_getaffinity(0)
    cpu = {min(original)}
    for pid in [0, *server_pids]:
        os.sched_setaffinity(pid, cpu)
    try:
        yield
    finally:
        os.sched_setaffinity(0, original)


Peer = Callable[[], AbstractContextManager[tuple[str, int]]]
PEERS: dict[str, Peer] = {"blinkstore": _store, "redis": _redis}
#: With ``--floor``: the bare uvloop server, to tell the store's own cost from the runtime's.
FLOOR: dict[str, Peer] = {"floor": _floor}


def run(
    runs: int = 5,
    requests: int = 20000,
    quick: bool = False,
    pin: bool = True,
    rounds: int = 40,
    floor: bool = False,
) -> list[dict[str, object]]:
    """Measure every scenario against every peer; return one row per scenario.

    One connection: both servers run side by side and take turns for ``rounds`` rounds
    (``requests`` round trips per peer in all). Several connections: ``runs`` runs per
    peer, fresh servers each time, alternating peers. ``floor`` adds the bare uvloop server
    to the small-value scenarios (it takes every read for one whole command).
    """
    rows = []
    for scenario in scenarios(quick):
        peers = {**PEERS, **FLOOR} if floor and scenario.value_size < 4096 else PEERS
        count = requests if scenario.value_size < 4096 else max(1000, requests // 10)
        if scenario.connections == 1:
            with ExitStack() as stack:
                servers = {name: stack.enter_context(start()) for name, start in peers.items()}
                stack.enter_context(_pinned([pid for _, pid in servers.values()], pin))
                paths = {name: path for name, (path, _) in servers.items()}
                samples = interleaved(paths, scenario, rounds, max(1, count // rounds))
        else:
            samples = {name: [] for name in peers}
            for _ in range(runs):
                for name, start in peers.items():
                    with start() as (path, pid), _pinned([pid], pin):
                        samples[name].append(concurrent(path, scenario, count))
        rows.append(_summarise(scenario, samples))
    return rows


def _summarise(scenario: Scenario, samples: dict[str, list[Sample]]) -> dict[str, object]:
    def median(name: str, field: str) -> float:
        return statistics.median(getattr(sample, field) for sample in samples[name])

    def paired(name: str) -> list[tuple[Sample, Sample]]:
        # Each sample with Redis's taken next to it, so drift between rounds cancels out.
        return list(zip(samples[name], samples["redis"], strict=True))

    def p50_ratio(name: str) -> float:
        return round(statistics.median(a.p50_us / b.p50_us for a, b in paired(name)), 3)

    ours_ops, theirs_ops = median("blinkstore", "ops_per_s"), median("redis", "ops_per_s")
    lower = sum(ours.p50_us < theirs.p50_us for ours, theirs in paired("blinkstore"))
    row: dict[str, object] = {
        "scenario": scenario.label,
        "blinkstore_p50_us": round(median("blinkstore", "p50_us"), 1),
        "blinkstore_p99_us": round(median("blinkstore", "p99_us"), 1),
        "redis_p50_us": round(median("redis", "p50_us"), 1),
        "redis_p99_us": round(median("redis", "p99_us"), 1),
        "p50_ratio": p50_ratio("blinkstore"),
        "p50_lower": f"{lower}/{len(samples['redis'])}",
        "blinkstore_ops_s": round(ours_ops),
        "redis_ops_s": round(theirs_ops),
        "throughput_ratio": round(ours_ops / theirs_ops, 2),
    }
    if "floor" in samples:
        row["floor_p50_us"] = round(median("floor", "p50_us"), 1)
        row["floor_p50_ratio"] = p50_ratio("floor")
    return row


def print_table(rows: list[dict[str, object]]) -> None:
    """Rows as an aligned text table (p50 ratio < 1.0 means faster than Redis; "-": not run)."""
    columns = list(dict.fromkeys(column for row in rows for column in row))
    cells = [[str(row.get(column, "-")) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)
    ]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rounds", type=int, default=40, help="one-connection rounds per peer (default 40)"
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="several-connection runs per peer (default 5)"
    )
    parser.add_argument(
        "--requests", type=int, default=20000, help="round trips per peer and scenario"
    )
    parser.add_argument("--quick", action="store_true", help="one connection only")
    parser.add_argument(
        "--floor", action="store_true", help="also measure a bare uvloop server (the floor)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="let clients and server run on any CPU"
    )
    args = parser.parse_args(argv)
    for name in ("rounds", "runs", "requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    rows = run(
        args.runs,
        args.requests,
        args.quick,
        pin=not args.no_pin,
        rounds=args.rounds,
        floor=args.floor,
    )
    print_table(rows)
    print("clients and server pinned to one CPU" if not args.no_pin else "not pinned")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
