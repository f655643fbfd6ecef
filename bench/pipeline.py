"""Pipelines and many clients: the store's request path against redis-server (issue 24).

    python -m bench.pipeline [--rounds 3] [--requests 200000] [--quick] [--in-process]

``redis-benchmark`` over a Unix socket, with ``-r 100000`` random keys, against four servers
started side by side: ``blinkstore serve --memory-limit 0`` as installed (requests split by
``protocol/_split.c``, plain GET/MGET answered in C by ``server/_fastcmd.c``), the same with
``BLINKSTORE_NATIVE=0`` (no C helper: hiredis parsing requests, the Python dispatcher, and the
region's pure-Python writer), the same with ``BLINKSTORE_HIREDIS=0`` too (everything in
Python), and ``redis-server --save ''``. Each round runs every test on each server in turn:

* ``-P 16``: GET and MSET (of 10 keys), 50 clients pipelining 16 requests each;
* ``-c 50``: GET, SET and INCR, 50 clients, one request at a time.

Ratios are store / redis-server, the median of each round's ratio, printed beside issue 24's
bars (``-P 16`` GET and MSET >= 0.5x, ``-c 50`` GET, SET and INCR >= 0.9x). Each server's CPU
time per request (from /proc) is printed too: on a shared machine it moves far less than
requests/s, which also depend on how much of a core redis-benchmark itself gets.

Like for like: no server has a memory limit (``--memory-limit 0``, redis-server without
``maxmemory``), so none evicts, and within a round the servers run each test one after the
other, so each starts it holding the same keys (the GETs read what earlier rounds' SET and MSET
wrote, on every server alike). ``bench.shm_writes``, which keeps the store's default limit,
empties every server before each test instead.

``--in-process`` measures a pipelined GET without sockets or other processes, in the same three
configurations: a connection's ``data_received`` given reads of 16 GETs (a sink for a
transport), and the request reader alone given the same reads (CPU µs per GET, the least of
several rounds).
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import shutil
import statistics
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TypeAlias

from bench.datatypes import _cpu_us, cpu_seconds, redis_benchmark
from bench.transport import InProcessTransport
from blinkstore_gunicorn.config import StoreSettings
from blinkstore_gunicorn.protocol.resp import CommandReader, encode_command
from blinkstore_gunicorn.protocol.resp_hiredis import ENV as HIREDIS_ENV
from blinkstore_gunicorn.protocol.resp_hiredis import available, command_reader
from blinkstore_gunicorn.protocol.resp_prefix import PrefixCommandReader
from blinkstore_gunicorn.server.connection import StoreConnection
from blinkstore_gunicorn.server.store import StoreServer
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from harness.processes import blinkstore_process, redis_server_process

#: Each measured run: its name (redis-benchmark's test name after the mode) and its flags.
#: redis-benchmark's default is 50 clients; one test per run, so the CPU time is that test's.
RUNS = (
    ("-P 16 GET", ("-P", "16", "-t", "get")),
    ("-P 16 MSET (10 keys)", ("-P", "16", "-t", "mset")),
    ("-c 50 GET", ("-t", "get")),
    ("-c 50 SET", ("-t", "set")),
    ("-c 50 INCR", ("-t", "incr")),
)
#: Issue 24's bars: store / redis-server requests per second.
BARS = {
    "-P 16 GET": 0.5,
    "-P 16 MSET (10 keys)": 0.5,
    "-c 50 GET": 0.9,
    "-c 50 SET": 0.9,
    "-c 50 INCR": 0.9,
}
#: The stores' environments by column: as installed, without the C helpers, all Python.
STORES = {"fast": {}, "no-C": {NATIVE_ENV: "0"}, "python": {NATIVE_ENV: "0", HIREDIS_ENV: "0"}}
PEERS = (*STORES, "redis")
#: requests/s, and the server's CPU microseconds per request.
Sample: TypeAlias = tuple[float, float]


def throughput(rounds: int, requests: int) -> dict[str, dict[str, list[Sample]]]:
    """Per run and peer, one (requests/s, CPU us per request) per round (peers take turns)."""
    found: dict[str, dict[str, list[Sample]]] = {}
    with ExitStack() as stack:
        peers: dict[str, tuple[str, int]] = {}
        for peer, env in STORES.items():
            store = stack.enter_context(blinkstore_process("--memory-limit", "0", env=env))
            peers[peer] = (str(store.unix_path), store.pid)
        redis = stack.enter_context(redis_server_process())
        peers["redis"] = (str(redis.unix_path), redis.proc.pid)
        for _ in range(rounds):
            for name, flags in RUNS:
                for peer, (path, pid) in peers.items():
                    before = cpu_seconds(pid)
                    (rps,) = redis_benchmark(path, requests, "-r", "100000", *flags).values()
                    cpu = (cpu_seconds(pid) - before) / requests * 1e6
                    found.setdefault(name, {}).setdefault(peer, []).append((rps, cpu))
    return found


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` set (and every switch of :data:`STORES` unset otherwise)."""
    saved = dict(os.environ)
    for name in {NATIVE_ENV, HIREDIS_ENV}:
        os.environ.pop(name, None)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _Sink(InProcessTransport):
    """The transport of :func:`in_process`: replies are dropped, not kept."""

    def write(self, data: bytes) -> None:
        pass


