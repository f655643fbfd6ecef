"""Redis "inline" commands (``PING\\r\\n``): what redis-benchmark's PING_INLINE test sends.

A connection whose first byte is not ``*`` normally speaks the Blink Store text protocol; if
its first line starts with a RESP command that the text protocol does not have (``PING``,
``INCR``...), it is a Redis client typing inline commands and is answered in RESP. Lines are
split on whitespace (Redis's quoting rules are not supported) and may be at most 64 KiB, as in
Redis.
"""

from __future__ import annotations

from blinkstore_gunicorn.protocol.errors import ProtocolError

__all__ = ["MAX_INLINE", "TEXT_VERBS", "InlineReader", "is_inline_resp"]

#: Redis's own limit for one inline request.
MAX_INLINE = 64 * 1024
#: First words that keep a connection on the Blink Store text protocol.
TEXT_VERBS = frozenset({b"GET", b"SET", b"DEL", b"DELETE", b"USAGE", b"STATS", b"QUIT", b"AUTH"})


def is_inline_resp(first_line: bytes, known: frozenset[bytes]) -> bool:
    """Whether ``first_line`` is an inline RESP command (upper-case name in ``known``)."""
    words = first_line.split(None, 1)
    if not words:
        return False
    verb = words[0].upper()
    return verb not in TEXT_VERBS and verb in known


class InlineReader:
    """Splits lines into argument lists; same ``feed``/``drain`` shape as the RESP reader."""

    __slots__ = ("_buffer", "_failed")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete line."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        if not self._failed:
            self._buffer += data

    def drain(self) -> list[list[bytes] | ProtocolError]:
        """Every complete non-empty line as arguments; a ``ProtocolError`` can only come last."""
        out: list[list[bytes] | ProtocolError] = []
        if self._failed:
            return out
        buffer = self._buffer
        start = 0
        newline = buffer.find(b"\n")
        while newline >= 0:
            if newline - start > MAX_INLINE:
                break
            args = bytes(buffer[start:newline]).split()
            if args:
                out.append(args)
            start = newline + 1
            newline = buffer.find(b"\n", start)
        del buffer[:start]
        if len(buffer) > MAX_INLINE or (newline >= 0):
            self._failed = True
            buffer.clear()
            out.append(ProtocolError("Protocol error: too big inline request"))
        return out
