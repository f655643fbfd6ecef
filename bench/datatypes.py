"""Redis data-type commands and Lua scripts under ``redis-benchmark -c 50``, store vs Redis.

    python -m bench.datatypes [--rounds 3] [--requests 100000] [--tests lpush,rpush,...]

``blinkstore serve`` and redis-server are started side by side on Unix sockets; each round runs
``redis-benchmark -c 50`` on one, then on the other, so a drift of a shared machine hits both,
after one short warm-up round that is not counted. Besides the ``--tests`` (redis-benchmark's
own names), every round runs ``EVALSHA`` of :data:`SCRIPT`, a script of three ``redis.call``
(INCR, EXPIRE, GET: the shape of the rate limit and lock scripts libraries ship). Reports the
median requests/s per peer and the median of the per-round store / Redis ratios, next to the
bars of issue 20, and the CPU time each server spent per request (from /proc): on a shared
machine that figure moves far less.

``--breakdown`` prints instead where the store's time per ``EVALSHA`` of :data:`SCRIPT` goes,
measured in-process (the dispatcher called directly, a shared-memory region attached as the
store attaches one; no sockets): see :func:`breakdown`. ``--in-process`` prints the CPU time
of each test's command alone, the same way: see :func:`in_process`.
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
from pathlib import Path
from typing import TypeAlias

from harness.processes import blinkstore_process, redis_server_process, resp_command

#: Three commands, as the scripts of ``limits`` or redis-py's ``Lock`` issue.
SCRIPT = (
    "local n = redis.call('INCR', KEYS[1]) "
    "redis.call('EXPIRE', KEYS[1], ARGV[1]) "
    "return {n, redis.call('GET', KEYS[1])}"
)
EVALSHA = "EVALSHA"
#: requests/s, and the server's CPU microseconds per request (None when not measured).
Sample: TypeAlias = tuple[float, float | None]
#: Bars from issue 20 (store / Redis requests per second).
TARGETS = {"EVALSHA": 0.5, "default": 0.8}


def redis_benchmark(socket_path: str, requests: int, *args: str) -> dict[str, float]:
    """requests/s by test name of ``redis-benchmark -c 50 -s socket_path -n requests *args``."""
    out = subprocess.run(
        ["redis-benchmark", "-s", socket_path, "-c", "50", "-n", str(requests), "--csv", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    rows = list(csv.reader(io.StringIO(out)))
    return {row[0]: float(row[1]) for row in rows[1:] if len(row) > 1}


def _load_script(socket_path: str) -> str:
    """``SCRIPT LOAD`` of :data:`SCRIPT` on the server at ``socket_path``: its SHA1."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(socket_path)
        sock.sendall(resp_command("SCRIPT", "LOAD", SCRIPT))
        reply = b""
        while reply.count(b"\r\n") < 2:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"SCRIPT LOAD: connection closed after {reply!r}")
            reply += chunk
    if not reply.startswith(b"$"):
        raise RuntimeError(f"SCRIPT LOAD answered {reply!r}")
    return reply.split(b"\r\n")[1].decode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(
    socket_path: str, pid: int, sha: str, requests: int, tests: list[str]
) -> dict[str, tuple[float, float | None]]:
    """Per test, requests/s and the server's CPU microseconds per request, on one server.

    Each test is a ``redis-benchmark`` run of its own, so that the server's CPU time is that
    test's. A run that reports two tests (``lrange_100`` pushes first) gives no CPU figure,
    but an ``lrange_N`` test's LRANGE gets one from a run of ``LRANGE mylist 0 N-1`` alone on
    the list it filled.
    """
    runs = [("-t", test) for test in tests] + [(EVALSHA, sha, "1", "bench:script", "60")]
    found: dict[str, tuple[float, float | None]] = {}

    def run(*args: str) -> tuple[dict[str, float], float]:
        before = cpu_seconds(pid)
        rows = redis_benchmark(socket_path, requests, *args)
        return rows, (cpu_seconds(pid) - before) / requests * 1e6

    for args in runs:
        rows, cpu = run(*args)
        for test, rps in rows.items():
            found[EVALSHA if args[0] == EVALSHA else test] = (rps, cpu if len(rows) == 1 else None)
        if args[1].lower().startswith("lrange_"):
            _, range_cpu = run("LRANGE", "mylist", "0", str(int(args[1].split("_")[1]) - 1))
            test = next(name for name in rows if name.startswith("LRANGE"))
            found[test] = (found[test][0], range_cpu)
    return found


