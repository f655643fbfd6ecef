"""Memory a client can make the store hold: before AUTH, and all clients together."""

from __future__ import annotations

import socket

from tests.conftest import StoreFactory
from tests.support.processes import StoreProcess, resp_command
from tests.support.sockets import read_until_closed, recv_exactly

MiB = 1024 * 1024
#: The request from issue 13: SET of a 60 MB value, announced before any AUTH.
HUGE_SET_HEADER = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$60000000\r\n"


def memory_kib(store: StoreProcess, field: str) -> int:
    """``VmRSS`` / ``VmHWM`` (peak) of the store process, in KiB."""
    with open(f"/proc/{store.pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{store.pid}/status")


def send_until_refused(sock: socket.socket, data: bytes, total: int) -> int:
    """Send ``data`` repeatedly up to ``total`` bytes; return how much went out before the
    store closed the connection."""
    sent = 0
    try:
        while sent < total:
            sent += sock.send(data[: total - sent])
    except OSError:
        pass
    return sent


def test_large_request_before_auth_closes_without_buffering(
    blinkstore_factory: StoreFactory,
) -> None:
    store = blinkstore_factory("--password", "pw", "--memory-limit", "64MB", tcp=True)
    rss_before = memory_kib(store, "VmRSS")
    chunk = b"x" * MiB
    for _ in range(10):
        with store.connect("tcp") as sock:
            sock.sendall(HUGE_SET_HEADER)
            send_until_refused(sock, chunk, 50 * MiB)
            sock.settimeout(10)
            try:
                read_until_closed(sock)
            except ConnectionResetError:
                pass  # closed with our unread bytes pending: a reset, which is a close too
    # The peak, not just the current RSS: the store never held the payloads.
    assert memory_kib(store, "VmHWM") - rss_before < 16 * 1024
    assert "before AUTH" in store.log_text()
    with store.connect() as sock:
        sock.sendall(resp_command("AUTH", "pw") + resp_command("PING"))
        assert sock.recv(100) == b"+OK\r\n+PONG\r\n"


def test_announced_large_request_before_auth_closes_at_once(
    blinkstore_factory: StoreFactory,
) -> None:
    store = blinkstore_factory("--password", "pw")
    for opening in (HUGE_SET_HEADER, b"SET k " + b"v" * 5000):
        with store.connect() as sock:
            sock.sendall(opening)
            reply = read_until_closed(sock)
            assert reply in (b"", b"-NOAUTH Authentication required.\r\n")


def test_small_requests_before_auth_still_work(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory("--password", "pw")
    with store.connect() as sock:
        sock.sendall(resp_command("GET", "k") + resp_command("HELLO", "3", "AUTH", "default", "pw"))
        assert sock.recv(100).startswith(b"-NOAUTH Authentication required.\r\n%7\r\n")
        # Once authenticated, large requests are accepted again, also pipelined after AUTH.
    with store.connect() as sock:
        sock.sendall(resp_command("AUTH", "pw") + resp_command("SET", "big", b"v" * MiB))
        assert recv_exactly(sock, 10) == b"+OK\r\n+OK\r\n"
    with store.connect() as sock:
        sock.sendall(b"AUTH pw\nSET text " + b"v" * 100_000 + b"\nGET nothing\n")
        assert recv_exactly(sock, 16) == b"OK\nOK\nNOT_FOUND\n"
