"""PUBLISH fan-out: one publisher, 100 subscribers, the store against redis-server, same run.

    python -m bench.pubsub [--subscribers 100] [--messages 5000] [--size 100] [--rounds 5]

Three measurements per server, each the median of ``--rounds`` rounds:

* **throughput**: ``--messages`` PUBLISH commands pipelined in batches of ``--batch``, while a
  separate process drains every subscriber socket; deliveries per second from the first
  PUBLISH until the last subscriber has read the last message.
* **server CPU per delivery** in that throughput run: the time the server's main thread ran
  (``/proc/PID/schedstat``, in nanoseconds) divided by the deliveries. On a busy machine the
  rate follows the other processes' load; this one much less.
* **fan-out latency**: one PUBLISH at a time; the time until its reply and all the subscribers'
  copies have been read (the reading, 100 ``recv`` calls in Python, is included for both).

Subscribers are raw RESP2 connections on the server's Unix socket, so the client library costs
nothing. Both servers run side by side and take turns every round; the ratio column is the
median of the rounds' store / redis-server ratios (above 1: the store delivers more per
second, or takes longer per message, or spends more CPU per delivery).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import selectors
import socket
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from multiprocessing.connection import Connection
from typing import Any

from bench import print_rows
from harness.processes import (
    RedisProcess,
    StoreProcess,
    blinkstore_process,
    redis_server_process,
    resp_command,
)

CHANNEL = b"bench"
#: The store's bound on all client buffers together. By default it is half the memory limit
#: (32 MiB), and when the reader process falls behind by half a throughput round, the 100
#: subscribers' unread messages pass it and the store closes the largest holders, as it should;
#: Redis has no such bound by default (``maxmemory-clients 0``). Each subscriber stays far
#: below its own limit (``--pubsub-buffer-limit``) either way.
CLIENT_BUFFERS = "512MiB"


#: Each starts a server on a Unix socket (``unix_path``) for a ``with`` block.
SERVERS: dict[str, Callable[[], AbstractContextManager[StoreProcess | RedisProcess]]] = {
    "blinkstore": functools.partial(blinkstore_process, "--client-buffer-limit", CLIENT_BUFFERS),
    "redis": redis_server_process,
}
MEASURES = ("deliveries/s", "fan-out p50 us", "CPU ns/delivery")


def message_frame(payload: bytes) -> bytes:
    """The bytes a RESP2 subscriber receives for ``payload`` published on :data:`CHANNEL`."""
    return resp_command("message", CHANNEL, payload)


def cpu_ns(pid: int) -> int:
    """Nanoseconds process ``pid``'s main thread has run so far (exact, unlike the clock
    ticks of ``/proc/PID/stat``; read while the server waits, it is up to date)."""
    with open(f"/proc/{pid}/schedstat", encoding="ascii") as schedstat:
        return int(schedstat.read().split()[0])


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    return sock


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed a subscriber")
        data += chunk
    return data


def _read_lines(sock: socket.socket, count: int) -> bytes:
    """``count`` reply lines (a subscriber the server dropped changes their length)."""
    data = b""
    while data.count(b"\r\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the publisher")
        data += chunk
    return data


def _subscribe(path: str, count: int, stack: ExitStack) -> list[socket.socket]:
    request = resp_command("SUBSCRIBE", CHANNEL)
    confirmation = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%b\r\n:1\r\n" % (len(CHANNEL), CHANNEL)
    sockets = []
    for _ in range(count):
        sock = stack.enter_context(_connect(path))
        sock.sendall(request)
        reply = _read_exactly(sock, len(confirmation))
        if reply != confirmation:
            raise RuntimeError(f"unexpected SUBSCRIBE reply {reply!r}")
        sockets.append(sock)
    return sockets


def _drain(sockets: list[socket.socket], expected: int, ready: Connection) -> None:
    """Reader process: read every socket until each has ``expected`` bytes; send the time."""
    selector = selectors.DefaultSelector()
    left = {}
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, sock)
        left[sock] = expected
    ready.send("ready")
    while left:
        for key, _ in selector.select(30):
            sock = key.data
            left[sock] -= len(sock.recv(1 << 20))
            if left[sock] <= 0:
                selector.unregister(sock)
                del left[sock]
    ready.send(time.monotonic())


def throughput(
    path: str, pid: int, subscribers: int, messages: int, size: int, batch: int
) -> tuple[float, float]:
    """Deliveries per second for ``messages`` pipelined PUBLISH commands, and the CPU
    nanoseconds the server (process ``pid``) spent per delivery meanwhile."""
    payload = b"x" * size
    frame = message_frame(payload)
    request = resp_command("PUBLISH", CHANNEL, payload)
    reply = b":%d\r\n" % subscribers
    with ExitStack() as stack:
        sockets = _subscribe(path, subscribers, stack)
        publisher = stack.enter_context(_connect(path))
        context = multiprocessing.get_context("fork")
        ours, theirs = context.Pipe()
        reader = context.Process(target=_drain, args=(sockets, messages * len(frame), theirs))
        reader.start()
        try:
            if not ours.poll(30):
                raise RuntimeError("the reader process did not start")
            ours.recv()
            cpu = cpu_ns(pid)
            started = time.monotonic()
            sent = 0
            while sent < messages:
                count = min(batch, messages - sent)
                publisher.sendall(request * count)
                answers = _read_lines(publisher, count)
                if answers != reply * count:
                    raise RuntimeError(f"unexpected PUBLISH replies {answers[:100]!r}")
                sent += count
            if not ours.poll(120):
                raise RuntimeError("the subscribers did not receive every message")
            finished: float = ours.recv()
            cpu = cpu_ns(pid) - cpu
        finally:
            reader.join(10)
            if reader.is_alive():
                reader.kill()
    deliveries = subscribers * messages
    return deliveries / (finished - started), cpu / deliveries


def latency(path: str, subscribers: int, messages: int, size: int) -> float:
    """Median microseconds from one PUBLISH until its reply and every copy are read."""
    payload = b"x" * size
    frame_size = len(message_frame(payload))
    request = resp_command("PUBLISH", CHANNEL, payload)
    reply_size = len(b":%d\r\n" % subscribers)
    samples = []
    with ExitStack() as stack:
        sockets = _subscribe(path, subscribers, stack)
        publisher = stack.enter_context(_connect(path))
        for _ in range(messages):
            started = time.perf_counter()
            publisher.sendall(request)
            _read_exactly(publisher, reply_size)
            for sock in sockets:
                _read_exactly(sock, frame_size)
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def run(
    subscribers: int = 100,
    messages: int = 5000,
    size: int = 100,
    rounds: int = 5,
    batch: int = 50,
) -> list[dict[str, Any]]:
    """Both measurements, both servers up side by side and taking turns each round (the
    machine's speed drifts within minutes); one row per measurement: the medians, and the
    median of the per-round ratios."""
    samples: dict[str, dict[str, list[float]]] = {
        measure: {server: [] for server in SERVERS} for measure in MEASURES
    }
    with ExitStack() as stack:
        paths = {}
        for server, start in SERVERS.items():
            process = stack.enter_context(start())
            assert process.unix_path is not None
            paths[server] = (process.unix_path, process.proc.pid)
        for _ in range(rounds):
            for server, (path, pid) in paths.items():
                rate, cpu = throughput(path, pid, subscribers, messages, size, batch)
                samples["deliveries/s"][server].append(rate)
                samples["CPU ns/delivery"][server].append(cpu)
                delay = latency(path, subscribers, max(1, messages // 10), size)
                samples["fan-out p50 us"][server].append(delay)
    rows = []
    for measure, by_server in samples.items():
        pairs = zip(by_server["blinkstore"], by_server["redis"], strict=True)
        row: dict[str, Any] = {"measure": measure}
        row.update(
            {server: round(statistics.median(values)) for server, values in by_server.items()}
        )
        row["ratio"] = round(statistics.median(ours / theirs for ours, theirs in pairs), 2)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=5000, help="per throughput round")
    parser.add_argument("--size", type=int, default=100, help="payload bytes")
    parser.add_argument("--batch", type=int, default=50, help="PUBLISH commands per write")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    for name in ("subscribers", "messages", "batch", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    rows = run(args.subscribers, args.messages, args.size, args.rounds, args.batch)
    print_rows(rows, 15)
    print(
        f"({args.subscribers} subscribers, {args.size}-byte payloads, medians of"
        f" {args.rounds} rounds; latency over {max(1, args.messages // 10)} messages a round)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
