"""Torture run of warm restarts under a real gunicorn master: kill -9 the store at random
moments while a writer runs and readers check every value; the successor adopts the region.

Values check themselves (``bench.shm_torture.make_value``: version, random bytes with runs of
zeros, a digest of key and all before it). The writer SETs over the socket and records the
version of every acknowledged write. Readers read the region (re-mapping the successor's after
each takeover) and the socket when the region says "ask the store", and count:

* **wrong**: a value that fails its digest;
* **older**: a value older than the key's last write acknowledged before the read started
  (an acknowledged write lost, or a dead store's value served after the successor's).

After each takeover, once the successor acknowledged a write, the writer pauses and every key
is read over the socket: **lost** counts keys whose value is older than their last
acknowledged write, or missing. The kill lands after a random number of writes since the last
takeover, so anywhere in a write. Those three must be 0. One exception is counted apart,
**dropped in flight**: the key whose write the kill interrupted may be missing (the store
rewrites a value in place, so a slot killed mid-write holds neither value: it is dropped,
never served), as in Redis, which may lose the last writes before a crash.

``--fill`` more keys are SET once at the start and never checked: they keep each successor
adopting in the background for a while (about 15 us a key), so the writer's and the readers'
commands, and the checks, run while adoption is pending, and kills land in it too (what the
killed successor had not adopted yet of these is lost, as documented).

    python -m bench.adopt_torture [--kills 30] [--readers 2] [--fill 50000]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.shm_torture import check_value, make_value
from blinkstore_gunicorn.shm import handout
from blinkstore_gunicorn.shm.fds import recv_fds
from blinkstore_gunicorn.shm.reader import FALLBACK, RegionReader
from harness.gunicorn import CONF, Gunicorn, get, gunicorn, wait_until

__all__ = ["AdoptTortureResult", "adopting", "main", "torture"]

KEYS = 200
FILL = 50_000
_BATCH = 16
_VERSION_BYTES = 8
_TIMEOUT = 10.0
_ADOPTED = re.compile(r"adopted (\d+) keys .* in (\d+) ms \(dropped: (\d+) in doubt")


@dataclass
class AdoptTortureResult:
    """What the run saw; ``wrong``, ``older`` and ``lost`` must be 0."""

    kills: int = 0
    writes: int = 0
    acknowledged: int = 0
    reads: int = 0
    region_hits: int = 0
    wrong: int = 0
    older: int = 0
    lost: int = 0
    dropped_in_flight: int = 0
    #: Kills of a store still adopting its predecessor's entries in the background.
    killed_adopting: int = 0
    #: Per takeover: keys adopted, milliseconds, slots dropped as in doubt (the store's log).
    adoptions: list[tuple[int, int, int]] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        """Keep the first few problems for the report."""
        if len(self.examples) < 10:
            self.examples.append(what)


def adopting(path: str) -> bool:
    """Whether the store on ``path`` is still adopting its predecessor's entries: it answers
    ``BS.SHM`` with ``TRYAGAIN`` then (a question that adopts nothing)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(_TIMEOUT)
        sock.connect(path)
        sock.sendall(handout.REQUEST)
        reply, fds = recv_fds(sock, 256, 2)
    for fd in fds:
        os.close(fd)
    return reply.startswith(b"-TRYAGAIN")


def _version(value: bytes) -> int:
    return int.from_bytes(value[:_VERSION_BYTES], "little")


