"""Differential checks: the same RESP commands sent to redis-server and ``blinkstore serve``,
replies compared byte for byte.

A :class:`RawConnection` keeps each reply as the exact bytes the server wrote (no client
library in between: a library would hide a wrong type, a RESP2/RESP3 difference or an error
text). :func:`compare` runs a script of commands on both servers and lists every difference.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence

from harness.processes import RedisProcess, StoreProcess, resp_command

__all__ = ["RawConnection", "compare", "reply_items"]

_LINE_TYPES = b"+-:,#_("
_BULK_TYPES = b"$=!"
_AGGREGATE_TYPES = b"*~>%|"


def _reply_end(data: bytes, at: int) -> int | None:
    """Where the reply starting at ``data[at]`` ends, None while it is incomplete."""
    line_end = data.find(b"\r\n", at)
    if line_end < 0:
        return None
    kind = data[at : at + 1]
    if kind in (b"", b"\r") or kind not in _LINE_TYPES + _BULK_TYPES + _AGGREGATE_TYPES:
        raise ValueError(f"not a RESP reply: {data[at : at + 40]!r}")
    after = line_end + 2
    if kind in _LINE_TYPES:
        return after
    count = int(data[at + 1 : line_end])
    if kind in _BULK_TYPES:
        if count < 0:
            return after
        return after + count + 2 if len(data) >= after + count + 2 else None
    items = max(count, 0) * (2 if kind in b"%|" else 1) + (1 if kind == b"|" else 0)
    for _ in range(items):
        end = _reply_end(data, after)
        if end is None:
            return None
        after = end
    return after


def reply_items(reply: bytes) -> list[bytes]:
    """The raw items of an aggregate reply (a flat array's elements), in order."""
    header_end = reply.index(b"\r\n") + 2
    items, at = [], header_end
    while at < len(reply):
        end = _reply_end(reply, at)
        assert end is not None
        items.append(reply[at:end])
        at = end
    return items


class RawConnection:
    """One connection to a RESP server; each reply is returned as the bytes received."""

    def __init__(self, server: StoreProcess | RedisProcess, protocol: int = 2) -> None:
        assert server.unix_path is not None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(server.unix_path)
        self.buffer = b""
        if protocol == 3:
            self.send("HELLO", "3")
            self.reply()

    def send(self, *args: str | bytes) -> None:
        """Send one command without waiting for its reply."""
        self.sock.sendall(resp_command(*args))

    def reply(self) -> bytes:
        """The next reply, whole."""
        while True:
            end = _reply_end(self.buffer, 0) if self.buffer else None
            if end is not None:
                reply, self.buffer = self.buffer[:end], self.buffer[end:]
                return reply
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.buffer += data

    def __call__(self, *args: str | bytes) -> bytes:
        self.send(*args)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def compare(
    servers: Sequence[StoreProcess | RedisProcess],
    script: Iterable[Sequence[str | bytes]],
    protocol: int,
    unordered: Iterable[str] = (),
) -> list[str]:
    """Run ``script`` on a fresh database of each server (redis-server first); the commands
    whose replies differ, with both replies. Replies of the commands named in ``unordered``
    (upper case) are compared as multisets of their items."""
    loose = set(unordered)
    connections = [RawConnection(server, protocol) for server in servers]
    try:
        for connection in connections:
            assert connection("FLUSHALL") == b"+OK\r\n"
        differences = []
        for args in script:
            replies = [connection(*args) for connection in connections]
            name = args[0].upper() if isinstance(args[0], str) else args[0].decode().upper()
            if name in loose:
                replies = [b"%d" % len(r) + b"".join(sorted(reply_items(r))) for r in replies]
            if len(set(replies)) > 1:
                shown = " ".join(a if isinstance(a, str) else repr(a) for a in args)
                differences.append(f"RESP{protocol} {shown}: " + " vs ".join(map(repr, replies)))
        return differences
    finally:
        for connection in connections:
            connection.close()
