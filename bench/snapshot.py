"""Snapshots: write and load time, peak memory, and what a background save costs other clients,
beside redis-server's BGSAVE and load of the same data in the same run.

    python -m bench.snapshot [--sizes 64MiB,1GiB] [--value-size 1024] [--probes 3000] [--runs 3]

For each size, the store (``--snapshot``, ``--memory-limit 0``) and a redis-server are filled
with the same keys and values (random bytes, so Redis's LZF finds nothing to compress). Then,
on each server in turn:

* **p99 without a save**: one client alternates GET and SET of random keys (one request in
  flight, as a web worker does) and times each;
* **during a save**: the same client while ``BGSAVE`` runs, until it is done; its duration; and
  the peak of the child's private (copied-on-write) memory from ``/proc/PID/smaps_rollup``;
* **stop and start**: the store writes its snapshot on SIGTERM and loads it on start (the times
  its log gives, and its peak RSS, ``VmHWM``); redis-server's load time is the one its log gives.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from blinkstore_gunicorn.config import parse_size
from blinkstore_gunicorn.protocol import resp
from harness.processes import (
    redis_server_process,
    resp_command,
    short_tempdir,
    start_blinkstore,
)

_BATCH = 1000
_POOL = 4096


class Raw:
    """One pipelining RESP connection on a Unix socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.reader = resp.ReplyReader()

    def call(self, *commands: bytes) -> list[Any]:
        self.sock.sendall(b"".join(commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self.reader.next_reply()
            if reply is resp.NEED_MORE:
                self.reader.feed(self.sock.recv(1 << 20))
            else:
                replies.append(reply)
        return replies

    def info(self) -> dict[str, str]:
        text = self.call(resp_command("INFO", "persistence"))[0].decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def fill(path: str, keys: int, value_size: int) -> None:
    pool = [os.urandom(value_size) for _ in range(_POOL)]
    raw = Raw(path)
    for start in range(0, keys, _BATCH):
        args: list[bytes] = [b"MSET"]
        for i in range(start, min(keys, start + _BATCH)):
            args += (b"key:%09d" % i, pool[i % _POOL])
        raw.call(resp_command(*args))


def _probe(raw: Raw, keys: int, value: bytes, rng: random.Random) -> float:
    key = b"key:%09d" % rng.randrange(keys)
    command = resp_command("GET", key) if rng.random() < 0.5 else resp_command("SET", key, value)
    started = time.perf_counter_ns()
    raw.call(command)
    return (time.perf_counter_ns() - started) / 1000


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) > 100 else max(samples)


def _child_private_mib(pid: int) -> float:
    """Private memory of ``pid``'s first child (the save), MiB; 0 when it has none."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if not children:
            return 0.0
        text = Path(f"/proc/{children[0]}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    found = re.findall(r"^Private_(?:Clean|Dirty):\s+(\d+) kB", text, re.M)
    return sum(int(n) for n in found) / 1024


def _hwm_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


def latencies(path: str, pid: int, keys: int, probes: int, value_size: int) -> dict[str, float]:
    """p99 of GET/SET without a save, then during one (BGSAVE), the save's wall time and the
    child's peak private memory."""
    rng = random.Random(7)
    value = os.urandom(value_size)
    raw, watcher = Raw(path), Raw(path)
    for _ in range(200):  # warm-up: the first requests of a connection are slower
        _probe(raw, keys, value, rng)
    quiet = [_probe(raw, keys, value, rng) for _ in range(probes)]
    saves = int(watcher.info().get("rdb_saves", "0"))
    started = time.monotonic()
    watcher.call(resp_command("BGSAVE"))
    during: list[float] = []
    private = 0.0
    while True:
        during.append(_probe(raw, keys, value, rng))
        if len(during) % 50 == 0:
            private = max(private, _child_private_mib(pid))
            info = watcher.info()
            if info["rdb_bgsave_in_progress"] == "0" and (
                "rdb_saves" not in info or int(info["rdb_saves"]) > saves
            ):
                break
    return {
        "p99_quiet_us": p99(quiet),
        "p99_saving_us": p99(during),
        "probes_saving": len(during),
        "bgsave_s": time.monotonic() - started,
        "child_private_mib": private,
    }


def _log_seconds(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else float("nan")


def measure_store(keys: int, value_size: int, probes: int) -> dict[str, float]:
    with short_tempdir() as directory:
        flags = ("--memory-limit", "0", "--snapshot", str(directory / "cache.rdb"))
        store = start_blinkstore(*flags, "--snapshot-interval", "0", directory=directory)
        try:
            assert store.unix_path is not None
            fill(store.unix_path, keys, value_size)
            result = latencies(store.unix_path, store.pid, keys, probes, value_size)
            result["rss_mib"] = _hwm_mib(store.pid)
        finally:
            # Not store.stop(): its bound is for tests, and writing 1 GiB takes longer.
            store.proc.send_signal(signal.SIGTERM)
            store.proc.wait(900)
        result["file_mib"] = (directory / "cache.rdb").stat().st_size / 2**20
        result["write_s"] = _log_seconds(r"saved on stop: \d+ keys in ([\d.]+) s", store.log_text())
        store = start_blinkstore(*flags, directory=directory, timeout=600)
        try:
            result["load_s"] = _log_seconds(r"loaded in ([\d.]+) s", store.log_text())
            result["load_rss_mib"] = _hwm_mib(store.pid)
        finally:
            store.stop(signal.SIGKILL)
    return result


def measure_redis(keys: int, value_size: int, probes: int) -> dict[str, float]:
    with short_tempdir("rb-") as directory:
        with redis_server_process("--dir", str(directory)) as server:
            fill(server.unix_path, keys, value_size)
            result = latencies(server.unix_path, server.proc.pid, keys, probes, value_size)
            result["rss_mib"] = _hwm_mib(server.proc.pid)
        result["file_mib"] = (directory / "dump.rdb").stat().st_size / 2**20
        with redis_server_process("--dir", str(directory), timeout=600) as server:
            log = (server.directory / "redis.log").read_text()
            result["load_s"] = _log_seconds(r"DB loaded from disk: ([\d.]+) seconds", log)
            result["load_rss_mib"] = _hwm_mib(server.proc.pid)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.snapshot", description=__doc__)
    parser.add_argument("--sizes", default="64MiB,1GiB", help="value bytes in all")
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--probes", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3, help="each figure is the median of these")
    args = parser.parse_args(argv)
    columns = (
        "p99_quiet_us",
        "p99_saving_us",
        "bgsave_s",
        "child_private_mib",
        "rss_mib",
        "file_mib",
        "write_s",
        "load_s",
        "load_rss_mib",
    )
    print(f"medians of {args.runs} runs; latencies in microseconds, memory in MiB, times in s")
    print("size     server      " + "  ".join(f"{c:>17}" for c in columns))
    for size in args.sizes.split(","):
        keys = parse_size(size) // args.value_size
        for name, measure in (("blinkstore", measure_store), ("redis", measure_redis)):
            runs = [measure(keys, args.value_size, args.probes) for _ in range(args.runs)]
            row = {c: statistics.median(run.get(c, float("nan")) for run in runs) for c in columns}
            cells = "  ".join(f"{row.get(c, float('nan')):>17.3f}" for c in columns)
            print(f"{size:<8} {name:<11} {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
