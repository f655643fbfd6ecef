"""The Blink Store text protocol, sans-IO: one request line in, one reply line out.

Compatibility facts (see docs/protocol.md): ``\\n`` ends a line, surrounding whitespace
(a trailing ``\\r`` included) is trimmed, verbs are case-insensitive, ``GET`` replies carry
the value in base64, and ``SET``'s value is the rest of the line after the key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final, TypeAlias

from blinkstore_gunicorn.protocol.errors import ProtocolError

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
Parsed: TypeAlias = Request | Reject | ProtocolError


class LineReader:
    """Incremental splitter of a connection's bytes into parsed request lines."""

    __slots__ = ("_buffer", "_failed", "_max_line", "_scanned")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._buffer = bytearray()
        self._max_line = max_line
        # Bytes already known to hold no newline, so a long line is not rescanned per chunk.
        self._scanned = 0
        self._failed = False

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        if not self._failed:
            self._buffer += data

    def drain(self) -> list[Parsed]:
        """Every complete line fed so far, parsed; a ``ProtocolError`` can only come last."""
        buffer = self._buffer
        out: list[Parsed] = []
        if self._failed:
            return out
        start = 0
        newline = buffer.find(b"\n", self._scanned)
        while newline >= 0:
            if newline - start > self._max_line:
                return self._fail(out)
            out.append(parse_line(bytes(buffer[start:newline])))
            start = newline + 1
            newline = buffer.find(b"\n", start)
        del buffer[:start]
        if len(buffer) > self._max_line:
            return self._fail(out)
        self._scanned = len(buffer)
        return out

    def _fail(self, out: list[Parsed]) -> list[Parsed]:
        self._failed = True
        self._buffer.clear()
        out.append(ProtocolError(f"line too long (max {self._max_line} bytes)"))
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
