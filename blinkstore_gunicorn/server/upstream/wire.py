"""Replies from the upstream server, RESP2 or RESP3 (sans-IO).

The store relays most replies to its own clients byte for byte, so :class:`FrameReader` yields
each complete top-level reply as its raw bytes together with its parsed value: the value is
what the near cache looks at (a fetched bulk, a TTL, an invalidation push), the bytes are
what a forwarded command's caller receives. Unlike ``protocol.resp.ReplyReader`` it knows the
RESP3 types (``_`` null, ``%`` map, ``~`` set, ``>`` push...), since the tracking connection
speaks RESP3.
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["Err", "FrameReader", "Push", "Value"]

_CRLF = b"\r\n"


class Err(str):
    """An error reply (``-ERR ...`` or a RESP3 blob error)."""


class Push(list):  # type: ignore[type-arg]
    """A RESP3 out-of-band push (``>``): an invalidation or a pub/sub message."""


Value: TypeAlias = "bytes | str | int | float | bool | list[Value] | None"


class _Incomplete(Exception):
    pass


def _parse(data: bytes, pos: int) -> tuple[Value, int]:
    eol = data.find(_CRLF, pos)
    if eol < 0:
        raise _Incomplete
    kind = data[pos : pos + 1]
    line = data[pos + 1 : eol]
    nxt = eol + 2
    if kind in (b"$", b"=", b"!"):
        length = int(line)
        if length < 0:
            return None, nxt
        end = nxt + length
        if end + 2 > len(data):
            raise _Incomplete
        body = data[nxt:end]
        if kind == b"!":
            return Err(body.decode("utf-8", "replace")), end + 2
        return (body[4:] if kind == b"=" else body), end + 2
    if kind == b"+":
        return line.decode("utf-8", "replace"), nxt
    if kind == b"-":
        return Err(line.decode("utf-8", "replace")), nxt
    if kind in (b":", b"("):
        return int(line), nxt
    if kind == b",":
        return float(line), nxt
    if kind == b"#":
        return line == b"t", nxt
    if kind == b"_":
        return None, nxt
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(line)
        if count < 0:
            return None, nxt
        if kind in (b"%", b"|"):
            count *= 2
        items: list[Value] = []
        for _ in range(count):
            item, nxt = _parse(data, nxt)
            items.append(item)
        if kind == b"|":
            # Attributes annotate the reply that follows: skip them.
            return _parse(data, nxt)
        return (Push(items) if kind == b">" else items), nxt
    raise ValueError(f"unexpected reply type {kind!r}")


class FrameReader:
    """Feed bytes, take complete replies as ``(raw bytes, value)``; ``ValueError`` when the
    stream is not RESP (the connection is then unusable)."""

    __slots__ = ("_buffer", "_pos")

    def __init__(self) -> None:
        self._buffer = b""
        self._pos = 0

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""
        if self._pos:
            self._buffer = self._buffer[self._pos :]
            self._pos = 0
        self._buffer = self._buffer + data if self._buffer else data

    def frames(self) -> list[tuple[bytes, Value]]:
        """Every complete reply received so far, in order."""
        out: list[tuple[bytes, Value]] = []
        data, pos = self._buffer, self._pos
        while pos < len(data):
            try:
                value, end = _parse(data, pos)
            except _Incomplete:
                break
            out.append((data[pos:end], value))
            pos = end
        self._pos = pos
        return out
