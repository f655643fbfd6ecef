"""Blocking reads for tests that speak to a server over a raw socket."""

from __future__ import annotations

import socket


def recv_line(sock: socket.socket) -> bytes:
    """One reply line, byte by byte so nothing after it is consumed."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed after {line!r}")
        line += chunk
    return line


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes; ConnectionError if the peer closes first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def recv_until(sock: socket.socket, endings: tuple[bytes, ...]) -> bytes:
    """What arrives until the data ends with one of ``endings``, that ending left out;
    ConnectionError if the peer closes first."""
    data = b""
    while not data.endswith(endings):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data[-200:]!r}")
        data += chunk
    ending = next(ending for ending in endings if data.endswith(ending))
    return data[: -len(ending)]