#: GETs per read in :func:`in_process`, as redis-benchmark's ``-P 16`` sends them.
PIPELINE = 16


def in_process(rounds: int = 7) -> dict[str, tuple[float, float]]:
    """Per configuration of :data:`STORES`: CPU µs per GET through a connection's
    ``data_received``, and through the request reader alone, for reads of 16 GETs."""
    rnd = random.Random(24)
    keys = [b"key:%012d" % rnd.randrange(100_000) for _ in range(1600)]
    reads = [
        b"".join(encode_command("GET", key) for key in keys[start : start + PIPELINE])
        for start in range(0, len(keys), PIPELINE)
    ]
    found: dict[str, tuple[float, float]] = {}
    for peer, env in STORES.items():
        with environment(env):
            server = StoreServer(StoreSettings(unix="/nonexistent/bench.sock"))
            for key in keys[::2]:  # half of the GETs find their key
                server.engine.set(key, b"x" * 3)
            connection = StoreConnection(server)
            connection.connection_made(_Sink())  # type: ignore[arg-type]
            serve = functools.partial(_serve, connection, reads)
            parse = functools.partial(_parse, command_reader(), reads)
            found[peer] = (
                _cpu_us(serve, rounds, 20) / len(keys),
                _cpu_us(parse, rounds, 20) / len(keys),
            )
    return found


def _serve(connection: StoreConnection, reads: list[bytes]) -> None:
    for data in reads:
        connection.data_received(data)


def _parse(reader: CommandReader | PrefixCommandReader, reads: list[bytes]) -> None:
    for data in reads:
        reader.feed(data)
        reader.drain()


def ratio(samples: dict[str, list[Sample]], peer: str) -> float:
    """The median over rounds of ``peer``'s requests/s over redis-server's in that round."""
    pairs = zip(samples[peer], samples["redis"], strict=True)
    return statistics.median(mine[0] / redis[0] for mine, redis in pairs)


def main(argv: list[str] | None = None) -> int:
    """Print requests/s and CPU per request of each server, and the ratios beside the bars."""
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200_000, help="per run")
    parser.add_argument("--quick", action="store_true", help="one round of 50,000 requests")
    parser.add_argument(
        "--in-process", action="store_true", help="only the pipelined GET, without sockets"
    )
    args = parser.parse_args(argv)
    if min(args.rounds, args.requests) < 1:
        parser.error("--rounds and --requests must be at least 1")
    if args.quick:
        args.rounds, args.requests = 1, 50_000
    if args.in_process:
        print(f"CPU us per GET, reads of {PIPELINE} GETs: data_received / the request reader alone")
        for peer, (served, parsed) in in_process().items():
            print(f"  {peer:<7} {served:>6.2f} / {parsed:.2f}")
        return 0
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark not found: nothing to measure")
        return 0
    if not available():
        print("hiredis is not installed: every store column runs the pure-Python reader")
    found = throughput(args.rounds, args.requests)
    print(
        f"redis-benchmark -r 100000, {args.rounds} round(s) of {args.requests} requests:"
        " requests/s and server CPU us/request (medians), ratio to redis-server (median of"
        " the rounds' ratios)"
    )
    print(
        f"  {'test':<21} {'fast':>8} {'no-C':>8} {'python':>8} {'redis':>8}   {'cpu: fast':>9}"
        f" {'no-C':>5} {'python':>6} {'redis':>5}   {'fast/redis':>10} {'no-C/redis':>10}"
        f" {'python/redis':>12}  bar"
    )
    for name, samples in found.items():
        rps = {peer: statistics.median(s[0] for s in samples[peer]) for peer in PEERS}
        cpu = {peer: statistics.median(s[1] for s in samples[peer]) for peer in PEERS}
        print(
            f"  {name:<21} {rps['fast']:>8.0f} {rps['no-C']:>8.0f} {rps['python']:>8.0f}"
            f" {rps['redis']:>8.0f}   {cpu['fast']:>9.2f} {cpu['no-C']:>5.2f}"
            f" {cpu['python']:>6.2f} {cpu['redis']:>5.2f}   {ratio(samples, 'fast'):>9.2f}x"
            f" {ratio(samples, 'no-C'):>9.2f}x {ratio(samples, 'python'):>11.2f}x"
            f"  >= {BARS[name]}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
