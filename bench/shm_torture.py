"""Torture run of the shared region against a real ``blinkstore serve``: a full-speed writer,
reader processes in tight loops, optionally a kill -9 and an unsupervised restart.

Every value checks itself: ``version (8 bytes) | size (4) | filler | blake2b-16 digest`` of the
key and all before it, where the filler is random bytes with runs of zeros, drawn from a seed
of (key, version, size) so that a bad value can be compared with what was written. Values
switch between ~1.4 KB and ~4 KB blocks at every write, so the store's allocator hands pages
from one size class to the other: a reader's write into a block it no longer owns then lands
in another key's value (issue 23). The writer also checks what GET over the socket returns.

Counts: *corrupted* (a value that differs from the one written for its key and version in a
few words), *torn* (anything else that fails its digest: versions mixed, another key's bytes),
*stale* (a region answer after a new store on the same socket acknowledged a write: the new
store runs with ``--shm off`` by default, the hardest case).

    python -m bench.shm_torture [--readers 3] [--reads 100000000] [--reads-after-restart N]

(the long run: >= 10**8 reads in total, about 35 minutes on two CPUs); the tests run short
slices.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import multiprocessing
import random
import signal
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

import redis

from blinkstore_gunicorn.shm import handout
from harness.processes import StoreProcess, resp_command, start_blinkstore

__all__ = [
    "TortureResult",
    "check_value",
    "main",
    "make_value",
    "report",
    "running_children",
    "torture",
]

KEYS = 64
#: Both inline: 1 MiB makes 8 KiB pages, five ~1.4 KB blocks or one ~4 KB block each.
MEMORY_LIMIT = "1MiB"
_HEAD = struct.Struct("<QI")
_DIGEST = 16
_CHUNK = 64
# Bytes that may differ from the written value for it to count as corrupted, not torn.
_FEW = 16
_VERSIONS = 16
_ctx = multiprocessing.get_context("fork")


def _filler(key: bytes, version: int, size: int) -> bytes:
    """``size`` random bytes, about half of them in 64-byte runs of zeros (reproducible)."""
    rng = random.Random(hashlib.blake2b(b"%s/%d/%d" % (key, version, size)).digest())
    noise = rng.randbytes(size)
    zeros = rng.getrandbits(size // _CHUNK + 1)
    chunks = [
        bytes(_CHUNK) if zeros >> n & 1 else noise[start : start + _CHUNK]
        for n, start in enumerate(range(0, size, _CHUNK))
    ]
    return b"".join(chunks)[:size]


def make_value(key: bytes, version: int, size: int) -> bytes:
    """A value of ``size`` bytes (at least 28) for ``key`` at ``version`` that checks itself."""
    head = _HEAD.pack(version, size)
    body = head + _filler(key, version, size - _HEAD.size - _DIGEST)
    return body + hashlib.blake2b(key + body, digest_size=_DIGEST).digest()


def check_value(key: bytes, value: bytes) -> str | None:
    """None when ``value`` is a whole value written for ``key``; else "corrupted" or "torn"."""
    digest = hashlib.blake2b(key + value[:-_DIGEST], digest_size=_DIGEST).digest()
    if len(value) > _HEAD.size + _DIGEST and value[-_DIGEST:] == digest:
        return None
    if len(value) >= _HEAD.size:
        version, size = _HEAD.unpack_from(value)
        if size == len(value) and size >= _HEAD.size + _DIGEST and version < 1 << 40:
            written = make_value(key, version, size)
            if sum(a != b for a, b in zip(written, value, strict=True)) <= _FEW:
                return "corrupted"
    return "torn"


def value_size(rng: random.Random, version: int) -> int:
    """~1.4 KB on odd versions, ~4 KB on even ones: every rewrite changes the size class."""
    return rng.randrange(1300, 1500) if version % 2 else rng.randrange(3800, 4100)


@functools.cache
def _values(key: bytes) -> list[bytes]:
    """The values the writer cycles ``key`` through."""
    rng = random.Random(key)
    return [make_value(key, n, value_size(rng, n)) for n in range(_VERSIONS)]


@dataclass
class TortureResult:
    """What the readers (and GET over the socket) saw."""

    reads: int = 0
    hits: int = 0
    fallbacks: int = 0
    corrupted: int = 0
    torn: int = 0
    stale: int = 0
    socket_bad: int = 0
    writes: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    def add(self, counts: dict[str, int | list[str]]) -> None:
        """Add one reader's counts."""
        for name in ("reads", "hits", "fallbacks", "corrupted", "torn", "stale"):
            value = counts[name]
            assert isinstance(value, int)
            setattr(self, name, getattr(self, name) + value)
        examples = counts["examples"]
        assert isinstance(examples, list)
        self.examples.extend(examples[: 10 - len(self.examples)])

    @property
    def bad(self) -> int:
        """Wrong values seen anywhere (readers and socket)."""
        return self.corrupted + self.torn + self.socket_bad


