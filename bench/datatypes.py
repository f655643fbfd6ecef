"""Redis data-type commands and Lua scripts under ``redis-benchmark -c 50``, store vs Redis.

    python -m bench.datatypes [--rounds 3] [--requests 100000] [--tests lpush,rpush,lpop,rpop]

``blinkstore serve`` and redis-server are started side by side on Unix sockets; each round
runs ``redis-benchmark -c 50`` on one, then on the other, so a drift of a shared machine hits
both. Besides the ``--tests`` (redis-benchmark's own names), every round runs ``EVALSHA`` of
:data:`SCRIPT`, a script of three ``redis.call`` (INCR, EXPIRE, GET: the shape of the rate
limit and lock scripts libraries ship). Reports the median requests/s per peer and the median
of the per-round store / Redis ratios, next to the bars of issue 20.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import statistics
import subprocess
from contextlib import ExitStack

from harness.processes import blinkstore_process, redis_server_process, resp_command

#: Three commands, as the scripts of ``limits`` or redis-py's ``Lock`` issue.
SCRIPT = (
    "local n = redis.call('INCR', KEYS[1]) "
    "redis.call('EXPIRE', KEYS[1], ARGV[1]) "
    "return {n, redis.call('GET', KEYS[1])}"
)
EVALSHA = "EVALSHA"
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


def one_round(socket_path: str, sha: str, requests: int, tests: str) -> dict[str, float]:
    """requests/s of every test and of ``EVALSHA`` on one server."""
    found = redis_benchmark(socket_path, requests, "-t", tests)
    script = redis_benchmark(socket_path, requests, "EVALSHA", sha, "1", "bench:script", "60")
    found[EVALSHA] = next(iter(script.values()))
    return found


def run(rounds: int, requests: int, tests: str) -> dict[str, dict[str, list[float]]]:
    """requests/s per test and peer, one entry per round (the peers take turns)."""
    found: dict[str, dict[str, list[float]]] = {}
    with ExitStack() as stack:
        store = stack.enter_context(blinkstore_process("--memory-limit", "0"))
        redis = stack.enter_context(redis_server_process())
        paths = {"store": str(store.unix_path), "redis": redis.unix_path}
        shas = {name: _load_script(path) for name, path in paths.items()}
        for _ in range(rounds):
            for name, path in paths.items():
                for test, rps in one_round(path, shas[name], requests, tests).items():
                    found.setdefault(test, {}).setdefault(name, []).append(rps)
    return found


def main(argv: list[str] | None = None) -> int:
    """Print requests/s and store / Redis ratios per test."""
    parser = argparse.ArgumentParser(prog="python -m bench.datatypes", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument(
        "--tests", default="lpush,rpush,lpop,rpop", help="redis-benchmark -t names"
    )
    args = parser.parse_args(argv)
    if min(args.rounds, args.requests) < 1:
        parser.error("--rounds and --requests must be at least 1")
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark not found: skipped")
        return 0
    found = run(args.rounds, args.requests, args.tests)
    print(f"redis-benchmark -c 50, unix socket, {args.rounds} round(s), requests/s (median)")
    print("  test          store      redis   store/redis  (bar)")
    for test, peers in found.items():
        ratio = statistics.median(
            s / r for s, r in zip(peers["store"], peers["redis"], strict=True)
        )
        bar = TARGETS.get(test, TARGETS["default"])
        print(
            f"  {test:<10} {statistics.median(peers['store']):>9.0f}"
            f" {statistics.median(peers['redis']):>10.0f} {ratio:>10.2f}x   ({bar})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