class _Writer(threading.Thread):
    """SETs random keys to their next version; ``acked`` holds the last acknowledged one."""

    def __init__(self, path: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.client = redis.Redis(unix_socket_path=path, socket_timeout=_TIMEOUT)
        self.rng = random.Random(seed)
        self.acked: dict[bytes, int] = {}
        self.versions: dict[bytes, int] = {}
        #: Keys whose write failed (the store died during it) since the last check.
        self.unsure: set[bytes] = set()
        self.writes = 0
        self.stop = threading.Event()
        self.resume = threading.Event()
        self.resume.set()
        self.parked = threading.Event()

    def run(self) -> None:
        keys = [b"key:%d" % n for n in range(KEYS)]
        while not self.stop.is_set():
            if not self.resume.is_set():
                self.parked.set()
                self.resume.wait()
                self.parked.clear()
                continue
            # A pipeline of distinct keys: the store is busy writing when the kill lands.
            batch = self.rng.sample(keys, _BATCH)
            pipe = self.client.pipeline(transaction=False)
            for key in batch:
                version = self.versions[key] = self.versions.get(key, 0) + 1
                pipe.set(key, make_value(key, version, self.rng.randrange(29, 400)))
            try:
                pipe.execute()
            except redis.RedisError:
                self.unsure.update(batch)  # the store died under them: not acknowledged
                continue
            for key in batch:
                self.acked[key] = self.versions[key]
            self.writes += _BATCH

    def pause(self) -> None:
        """Wait until no write is in flight and none starts until :meth:`go_on`."""
        self.resume.clear()
        assert self.parked.wait(_TIMEOUT * 3), "the writer did not park"

    def go_on(self) -> None:
        self.resume.set()


class _Reader(threading.Thread):
    """Reads random keys from the region (the socket when it says "ask") and checks them."""

    def __init__(self, path: str, writer: _Writer, result: AdoptTortureResult, seed: int) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.writer = writer
        self.result = result
        self.rng = random.Random(seed)
        self.client = redis.Redis(unix_socket_path=path, socket_timeout=_TIMEOUT)
        self.stop = threading.Event()
        self.region: RegionReader | None = None

    def _attach(self) -> None:
        if self.region is not None:
            self.region.close()
            self.region = None
        try:
            self.region = handout.attach(self.path, None, _TIMEOUT)
        except OSError:
            self.region = None  # between two stores: the socket answers meanwhile

    def run(self) -> None:
        keys = [b"key:%d" % n for n in range(KEYS)]
        result = self.result
        while not self.stop.is_set():
            if self.region is None or not self.region.alive:
                self._attach()
            key = self.rng.choice(keys)
            floor = self.writer.acked.get(key, 0)
            value: object = self.region.get(key) if self.region is not None else FALLBACK
            if value is FALLBACK:
                try:
                    value = self.client.get(key)
                except redis.RedisError:
                    continue
            else:
                result.region_hits += 1
            result.reads += 1
            if not isinstance(value, bytes):
                continue
            if check_value(key, value) is not None:
                result.wrong += 1
                result.note(f"wrong value for {key!r}: {value[:16].hex()}")
            elif _version(value) < floor:
                result.older += 1
                result.note(f"{key!r}: version {_version(value)} read after {floor} was acked")
        if self.region is not None:
            self.region.close()


def _check_all(client: redis.Redis, writer: _Writer, result: AdoptTortureResult) -> None:
    """With the writer parked: every key holds its last acknowledged version or a newer one."""
    keys = sorted(writer.acked)
    values = client.mget(keys)
    for key, raw in zip(keys, values, strict=True):
        value = raw if isinstance(raw, bytes) else None
        if value is None and key in writer.unsure:
            result.dropped_in_flight += 1
            del writer.acked[key]  # known gone: readers may see it missing
        elif value is None or check_value(key, value) is not None:
            result.lost += 1
            result.note(f"{key!r} lost (acked version {writer.acked[key]}): {value!r:.40}")
        elif _version(value) < writer.acked[key]:
            result.lost += 1
            result.note(f"{key!r}: version {_version(value)}, acked {writer.acked[key]}")
    writer.unsure.clear()


def _one_kill(
    server: Gunicorn, writer: _Writer, rng: random.Random, result: AdoptTortureResult
) -> None:
    assert wait_until(lambda: len(server.store_processes()) == 2, 60.0), server.log()
    store = server.store_pid()
    after = writer.writes + rng.randrange(20, 2000)
    assert wait_until(lambda: writer.writes >= after, 60.0), "the writer writes"
    result.killed_adopting += adopting(writer.path)
    os.kill(store, signal.SIGKILL)
    result.kills += 1
    assert wait_until(lambda: server.store_pid() != store, 60.0), server.log()
    acked = writer.writes + 1
    assert wait_until(lambda: writer.writes >= acked, 60.0), "the successor takes writes"
    writer.pause()
    try:
        _check_all(writer.client, writer, result)
    finally:
        writer.go_on()


def _fill(path: str, n: int) -> None:
    """SET ``n`` keys nobody checks (see the module doc)."""
    client = redis.Redis(unix_socket_path=path, socket_timeout=_TIMEOUT * 6)
    for start in range(0, n, 5000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(n, start + 5000)):
            pipe.set(b"fill:%d" % i, b"%100d" % i)
        pipe.execute()
    client.close()


def torture(
    cwd: Path, kills: int, readers: int = 2, seed: int = 0, fill: int = FILL
) -> AdoptTortureResult:
    """Run the torture under one gunicorn master started in ``cwd``."""
    result = AdoptTortureResult()
    rng = random.Random(seed)
    with gunicorn([*CONF, "-w", "1", "wsgi_app:app"], cwd) as server:
        path = get(server.url + "/env")["url"][len("unix://") :]
        _fill(path, fill)
        writer = _Writer(path, seed)
        threads = [_Reader(path, writer, result, seed + 1 + n) for n in range(readers)]
        writer.start()
        for thread in threads:
            thread.start()
        try:
            for _ in range(kills):
                _one_kill(server, writer, rng, result)
        finally:
            writer.stop.set()
            writer.go_on()
            for thread in threads:
                thread.stop.set()
            everyone: list[threading.Thread] = [writer, *threads]
            for running in everyone:
                running.join(_TIMEOUT * 3)
        result.writes = writer.writes
        result.acknowledged = len(writer.acked)
        result.adoptions = [
            (int(kept), int(ms), int(doubt)) for kept, ms, doubt in _ADOPTED.findall(server.log())
        ]
    return result


def main(argv: list[str] | None = None) -> int:
    """Run it and print the counts; exit status 1 when anything was wrong or lost."""
    parser = argparse.ArgumentParser(prog="python -m bench.adopt_torture", description=__doc__)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--fill", type=int, default=FILL, help="keys set once, never checked")
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cwd:
        result = torture(Path(cwd), args.kills, args.readers, args.seed, args.fill)
    times = sorted(ms for _, ms, _ in result.adoptions)
    print(
        f"seed {args.seed}: {result.kills} kills, {result.writes} acknowledged writes, "
        f"{result.reads} reads ({result.region_hits} from the region): "
        f"{result.wrong} wrong, {result.older} older than acknowledged, {result.lost} lost "
        f"({result.dropped_in_flight} keys dropped in flight; {result.killed_adopting} kills "
        "while the store was still adopting)"
    )
    if times:
        print(
            f"adoptions: {len(times)}, {sum(d for *_, d in result.adoptions)} slots in doubt "
            f"dropped, adoption time median {times[len(times) // 2]} ms, max {times[-1]} ms"
        )
    for example in result.examples:
        print(" ", example)
    return 1 if result.wrong or result.older or result.lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
