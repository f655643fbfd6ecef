"""The Blink Store text protocol, sans-IO: one request line in, one reply line out.

Compatibility facts (see docs/protocol.md): ``\\n`` ends a line, surrounding whitespace
(a trailing ``\\r`` included) is trimmed, verbs are case-insensitive, ``GET`` replies carry
the value in base64, and ``SET``'s value is the rest of the line after the key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final, TypeAlias

from blinkstore_gunicorn.protocol.errors import TooLarge

__all__ = [
    "NOT_FOUND_LINE",
    "OK_LINE",
    "LineReader",
    "Reject",
    "Request",
    "error_line",
    "parse_line",
    "usage_line",
    "value_line",
]

#: Longest line a client may send unless the caller chooses otherwise.
DEFAULT_MAX_LINE: Final = 64 * 1024 * 1024

OK_LINE: Final = b"OK\n"
NOT_FOUND_LINE: Final = b"NOT_FOUND\n"

# Verbs and their aliases, mapped to the canonical verb the dispatcher sees.
_VERBS: Final = {
    b"GET": "GET",
    b"SET": "SET",
    b"DELETE": "DELETE",
    b"DEL": "DELETE",
    b"USAGE": "USAGE",
    b"STATS": "USAGE",
    b"QUIT": "QUIT",
    b"AUTH": "AUTH",
}
_NEEDS_KEY: Final = frozenset({"GET", "SET", "DELETE"})


@dataclass(frozen=True, slots=True)
class Request:
    """One well-formed request line.

    ``verb`` is canonical (``DEL`` arrives as ``DELETE``, ``STATS`` as ``USAGE``); ``key``
    and ``value`` are empty where the verb takes none. ``AUTH <password>`` carries the
    password in ``value``.
    """

    verb: str
    key: bytes = b""
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class Reject:
    """A line that gets an ``ERROR <message>`` reply; the connection stays usable."""

    message: str


def parse_line(line: bytes) -> Request | Reject:
    """Interpret one line (without its ``\\n``)."""
    words = line.strip().split(None, 1)
    if not words:
        return Reject("unknown command")
    typed = words[0].upper()
    verb = _VERBS.get(typed)
    if verb is None:
        return Reject("unknown command")
    rest = words[1] if len(words) == 2 else b""
    if verb in _NEEDS_KEY and not rest:
        return Reject(f"{typed.decode('ascii')} requires key")
    if verb == "SET":
        key_and_value = rest.split(None, 1)
        value = key_and_value[1] if len(key_and_value) == 2 else b""
        return Request(verb, key_and_value[0], value)
    if verb == "AUTH":
        return Request(verb, value=rest)
    if verb in _NEEDS_KEY:
        return Request(verb, rest)
    return Request(verb)


#: What :meth:`LineReader.drain` yields.
Parsed: TypeAlias = Request | Reject | TooLarge


class LineReader:
    """Incremental splitter of a connection's bytes into parsed request lines.

    A line longer than ``max_line`` is not kept: once that many bytes have come without a
    newline, the rest of the line is dropped as it arrives, and :meth:`drain` yields a
    :class:`TooLarge` in its place when its newline comes.
    """

    __slots__ = ("_buffer", "_max_line", "_refused", "_scanned", "_skipped")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._buffer = bytearray()
        self._max_line = max_line
        # Bytes already known to hold no newline, so a long line is not rescanned per chunk.
        self._scanned = 0
        #: Bytes of the over-long line being dropped so far (0: none is).
        self._skipped = 0
        #: The over-long line that ended in the last ``feed``, to yield first.
        self._refused: TooLarge | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete line."""
        return len(self._buffer)

    @property
    def skipping(self) -> bool:
        """Whether the reader is dropping the rest of an over-long line."""
        return bool(self._skipped)

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer (those of an over-long line are dropped)."""
        if self._skipped:
            newline = data.find(b"\n")
            if newline < 0:
                self._skipped += len(data)
                return
            self._refused = TooLarge("line", self._skipped + newline, self._max_line)
            self._skipped = 0
            data = data[newline + 1 :]
        self._buffer += data

    def drain(self) -> list[Parsed]:
        """Every complete line fed so far, parsed, in order."""
        buffer = self._buffer
        out: list[Parsed] = []
        if self._refused is not None:
            # Lines after it were fed after it: the buffer was empty while it was dropped.
            out.append(self._refused)
            self._refused = None
        limit = self._max_line
        start = 0
        newline = buffer.find(b"\n", self._scanned)
        while newline >= 0:
            if newline - start > limit:
                out.append(TooLarge("line", newline - start, limit))
            else:
                out.append(parse_line(bytes(buffer[start:newline])))
            start = newline + 1
            newline = buffer.find(b"\n", start)
        del buffer[:start]
        if len(buffer) > limit:
            self._skipped = len(buffer)
            buffer.clear()
        self._scanned = len(buffer)
        return out


def value_line(value: bytes) -> bytes:
    """``VALUE <base64>`` for a value that was found."""
    return b"VALUE " + base64.b64encode(value) + b"\n"


def usage_line(used_bytes: int) -> bytes:
    """``USAGE <n>``: the bytes counted against the memory limit."""
    return b"USAGE %d\n" % used_bytes


def error_line(message: str) -> bytes:
    """``ERROR <message>`` on one line."""
    flat = message.replace("\r", " ").replace("\n", " ")
    return b"ERROR " + flat.encode("utf-8", "replace") + b"\n"
