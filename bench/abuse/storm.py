"""A connection storm: thousands of clients connect at once, then one too many.

``connections`` sockets connect to the store as fast as one process can open them, each
sending ``PING`` at once; the run measures how long until every one is answered. The store's
max-connections is set to exactly what the storm, a well-behaved client and the control
connection need, so one more connection must get ``-ERR max number of clients reached`` and be
closed. Meanwhile the well-behaved client (another process) keeps timing GETs.
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
from dataclasses import dataclass

from bench.abuse.common import Client, percentile, raise_open_files, store, timed_gets
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.connection import MAX_CLIENTS_REPLY

__all__ = ["StormReport", "run_storm"]

PING = resp.encode_command("PING")
#: Seconds the storm may take before it counts as the store not coping.
STORM_DEADLINE = 60.0


@dataclass
class StormReport:
    """Figures of one storm."""

    connections: int
    open_files: int
    connected: int
    answered: int
    connect_seconds: float
    answer_seconds: float
    refusal_ok: bool
    store_answers_after: bool
    good_requests: int
    good_failures: int
    good_p50_ms: float
    good_p99_ms: float

    @property
    def ok(self) -> bool:
        """Every connection answered, the extra one refused, the store still answers."""
        return (
            self.answered == self.connections
            and self.refusal_ok
            and self.store_answers_after
            and self.good_failures == 0
        )

    def lines(self) -> list[str]:
        """The report as text."""
        return [
            f"storm: {self.connections} connections (open-files limit {self.open_files}):"
            f" connected in {self.connect_seconds:.2f}s, all {self.answered} PINGs answered"
            f" after {self.answer_seconds:.2f}s",
            f"  one more connection refused with the max-clients error: {self.refusal_ok};"
            f" store answers afterwards: {self.store_answers_after}",
            f"  well-behaved client meanwhile: {self.good_requests} GETs, {self.good_failures}"
            f" failures, p50 {self.good_p50_ms:.2f} ms, p99 {self.good_p99_ms:.2f} ms",
            f"  verdict: {'PASS' if self.ok else 'FAIL'}",
        ]


def _storm(path: str, count: int) -> tuple[list[socket.socket], float, int, float]:
    """Connect ``count`` sockets sending PING; return them, the connect time, how many were
    answered, and the time until then."""
    started = time.monotonic()
    sockets: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(STORM_DEADLINE)
        sock.connect(path)
        sock.sendall(PING)
        sock.setblocking(False)
        sockets.append(sock)
        selector.register(sock, selectors.EVENT_READ, sock)
    connected = time.monotonic() - started
    answered = 0
    deadline = started + STORM_DEADLINE
    while answered < count and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            ready: socket.socket = key.data
            if ready.recv(64) == b"+PONG\r\n":
                answered += 1
            selector.unregister(ready)
    selector.close()
    return sockets, connected, answered, time.monotonic() - started


def _refused(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as extra:
        extra.settimeout(10)
        extra.connect(path)
        received = b""
        while chunk := extra.recv(256):
            received += chunk
        return received == MAX_CLIENTS_REPLY


def run_storm(connections: int = 5000, window: float = 10.0) -> StormReport:
    """Run the storm; the well-behaved client times GETs for ``window`` seconds around it."""
    open_files = raise_open_files(connections + 1024)
    # The storm, the well-behaved client and the control connection; not one more.
    flags = ["--max-connections", str(connections + 2)]
    with store(*flags) as process:
        path = process.unix_path
        assert path is not None
        control = Client(path)
        control.call("SET", "small", "ok")
        receiver, sender = multiprocessing.Pipe(duplex=False)
        good = multiprocessing.get_context("fork").Process(
            target=timed_gets, args=(path, None, "small", window, sender)
        )
        good.start()
        try:
            # The client is connected (it counts against max-connections) once it answers.
            deadline = time.monotonic() + 30
            while int(control.info()["connected_clients"]) < 2:
                assert time.monotonic() < deadline, "the well-behaved client did not connect"
            sockets, connect_seconds, answered, answer_seconds = _storm(path, connections)
            try:
                refusal_ok = _refused(path)
                after = control.call("GET", "small") == b"ok"
            finally:
                for sock in sockets:
                    sock.close()
            latencies, failures = receiver.recv() if receiver.poll(window + 30) else ([], -1)
        finally:
            good.join(30)
            if good.is_alive():
                good.kill()
        control.close()
    return StormReport(
        connections=connections,
        open_files=open_files,
        connected=len(sockets),
        answered=answered,
        connect_seconds=connect_seconds,
        answer_seconds=answer_seconds,
        refusal_ok=refusal_ok,
        store_answers_after=after,
        good_requests=len(latencies),
        good_failures=failures,
        good_p50_ms=percentile(latencies, 0.5),
        good_p99_ms=percentile(latencies, 0.99),
    )