def _reader(path: str, reads: int, reads_after: int, seed: int, pipe: Connection) -> None:
    """Read random keys until ``reads`` are done (``reads_after`` more after a restart) and the
    parent says stop; send the counts.

    The parent sends "restarted" once a new store acknowledged a write (every later region
    answer is stale) and "stop" when the run is over. The key of the first wrong value is sent
    at once, so that the parent can GET it and a run can end early.
    """
    region = handout.attach(path, None, 10)
    rng = random.Random(seed)
    keys = [b"key:%d" % n for n in range(KEYS)]
    counts: dict[str, int] = dict.fromkeys(("hits", "fallbacks", "corrupted", "torn", "stale"), 0)
    examples: list[str] = []
    done = 0
    goal = reads
    restarted = stopping = False
    pipe.send("attached")
    while not (stopping and done >= goal):
        for key in rng.choices(keys, k=256):
            value = region.get(key)
            if isinstance(value, bytes):
                counts["hits"] += 1
                counts["stale"] += restarted
                problem = check_value(key, value)
                if problem is not None:
                    counts[problem] += 1
                    if not examples:
                        pipe.send(key)  # the parent asks the store for it at once
                    if len(examples) < 10:
                        examples.append(f"{key!r}: {problem} {value[:12].hex()} ({len(value)} B)")
            elif value is None:
                counts["stale"] += restarted
            else:
                counts["fallbacks"] += 1
        done += 256
        if goal <= done < goal + 256:
            pipe.send("done")
        while pipe.poll():
            message = pipe.recv()
            if message == "restarted":
                restarted = True
                goal = done + reads_after
            stopping = stopping or message == "stop"
    pipe.send({"reads": done, **counts, "examples": examples})


@contextlib.contextmanager
def running_children() -> Iterator[list[BaseProcess]]:
    """A list to put started processes in; every one still alive is killed when the block ends."""
    procs: list[BaseProcess] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)


class _Writer:
    """Rewrites the keys through redis-py (pipelined) and checks GET over the socket.

    Each key cycles through :data:`_VERSIONS` values made in advance (so that the writer is
    not the bottleneck); consecutive versions of a key are in different size classes.
    """

    def __init__(self, store: StoreProcess, result: TortureResult) -> None:
        assert store.unix_path is not None
        self.client = redis.Redis(unix_socket_path=store.unix_path, socket_timeout=30)
        self.result = result
        self.rng = random.Random(1)
        self.keys = [b"key:%d" % n for n in range(KEYS)]
        self.next = dict.fromkeys(self.keys, 0)

    def writes(self) -> list[tuple[bytes, bytes | None]]:
        """The next 64 writes: (key, value), or (key, None) for a DEL (frees a block)."""
        writes: list[tuple[bytes, bytes | None]] = []
        for _ in range(64):
            key = self.rng.choice(self.keys)
            if self.rng.random() < 0.05:
                writes.append((key, None))
            else:
                version = self.next[key]
                self.next[key] = (version + 1) % _VERSIONS
                writes.append((key, _values(key)[version]))
        return writes

    def round(self) -> None:
        """One pipeline of writes, acknowledged."""
        pipe = self.client.pipeline(transaction=False)
        for key, value in self.writes():
            if value is None:
                pipe.delete(key)
            else:
                pipe.set(key, value)
        pipe.execute()
        self.result.writes += 64

    def kill_mid_write(self, store: StoreProcess) -> None:
        """Send writes without waiting for them and SIGKILL the store while it applies them."""
        requests = [
            resp_command("DEL", key) if value is None else resp_command("SET", key, value)
            for _ in range(4)
            for key, value in self.writes()
        ]
        with store.connect() as sock:
            sock.sendall(b"".join(requests))
            store.stop(signal.SIGKILL)
        self.close()

    def check_socket(self, keys: list[bytes] | None = None) -> None:
        """GET ``keys`` (default all) over the socket: is the store's own copy whole?"""
        keys = keys or [b"key:%d" % n for n in range(KEYS)]
        for key, value in zip(keys, self.client.mget(keys), strict=True):
            if isinstance(value, bytes) and check_value(key, value) is not None:
                self.result.socket_bad += 1
                if len(self.result.examples) < 10:
                    self.result.examples.append(f"GET {key!r}: {value[:12].hex()}")

    def close(self) -> None:
        self.client.close()


