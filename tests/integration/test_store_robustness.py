"""Misbehaving clients, many clients, pipelining and the memory cap, against a real store."""

from __future__ import annotations

import contextlib
import os
import random
import resource
import selectors
import socket
import threading
import time

import pytest

from blinkstore_gunicorn.protocol.resp import MAX_SKIPPED_BULK
from harness.processes import StoreProcess, resp_command
from tests.conftest import StoreFactory
from tests.support.sockets import read_until_closed, recv_exactly, recv_line

PING = resp_command("PING")


def assert_healthy(store: StoreProcess) -> None:
    """A fresh connection gets an answer (the store neither crashed nor stalled: the socket's
    timeout bounds the wait)."""
    with store.connect(timeout=5) as sock:
        sock.sendall(resp_command("SET", "health", "ok") + resp_command("GET", "health"))
        assert recv_exactly(sock, 5 + 8) == b"+OK\r\n$2\r\nok\r\n"


@pytest.mark.parametrize(
    ("garbage", "reply"),
    [
        (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n:5\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"*1\r\n$4\r\nPINGxx", b"-ERR Protocol error: bulk string not terminated\r\n"),
        # A 1 GB "value" (over Redis's proto-max-bulk-len) ends the stream from its header.
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000000\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
    ],
)
def test_protocol_errors_close_only_that_connection(
    blinkstore: StoreProcess, garbage: bytes, reply: bytes
) -> None:
    with blinkstore.connect() as good, blinkstore.connect() as bad:
        good.sendall(PING)
        assert good.recv(10) == b"+PONG\r\n"
        bad.sendall(garbage)
        assert read_until_closed(bad) == reply
        good.sendall(PING)
        assert good.recv(10) == b"+PONG\r\n"
    assert_healthy(blinkstore)


def test_half_request_then_silence_does_not_block_others(blinkstore_unix: StoreProcess) -> None:
    with blinkstore_unix.connect() as stalled, blinkstore_unix.connect() as text_stalled:
        stalled.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nonly part of it")
        text_stalled.sendall(b"SET k and no newline")
        for _ in range(20):
            assert_healthy(blinkstore_unix)
        # The stalled request completes later and is answered normally.
        stalled.sendall(b"x" * (100 - len(b"only part of it")) + b"\r\n")
        assert stalled.recv(10) == b"+OK\r\n"


def test_requests_over_the_request_limit_are_refused_and_the_connection_goes_on(
    blinkstore_factory: StoreFactory,
) -> None:
    store = blinkstore_factory("--max-request-size", "64KiB")
    with store.connect() as sock:
        sock.sendall(b"SET k " + b"v" * (100 * 1024) + b"\nGET k\n")
        assert recv_line(sock) == (
            b"ERROR request too large: line of at least 102406 bytes exceeds max request size"
            b" 65536 (--max-request-size)\n"
        )
        assert recv_line(sock) == b"NOT_FOUND\n"
    with store.connect() as sock:
        sock.sendall(resp_command("SET", "k", "v" * (100 * 1024)) + PING)
        assert recv_line(sock) == (
            b"-ERR request too large: request of at least 102429 bytes exceeds max request size"
            b" 65536 (--max-request-size)\r\n"
        )
        assert recv_exactly(sock, 7) == b"+PONG\r\n"
    assert_healthy(store)


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_the_error_that_closes_a_connection_reaches_a_client_still_sending(
    blinkstore_factory: StoreFactory, kind: str
) -> None:
    # The store closes after its error reply (a bulk string announced over Redis's
    # proto-max-bulk-len) while the rest of the request is still on its way. Closing a socket
    # with unread input makes the kernel reset the connection, which can destroy the reply
    # before the client reads it; the store lingers instead.
    store = blinkstore_factory(tcp=True)
    for _ in range(5):
        with store.connect(kind) as sock:
            sender = threading.Thread(target=_send_ignoring_errors, args=(sock, 200 * 1024))
            sender.start()
            try:
                assert read_until_closed(sock) == b"-ERR Protocol error: invalid bulk length\r\n"
            finally:
                sender.join(10)
    assert_healthy(store)


def _send_ignoring_errors(sock: socket.socket, size: int) -> None:
    header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (MAX_SKIPPED_BULK + 1)
    with contextlib.suppress(OSError):
        sock.sendall(header + b"v" * size)


def test_random_garbage_never_crashes_the_store(blinkstore_unix: StoreProcess) -> None:
    rng = random.Random(1234)
    for i in range(40):
        with blinkstore_unix.connect() as sock:
            prefix = b"*" if i % 2 else b""
            payload = prefix + bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 3000)))
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(2)
                read_until_closed(sock)
            except OSError:
                pass  # the store may close first; only its health matters
    assert_healthy(blinkstore_unix)
    assert "Traceback" not in blinkstore_unix.log_text()


