"""Memory under abuse: can clients make the store hold more than its limits allow?

A password-protected store is filled to its memory limit, then ``connections`` attackers run
for ``seconds``, a quarter each of (or shared evenly by the ``attacks`` chosen):

* ``partial``: authenticates, announces a 60 MB SET and trickles its payload, forever;
* ``slow``: authenticates, pipelines GETs of a 1 MiB value and never reads a reply;
* ``preauth``: sends a huge request without authenticating, again and again;
* ``garbage``: random bytes (RESP-looking or not), then reads until the store closes.

Whenever the store drops an attacker, it reconnects. A well-behaved client in another process
GETs a small key once per millisecond. The store's RSS is sampled throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.abuse.common import (
    PASSWORD,
    Client,
    MiB,
    memory_kib,
    percentile,
    raise_open_files,
    store,
    timed_gets,
)
from blinkstore_gunicorn.protocol import resp

__all__ = ["MemoryReport", "run_memory"]

KINDS = ("partial", "slow", "preauth", "garbage")
AUTH = resp.encode_command("AUTH", PASSWORD)
HUGE_SET = b"*3\r\n$3\r\nSET\r\n$7\r\npartial\r\n$60000000\r\n"
ONE_GET = resp.encode_command("GET", "big")
SLOW_GETS = ONE_GET * 64
#: Seconds an attacker waits for the store to close a connection it should close.
CLOSE_DEADLINE = 10.0
#: Added to the attacking process's niceness for the run.
ATTACKER_NICENESS = 10


@dataclass
class MemoryReport:
    """Figures of one memory run (sizes in MiB, latencies in ms)."""

    connections: int
    seconds: float
    memory_limit_mib: int
    bound_mib: float
    baseline_rss_mib: float
    peak_rss_mib: float
    attacks: dict[str, int]
    hangs: int
    evicted_clients: int
    good_requests: int
    good_failures: int
    good_p50_ms: float
    good_p99_ms: float
    store_alive: bool

    @property
    def ok(self) -> bool:
        """Within the memory bound, nothing hung, the good client never failed."""
        return (
            self.store_alive
            and self.peak_rss_mib <= self.bound_mib
            and self.hangs == 0
            and self.good_failures == 0
        )

    def lines(self) -> list[str]:
        """The report as text."""
        attacks = ", ".join(f"{kind} {count}" for kind, count in self.attacks.items())
        return [
            f"memory: {self.connections} attacking connections for {self.seconds:.0f}s,"
            f" memory limit {self.memory_limit_mib} MiB (filled)",
            f"  store RSS: {self.baseline_rss_mib:.0f} MiB filled, peak {self.peak_rss_mib:.0f}"
            f" MiB (bound 1.5 x limit + 64 MiB = {self.bound_mib:.0f} MiB)",
            f"  attacks started: {attacks}; hangs {self.hangs};"
            f" connections shed by the client budget {self.evicted_clients}",
            f"  well-behaved client: {self.good_requests} GETs, {self.good_failures} failures,"
            f" p50 {self.good_p50_ms:.2f} ms, p99 {self.good_p99_ms:.2f} ms",
            f"  verdict: {'PASS' if self.ok else 'FAIL'}",
        ]


class Attack:
    """The attackers' shared state: where, until when, and what happened."""

    def __init__(self, path: str, deadline: float, seed: int) -> None:
        self.path = path
        self.deadline = deadline
        self.random = random.Random(seed)
        self.started = dict.fromkeys(KINDS, 0)
        self.hangs = 0

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def forever(self, kind: str) -> None:
        """Run one attacker of ``kind`` until the deadline, reconnecting when dropped."""
        attack = getattr(self, kind)
        while self.running():
            self.started[kind] += 1
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError:
                await asyncio.sleep(0.05)  # refused or out of files: retry a little later
                continue
            try:
                await attack(reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                pass  # the store dropped us: what it should do to attackers
            finally:
                writer.transport.abort()

    async def partial(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(AUTH + HUGE_SET)
        chunk = b"p" * (64 * 1024)
        while self.running():
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.1)

    async def slow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(AUTH + SLOW_GETS)
        # Never read a reply; ask for more now and then, which also notices being dropped.
        while self.running():
            await writer.drain()
            if writer.transport.is_closing():
                return
            await asyncio.sleep(0.1)
            writer.write(ONE_GET)

    async def preauth(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HUGE_SET + b"x" * MiB)
        await self._until_closed(reader, writer)

    async def garbage(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rng = self.random
        prefix = AUTH if rng.random() < 0.5 else b""
        body = rng.randbytes(rng.randrange(1, 64 * 1024))
        if rng.random() < 0.5:
            body = b"*" + body
        writer.write(prefix + body)
        await self._until_closed(reader, writer)

    async def _until_closed(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError):
            await writer.drain()
            writer.write_eof()
        try:
            await asyncio.wait_for(_drain_until_eof(reader), CLOSE_DEADLINE)
        except asyncio.TimeoutError:
            self.hangs += 1


async def _drain_until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def _attack(
    path: str, connections: int, seconds: float, seed: int, kinds: Sequence[str]
) -> Attack:
    attack = Attack(path, time.monotonic() + seconds, seed)
    tasks = [asyncio.create_task(attack.forever(kinds[i % len(kinds)])) for i in range(connections)]
    await asyncio.gather(*tasks)
    return attack


def _fill(client: Client, memory_limit: int) -> None:
    """Fill the store to its memory limit with 4 KiB values, then set the hot keys."""
    value = b"d" * 4096
    batch = 256
    for start in range(0, memory_limit // len(value) + batch, batch):
        client.sock.sendall(
            b"".join(resp.encode_command("SET", f"fill:{start + i}", value) for i in range(batch))
        )
        for _ in range(batch):
            client.read()
    client.call("SET", "big", b"b" * MiB)
    client.call("SET", "small", b"s" * 100)


def _renice(niceness: int) -> None:
    """Back to ``niceness`` where allowed (lowering it needs privileges)."""
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


def run_memory(
    connections: int = 1000,
    seconds: float = 30.0,
    memory_limit_mib: int = 64,
    seed: int = 13,
    attacks: Sequence[str] = KINDS,
) -> MemoryReport:
    """Run the memory scenario (with the ``attacks`` among :data:`KINDS`) and return its
    figures."""
    raise_open_files(connections + 1024)
    flags = ["--memory-limit", f"{memory_limit_mib}MB", "--max-connections", str(connections + 100)]
    with store(*flags, password=PASSWORD) as process:
        path = process.unix_path
        assert path is not None
        client = Client(path, PASSWORD)
        _fill(client, memory_limit_mib * MiB)
        baseline = memory_kib(process.pid)
        receiver, sender = multiprocessing.Pipe(duplex=False)
        good = multiprocessing.get_context("fork").Process(
            target=timed_gets, args=(path, PASSWORD, "small", seconds, sender)
        )
        good.start()
        # The attackers yield the CPU to the store and the client it serves: on a small
        # machine the client's own wake-ups would otherwise dominate its latency.
        niceness = os.nice(0)
        os.nice(ATTACKER_NICENESS)
        try:
            attack = asyncio.run(_attack(path, connections, seconds, seed, attacks))
            latencies, failures = receiver.recv() if receiver.poll(seconds + 30) else ([], -1)
        finally:
            _renice(niceness)
            good.join(30)
            if good.is_alive():
                good.kill()
        alive = process.proc.poll() is None
        evicted = int(client.info().get("evicted_clients", "0")) if alive else 0
        peak = memory_kib(process.pid, "VmHWM")
        client.close()
    return MemoryReport(
        connections=connections,
        seconds=seconds,
        memory_limit_mib=memory_limit_mib,
        bound_mib=1.5 * memory_limit_mib + 64,
        baseline_rss_mib=baseline / 1024,
        peak_rss_mib=peak / 1024,
        attacks=attack.started,
        hangs=attack.hangs,
        evicted_clients=evicted,
        good_requests=len(latencies),
        good_failures=failures,
        good_p50_ms=percentile(latencies, 0.5),
        good_p99_ms=percentile(latencies, 0.99),
        store_alive=alive,
    )