def run(rounds: int, requests: int, tests: list[str]) -> dict[str, dict[str, list[Sample]]]:
    """Per test and peer, one (requests/s, CPU us per request) per round (peers take turns)."""
    found: dict[str, dict[str, list[Sample]]] = {}
    with ExitStack() as stack:
        store = stack.enter_context(blinkstore_process("--memory-limit", "0"))
        redis = stack.enter_context(redis_server_process())
        peers = {
            "store": (str(store.unix_path), store.pid),
            "redis": (redis.unix_path, redis.proc.pid),
        }
        shas = {name: _load_script(path) for name, (path, _) in peers.items()}
        # A warm-up round, not counted: the first test run against a fresh process measured
        # up to 25 % lower than the same test later in the round (ZADD 0.77x first, 1.03x after).
        for name, (path, pid) in peers.items():
            one_round(path, pid, shas[name], max(1000, requests // 10), tests)
        for _ in range(rounds):
            for name, (path, pid) in peers.items():
                for test, sample in one_round(path, pid, shas[name], requests, tests).items():
                    found.setdefault(test, {}).setdefault(name, []).append(sample)
    return found


def _cpu_us(call: Callable[[], object], rounds: int, repeat: int = 2000) -> float:
    """Least process CPU time of ``call`` over ``rounds`` rounds of ``repeat`` calls, in µs:
    the least is the figure other work on a shared host disturbed least."""
    call()
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeat):
            call()
        best = min(best, time.process_time() - start)
    return best / repeat * 1e6


def _in_process_client() -> Callable[[list[bytes]], bytes]:
    """A store's dispatcher without sockets, a shared-memory region attached as the store
    attaches one: a function that runs one request as a client of it and returns the reply."""
    from blinkstore_gunicorn.engine.memory import MemoryEngine
    from blinkstore_gunicorn.server.dispatch import Dispatcher
    from blinkstore_gunicorn.server.store import wall_clock_ms
    from blinkstore_gunicorn.shm.writer import RegionWriter

    engine = MemoryEngine(memory_limit=64 * 2**20, clock_ms=wall_clock_ms)
    engine.attach_region(RegionWriter(engine.memory_limit))
    d = Dispatcher(engine, clock_ms=wall_clock_ms)
    c = d.new_client()
    # execute_resp, as a connection runs a request: the C runner where it answers.
    return lambda args: d.execute_resp(d, c, args)


#: What ``redis-benchmark -t`` sends for each test (without ``-r``: one key, one member, the
#: 3-byte value ``xxx``), to time the command alone in-process.
REQUESTS = {
    "lpush": b"LPUSH mylist xxx",
    "rpush": b"RPUSH mylist xxx",
    "lpop": b"LPOP mylist",
    "rpop": b"RPOP mylist",
    "sadd": b"SADD myset element:__rand_int__",
    "hset": b"HSET myhash element:__rand_int__ xxx",
    "spop": b"SPOP myset",
    "zadd": b"ZADD myzset 0 element:__rand_int__",
    "zpopmin": b"ZPOPMIN myzset",
    "lrange_100": b"LRANGE mylist 0 99",
    "lrange_300": b"LRANGE mylist 0 299",
    "lrange_500": b"LRANGE mylist 0 449",
    "lrange_600": b"LRANGE mylist 0 599",
}


def in_process(rounds: int, tests: list[str], repeat: int = 2000) -> dict[str, float]:
    """CPU µs per request of each test's command (:data:`REQUESTS`), in-process: the command
    alone, without the connection's reading and writing. ``mylist`` holds enough ``xxx`` for
    the ranges and the pops first, as redis-benchmark's LPUSH runs leave it."""
    execute = _in_process_client()
    execute([b"RPUSH", b"mylist", *[b"xxx"] * (600 + (rounds + 1) * repeat * 2)])
    found = {}
    for test in tests:
        if test in REQUESTS:
            args = REQUESTS[test].split()
            found[test] = _cpu_us(lambda: execute(args), rounds, repeat)  # noqa: B023 (run here)
    return found


def breakdown(rounds: int) -> dict[str, float]:
    """CPU µs per request, in-process: ``EVALSHA`` of :data:`SCRIPT`; ``EVALSHA`` of a script
    that only returns 1 (the script machinery: EVALSHA's parsing, the worker greenlet, KEYS/ARGV,
    the Lua call, the reply); the three commands sent by a client instead; what returning a
    two-item table adds to the machinery (:data:`SCRIPT` returns one); and what is left, the
    three ``redis.call`` crossings."""
    execute = _in_process_client()
    key = b"bench:script"

    def evalsha(source: str) -> Callable[[], object]:
        sha = execute([b"SCRIPT", b"LOAD", source.encode()]).split(b"\r\n")[1]
        return lambda: execute([b"EVALSHA", sha, b"1", key, b"60"])

    def commands() -> None:
        execute([b"INCR", key])
        execute([b"EXPIRE", key, b"60"])
        execute([b"GET", key])

    found = {
        "EVALSHA (3 commands)": _cpu_us(evalsha(SCRIPT), rounds),
        "EVALSHA of 'return 1' (script machinery)": _cpu_us(evalsha("return 1"), rounds),
        "INCR + EXPIRE + GET sent by a client": _cpu_us(commands, rounds),
    }
    whole, machinery, plain = found.values()
    table = _cpu_us(evalsha("return {2000, 'abcd'}"), rounds) - machinery
    found["the returned table {n, value}"] = table
    found["3 redis.call crossings"] = whole - machinery - plain - table
    return found


def main(argv: list[str] | None = None) -> int:
    """Print requests/s and store / Redis ratios per test."""
    parser = argparse.ArgumentParser(prog="python -m bench.datatypes", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument(
        "--tests", default="lpush,rpush,lpop,rpop,lrange_100", help="redis-benchmark -t names"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="where an EVALSHA's time goes, in-process"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="CPU per request of each test's command alone, in-process (no servers)",
    )
    args = parser.parse_args(argv)
    if min(args.rounds, args.requests) < 1:
        parser.error("--rounds and --requests must be at least 1")
    if args.breakdown:
        print(f"EVALSHA of {SCRIPT!r}, in-process, CPU µs per request (least of {args.rounds})")
        for part, micros in breakdown(args.rounds).items():
            print(f"  {part:<46} {micros:6.1f}")
        return 0
    if args.in_process:
        print(f"in-process, CPU µs per request (least of {args.rounds} rounds of 2,000)")
        for test, micros in in_process(args.rounds, args.tests.split(",")).items():
            print(f"  {REQUESTS[test].decode():<46} {micros:6.2f}")
        return 0
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark not found: skipped")
        return 0
    found = run(args.rounds, args.requests, args.tests.split(","))
    print(f"redis-benchmark -c 50, unix socket, {args.rounds} round(s), medians")
    print(f"  {'test':<36}   store/s    redis/s  store/redis (bar)   CPU us/request: redis/store")
    for test, peers in found.items():
        store, redis = peers["store"], peers["redis"]
        ratio = statistics.median(s[0] / r[0] for s, r in zip(store, redis, strict=True))
        bar = TARGETS.get(test, TARGETS["default"])
        line = (
            f"  {test:<36} {statistics.median(s[0] for s in store):>9.0f}"
            f" {statistics.median(r[0] for r in redis):>10.0f} {ratio:>8.2f}x   ({bar})"
        )
        if store[0][1] is not None and redis[0][1] is not None:
            # On a busy machine the CPU each server spends per request moves less than the
            # requests/s: redis/store CPU is the ratio two idle cores would give.
            store_cpu = statistics.median(s[1] for s in store if s[1] is not None)
            redis_cpu = statistics.median(r[1] for r in redis if r[1] is not None)
            line += f"   {store_cpu:>6.1f} {redis_cpu:>6.1f}: {redis_cpu / store_cpu:.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