def test_big_pipeline_answered_in_order(blinkstore: StoreProcess) -> None:
    count = 5000
    requests = b"".join(
        resp_command("SET", f"k{i}", f"v{i}") + resp_command("GET", f"k{i}") for i in range(count)
    )
    expected = b"".join(b"+OK\r\n$%d\r\nv%d\r\n" % (len(b"v%d" % i), i) for i in range(count))
    with blinkstore.connect() as sock:
        sock.sendall(requests)
        assert recv_exactly(sock, len(expected)) == expected


def test_pipelined_large_replies_with_a_slow_reader(blinkstore_unix: StoreProcess) -> None:
    value = os.urandom(1 << 20)
    gets = 64
    with blinkstore_unix.connect() as slow, blinkstore_unix.connect() as other:
        slow.sendall(resp_command("SET", "big", value))
        assert slow.recv(10) == b"+OK\r\n"
        # 64 MiB of replies requested at once; the client reads nothing for a while.
        slow.sendall(resp_command("GET", "big") * gets + PING)
        time.sleep(0.5)
        other.sendall(PING)
        assert other.recv(10) == b"+PONG\r\n"
        reply = b"$%d\r\n%b\r\n" % (len(value), value)
        for _ in range(gets):
            assert recv_exactly(slow, len(reply)) == reply
        assert recv_exactly(slow, 7) == b"+PONG\r\n"


def test_a_thousand_concurrent_connections(blinkstore: StoreProcess) -> None:
    wanted = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, wanted + 200), hard))
    sockets: list[socket.socket] = []
    try:
        for _ in range(wanted):
            sockets.append(blinkstore.connect(timeout=20))
        for i, sock in enumerate(sockets):
            # Half speak RESP, half the text protocol.
            sock.sendall(resp_command("SET", f"c{i}", str(i)) if i % 2 else b"SET t%d v\n" % i)
        selector = selectors.DefaultSelector()
        pending = {}
        for i, sock in enumerate(sockets):
            sock.setblocking(False)
            pending[sock] = b"+OK\r\n" if i % 2 else b"OK\n"
            selector.register(sock, selectors.EVENT_READ)
        received = dict.fromkeys(sockets, b"")
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                received[ready] += ready.recv(100)
                if received[ready] == pending.get(ready):
                    del pending[ready]
                    selector.unregister(ready)
        assert not pending, f"{len(pending)} connections got no complete reply"
    finally:
        for sock in sockets:
            sock.close()
    assert_healthy(blinkstore)


def test_max_connections(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory("--max-connections", "5")
    sockets = [store.connect() for _ in range(5)]
    try:
        for sock in sockets:
            sock.sendall(PING)
            assert sock.recv(10) == b"+PONG\r\n"
        with store.connect() as extra:
            assert read_until_closed(extra) == b"-ERR max number of clients reached\r\n"
        sockets.pop().close()
        deadline = time.monotonic() + 5
        while True:
            with store.connect() as again:
                again.sendall(PING)
                reply = again.recv(100)
            if reply == b"+PONG\r\n" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert reply == b"+PONG\r\n"
        sockets[0].sendall(resp_command("INFO", "stats"))
        assert b"rejected_connections:" in sockets[0].recv(4096)
    finally:
        for sock in sockets:
            sock.close()


def _used_bytes(sock: socket.socket) -> tuple[int, int]:
    """(USAGE, INFO used_memory) read over one RESP connection and one text connection."""
    sock.sendall(resp_command("INFO", "memory"))
    header = b""
    while not header.endswith(b"\r\n"):
        header += sock.recv(1)
    body = recv_exactly(sock, int(header[1:-2]) + 2).decode()
    info = dict(line.split(":", 1) for line in body.split("\r\n") if ":" in line)
    return int(info["used_memory"]), int(info["maxmemory"])


def test_memory_cap_holds_under_a_write_flood(blinkstore_factory: StoreFactory) -> None:
    limit = 2 * 2**20
    store = blinkstore_factory("--memory-limit", "2MB")
    value = b"x" * 1024
    batch = 256
    total = 4 * limit // len(value)  # write four times the limit
    with store.connect() as writer, store.connect() as reader, store.connect() as text_sock:
        for start in range(0, total, batch):
            writer.sendall(
                b"".join(
                    resp_command("SET", f"key:{i}", value) for i in range(start, start + batch)
                )
            )
            assert recv_exactly(writer, 5 * batch) == b"+OK\r\n" * batch
            used, maxmemory = _used_bytes(reader)
            assert maxmemory == limit
            assert 0 < used <= limit
            text_sock.sendall(b"USAGE\n")
            line = text_sock.recv(100)
            assert line.startswith(b"USAGE ") and int(line[6:-1]) <= limit
        # Recently written keys survive, the oldest were evicted.
        reader.sendall(resp_command("EXISTS", f"key:{total - 1}", "key:0"))
        assert reader.recv(10) == b":1\r\n"
        reader.sendall(resp_command("INFO", "stats"))
        stats = reader.recv(4096).decode()
        assert "evicted_keys:0\r\n" not in stats
