"""Torture run of the shared region: one writer at full speed, reader processes in tight loops.

The writer is a :class:`~blinkstore_gunicorn.engine.MemoryEngine` with a region attached (the
store's own write path): it rewrites, deletes and expires keys with values of 1 B to 64 KiB,
under a memory limit small enough to evict. Every value names its key and version and carries
a checksum, so a reader recognises a torn value (bytes of two versions) or a foreign one
(another key's). Optionally the writer is killed with SIGKILL mid-run and a new one takes over
the generation file: from the moment it has published, every old reader must stop answering.

Used by ``bench.shm`` (the long run, >= 10**7 reads) and by a short slice in the tests; on
its own: ``python -m bench.shm_torture [--readers 2] [--reads 10000000] [--kill-after 5]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import socket
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.shm.reader import RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter

__all__ = ["TortureResult", "check_value", "main", "make_value", "report", "torture"]

KEYS = 2000
MAX_VALUE = 64 * 1024
# key length (2 bytes), version (8), value length (4), then the key, filler, crc32 of all before.
_HEAD = struct.Struct("<HQI")
_ctx = multiprocessing.get_context("fork")


def make_value(key: bytes, version: int, size: int) -> bytes:
    """A value of ``size`` bytes that names ``key`` and ``version`` and checks itself."""
    if size < _HEAD.size + len(key) + 4:
        # Too small to carry a header: a fill byte that depends on the key and the size.
        return bytes([(zlib.crc32(key) + size) & 0xFF]) * size
    body = _HEAD.pack(len(key), version, size) + key
    body += bytes([version & 0xFF]) * (size - len(body) - 4)
    return body + struct.pack("<I", zlib.crc32(body))


def check_value(key: bytes, value: bytes) -> str | None:
    """None when ``value`` is a whole value written for ``key``; else what is wrong with it."""
    size = len(value)
    if size < _HEAD.size + len(key) + 4:
        return None if value == make_value(key, 0, size) else "torn or foreign small value"
    klen, _version, declared = _HEAD.unpack_from(value)
    if declared != size or value[_HEAD.size : _HEAD.size + klen] != key:
        return "foreign value"
    if zlib.crc32(value[:-4]) != struct.unpack_from("<I", value, size - 4)[0]:
        return "torn value"
    return None


def _sizes(rng: random.Random) -> int:
    """1 B .. 64 KiB, log-uniform: as many 10-byte values as 10-KiB ones."""
    return min(MAX_VALUE, int(2 ** rng.uniform(0, 16)))


def _writer(gen_path: str, channel: socket.socket, memory_limit: int, seed: int) -> None:
    region = RegionWriter(memory_limit, max_value=MAX_VALUE, generation_path=gen_path)
    engine = MemoryEngine(memory_limit=memory_limit, max_value_size=MAX_VALUE)
    engine.attach_region(region)
    rng = random.Random(seed)
    version = 0
    # Publish a first batch before telling anyone the region exists.
    for n in range(KEYS):
        engine.set(b"key:%d" % n, make_value(b"key:%d" % n, 0, _sizes(rng)))
    socket.send_fds(channel, [b"r"], list(region.fds))
    while True:
        version += 1
        key = b"key:%d" % rng.randrange(KEYS)
        roll = rng.random()
        if roll < 0.7:
            engine.set(key, make_value(key, version, _sizes(rng)))
        elif roll < 0.85:
            engine.delete(key)
        else:
            deadline = time.time_ns() // 1_000_000 + rng.randrange(1, 20)
            engine.set(key, make_value(key, version, _sizes(rng)), expire_at_ms=deadline)
        if version % 256 == 0:
            engine.expire_due()


@dataclass
class TortureResult:
    """What the readers saw."""

    reads: int = 0
    hits: int = 0
    misses: int = 0
    fallbacks: int = 0
    bad: list[str] = field(default_factory=list)
    # Reads an old reader answered from the region after the new writer had published.
    stale_after_restart: int = 0
    seconds: float = 0.0

    def add(self, other: dict[str, int | list[str]]) -> None:
        for name in ("reads", "hits", "misses", "fallbacks", "stale_after_restart"):
            setattr(self, name, getattr(self, name) + other[name])
        bad = other["bad"]
        assert isinstance(bad, list)
        self.bad.extend(bad)


def _reader(
    fds: list[int], counter: int, reads: int, restart: bool, seed: int, pipe: Connection
) -> None:
    region = RegionReader(fds[0], fds[1], counter)
    rng = random.Random(seed)
    keys = [b"key:%d" % n for n in range(KEYS)]
    counts: dict[str, int | list[str]] = {}
    hits = misses = fallbacks = stale = done = 0
    bad: list[str] = []
    restarted = False
    # With a restart to come, read on until it has been seen, and for a while after.
    after = 0
    while done < reads or (restart and after < 10_000):
        for key in rng.choices(keys, k=256):
            value = region.get(key)
            if value is None:
                misses += 1
                stale += restarted
            elif not isinstance(value, bytes):
                fallbacks += 1
            else:
                hits += 1
                stale += restarted
                problem = check_value(key, value)
                if problem and len(bad) < 10:
                    bad.append(f"{key!r}: {problem} ({len(value)} bytes)")
        done += 256
        after += 256 * restarted
        if not restarted and pipe.poll():
            # The parent says a new writer has published since: nothing may be read any more.
            pipe.recv()
            restarted = True
            pipe.send("ok")
    counts.update(reads=done, hits=hits, misses=misses, fallbacks=fallbacks)
    counts.update(stale_after_restart=stale, bad=bad)
    pipe.send(counts)
    region.close()


def _start_writer(gen_path: str, memory_limit: int, seed: int) -> tuple[BaseProcess, list[int]]:
    ours, theirs = socket.socketpair()
    proc = _ctx.Process(target=_writer, args=(gen_path, theirs, memory_limit, seed), daemon=True)
    proc.start()
    theirs.close()
    ours.settimeout(60)
    _, fds, _, _ = socket.recv_fds(ours, 1, 2)
    ours.close()
    return proc, fds


def torture(
    workdir: str,
    *,
    readers: int = 2,
    reads: int = 200_000,
    kill_after: float | None = 1.0,
    memory_limit: int = 8 * 2**20,
) -> TortureResult:
    """Run the torture: ``readers`` processes make ``reads`` reads each (see the module doc).

    With ``kill_after`` (seconds), the writer is SIGKILLed then (it is always mid-write), a new
    writer takes over the generation file, and the readers are told once it has published:
    their later reads must all fall back. Every process started here is stopped before it
    returns.
    """
    gen_path = os.path.join(workdir, "torture.gen")
    writer, fds = _start_writer(gen_path, memory_limit, 1)
    procs: list[BaseProcess] = [writer]
    pipes: list[Connection] = []
    result = TortureResult()
    start = time.monotonic()
    try:
        for n in range(readers):
            mine, theirs = _ctx.Pipe()
            args = (fds, n, reads, kill_after is not None, 100 + n, theirs)
            reader: BaseProcess = _ctx.Process(target=_reader, args=args, daemon=True)
            reader.start()
            procs.append(reader)
            pipes.append(mine)
        for fd in fds:
            os.close(fd)
        if kill_after is not None:
            # Not a wait for a condition: the kill lands wherever the writer is by then.
            time.sleep(kill_after)
            os.kill(writer.pid or 0, signal.SIGKILL)
            writer.join()
            replacement, new_fds = _start_writer(gen_path, memory_limit, 2)
            procs.append(replacement)
            for fd in new_fds:
                os.close(fd)
            for pipe in pipes:
                pipe.send("restarted")
        for pipe in pipes:
            message = pipe.recv()
            if message == "ok":
                message = pipe.recv()
            result.add(message)
    finally:
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid or 0, signal.SIGKILL)
            proc.join()
    result.seconds = time.monotonic() - start
    return result


def report(result: TortureResult, readers: int) -> str:
    """One line: what the readers saw."""
    return (
        f"torture: {result.reads} reads by {readers} processes in {result.seconds:.0f}s: "
        f"{result.hits} hits, {result.misses} misses, {result.fallbacks} asked the store; "
        f"{len(result.bad)} torn or foreign, {result.stale_after_restart} read from a dead "
        "writer's region after its successor published"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the torture and print its counts; exit status 1 on any bad read."""
    parser = argparse.ArgumentParser(prog="python -m bench.shm_torture", description=__doc__)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--reads", type=int, default=10_000_000, help="in total")
    parser.add_argument("--kill-after", type=float, default=5.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        result = torture(
            workdir,
            readers=args.readers,
            reads=args.reads // args.readers,
            kill_after=args.kill_after,
        )
    print(report(result, args.readers))
    for problem in result.bad:
        print("  " + problem)
    return 1 if result.bad or result.stale_after_restart else 0


if __name__ == "__main__":
    raise SystemExit(main())