def torture(
    workdir: str,
    *,
    readers: int = 3,
    reads: int = 200_000,
    restart: bool = False,
    reads_after_restart: int = 50_000,
    seconds: float = 0,
    restart_shm: str = "off",
    stop_at_first_bad: bool = False,
) -> TortureResult:
    """Run the torture (see the module doc) with a store in ``workdir``; return the counts.

    Each of ``readers`` processes makes at least ``reads`` reads while the writer writes, for
    ``seconds`` at least. With ``restart``, the store is then SIGKILLed in the middle of
    writes, a new one (``--shm restart_shm``) starts on the same socket, unsupervised, and
    once it acknowledged a write each reader makes ``reads_after_restart`` more reads, all of
    which must go to the store. ``stop_at_first_bad`` ends the run at the first wrong value.
    Every process started here is stopped before it returns.
    """
    directory = Path(workdir)
    result = TortureResult()
    start = time.monotonic()
    stores = [start_blinkstore("--memory-limit", MEMORY_LIMIT, directory=directory)]
    writer = _Writer(stores[0], result)
    try:
        with running_children() as procs:
            writer.round()
            path = stores[0].unix_path
            pipes: list[Connection] = []
            for n in range(readers):
                mine, theirs = _ctx.Pipe()
                args = (path, reads, reads_after_restart, 100 + n, theirs)
                procs.append(_ctx.Process(target=_reader, args=args, daemon=True))
                procs[-1].start()
                pipes.append(mine)
            for pipe in pipes:
                if not pipe.poll(60) or pipe.recv() != "attached":
                    raise RuntimeError("a reader did not attach")
            bad = _write_while_reading(writer, pipes, start + seconds, stop_at_first_bad)
            if restart and not bad:
                writer.kill_mid_write(stores[-1])
                stores.append(
                    start_blinkstore(
                        "--memory-limit", MEMORY_LIMIT, "--shm", restart_shm, directory=directory
                    )
                )
                writer = _Writer(stores[-1], result)
                writer.round()  # acknowledged: from now on a region answer is stale
                for pipe in pipes:
                    pipe.send("restarted")
                _write_while_reading(writer, pipes, 0, stop_at_first_bad)
            writer.check_socket()
            for pipe in pipes:
                pipe.send("stop")
            for pipe in pipes:
                counts = pipe.recv()
                while not isinstance(counts, dict):
                    counts = pipe.recv()
                result.add(counts)
    finally:
        writer.close()
        for each in stores:
            each.stop(signal.SIGKILL)
    result.seconds = time.monotonic() - start
    return result


def _write_while_reading(
    writer: _Writer, pipes: list[Connection], end: float, stop_at_first_bad: bool
) -> bool:
    """Write until every reader said "done" and ``end`` (monotonic) passed; GET the key of
    every wrong value a reader reports. Whether one was reported."""
    waiting = set(pipes)
    bad = False
    rounds = 0
    while waiting or time.monotonic() < end:
        writer.round()
        rounds += 1
        if rounds % 16 == 0:
            writer.check_socket()
        for ready in wait(pipes, 0):
            assert isinstance(ready, Connection)
            message = ready.recv()
            if message == "done":
                waiting.discard(ready)
            else:
                bad = True
                writer.check_socket([message])
        if stop_at_first_bad and (bad or writer.result.socket_bad):
            return True
    return bad or writer.result.socket_bad > 0


def report(result: TortureResult, readers: int) -> str:
    """One line: what the readers and the socket saw."""
    return (
        f"torture: {result.reads} reads by {readers} processes in {result.seconds:.0f}s "
        f"({result.writes} writes): {result.hits} hits, {result.fallbacks} asked the store; "
        f"corrupted {result.corrupted}, torn {result.torn}, stale {result.stale}, "
        f"bad over the socket {result.socket_bad}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the torture and print its counts; exit status 1 on any bad or stale read."""
    parser = argparse.ArgumentParser(prog="python -m bench.shm_torture", description=__doc__)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--reads", type=int, default=100_000_000, help="in total")
    parser.add_argument("--reads-after-restart", type=int, default=300_000, help="in total")
    parser.add_argument("--restart-shm", default="off", choices=("off", "on", "checksum"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bs-", dir="/tmp") as workdir:
        result = torture(
            workdir,
            readers=args.readers,
            reads=args.reads // args.readers,
            restart=True,
            reads_after_restart=args.reads_after_restart // args.readers,
            restart_shm=args.restart_shm,
        )
    print(report(result, args.readers))
    for example in result.examples:
        print("  " + example)
    return 1 if result.bad or result.stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
