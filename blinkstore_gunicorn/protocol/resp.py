"""RESP2, sans-IO: request parsing and reply encoding for the store, the reverse for clients.

Requests are arrays of bulk strings (what redis-cli, redis-py and redis-benchmark send).
Replies are built as ready-to-send ``bytes`` so a connection can join a whole pipeline's
replies into one write. A large bulk reply is the exception worth knowing: it is built once per
value and shared (see :func:`bulk`), so a connection writes it on its own instead of joining it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeAlias

from blinkstore_gunicorn.protocol.errors import ProtocolError, TooLarge

__all__ = [
    "BULK_HEADERS",
    "EMPTY_ARRAY",
    "LARGE_BULK",
    "MAX_SKIPPED_BULK",
    "NEED_MORE",
    "NIL",
    "NIL_ARRAY",
    "OK",
    "PONG",
    "CommandReader",
    "ErrorReply",
    "Reply",
    "ReplyReader",
    "array",
    "bulk",
    "bulk_array",
    "bulk_list",
    "encode_command",
    "error",
    "forget_large_bulk",
    "integer",
    "simple",
]

#: Bytes a single request may occupy unless the caller chooses otherwise (Redis's default
#: ``proto-max-bulk-len``).
DEFAULT_MAX_REQUEST_SIZE: Final = 512 * 1024 * 1024
#: Elements one request may carry (Redis refuses more than 1024 * 1024 as well).
MAX_ARGUMENTS: Final = 1024 * 1024
#: A refused request's bulk string is dropped as it arrives, unless it announces more than
#: this (Redis's ``proto-max-bulk-len``): nobody means to send that, so the stream ends.
MAX_SKIPPED_BULK: Final = 512 * 1024 * 1024
#: Longest ``*<n>`` / ``$<n>`` header line; anything longer is garbage, not a slow client.
MAX_HEADER_LINE: Final = 64
#: Longest inline request (``PING\r\n``: a line that does not start with ``*``), Redis's
#: ``PROTO_INLINE_MAX_SIZE``.
MAX_INLINE: Final = 64 * 1024

OK: Final = b"+OK\r\n"
PONG: Final = b"+PONG\r\n"
NIL: Final = b"$-1\r\n"
NIL_ARRAY: Final = b"*-1\r\n"
EMPTY_ARRAY: Final = b"*0\r\n"

_STAR: Final = 0x2A  # '*'
_DOLLAR: Final = 0x24  # '$'
_CRLF: Final = b"\r\n"
_TOO_BIG_COUNT: Final = "Protocol error: too big mbulk count string"
_UNTERMINATED: Final = "Protocol error: bulk string not terminated"
_INVALID_BULK: Final = "Protocol error: invalid bulk length"
_INVALID_COUNT: Final = "Protocol error: invalid multibulk length"
_TOO_BIG_INLINE: Final = "Protocol error: too big inline request"

#: What :meth:`CommandReader.drain` yields: a command's arguments, a request refused for its
#: size, or the error that ended the stream.
Parsed: TypeAlias = list[bytes] | TooLarge | ProtocolError


def _describe(byte: int) -> str:
    """How Redis names an unexpected byte in its protocol errors."""
    char = chr(byte)
    return char if char.isprintable() else f"\\x{byte:02x}"


def _unexpected(expected: str, byte: int) -> ProtocolError:
    return ProtocolError(f"Protocol error: expected '{expected}', got '{_describe(byte)}'")


class CommandReader:
    """Incremental parser for requests arriving on one connection.

    ``feed`` bytes as they arrive, then ``drain`` every complete command. Large values
    arriving in many chunks are not re-parsed per chunk: the reader remembers how many bytes
    the pending command needs before it looks again.

    A request with an argument over ``max_bulk`` bytes, or over ``max_request_size`` in all,
    is refused from the header that announces it: :meth:`drain` yields a :class:`TooLarge`
    in its place, and the rest of that request is dropped as it arrives, never buffered (a
    bulk string announced over :data:`MAX_SKIPPED_BULK` ends the stream instead).

    A request that does not start with ``*`` is an inline one, as in Redis: a line (at most
    :data:`MAX_INLINE` bytes, and the request size) split on whitespace, without Redis's
    quoting; an empty line is skipped.
    """

    __slots__ = (
        "_chunks",
        "_failed",
        "_max_bulk",
        "_max_request_size",
        "_needed",
        "_size",
        "_skip",
        "_skip_args",
    )

    def __init__(
        self, max_request_size: int = DEFAULT_MAX_REQUEST_SIZE, max_bulk: int | None = None
    ) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._max_request_size = max_request_size
        self._max_bulk = max_request_size if max_bulk is None else max_bulk
        self._needed = 0
        self._failed = False
        #: Bytes of a refused request still to drop as they arrive.
        self._skip = 0
        #: Bulk strings of a refused request still to come after the ones being dropped.
        self._skip_args = 0

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete command."""
        return self._size

    @property
    def skipping(self) -> bool:
        """Whether the reader is dropping the rest of a refused request."""
        return bool(self._skip or self._skip_args)

    @property
    def idle(self) -> bool:
        """Whether the next byte starts a new request (nothing partial, nothing to drop)."""
        return not self._size and not self._skip and not self._skip_args

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer (those of a refused request are dropped)."""
        if self._failed:
            return
        skip = self._skip
        if skip:
            if len(data) <= skip:
                self._skip = skip - len(data)
                return
            data = data[skip:]
            self._skip = 0
        self._chunks.append(data)
        self._size += len(data)

    def drain(self) -> list[Parsed]:
        """Every complete command fed so far; a ``ProtocolError`` can only come last."""
        size = self._size
        if not size or size < self._needed:
            return []
        chunks = self._chunks
        # Joining only once the announced length is there keeps a large value arriving in
        # many chunks linear, and slices of ``bytes`` are what the engine stores.
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        commands, consumed, outcome = self._parse(data)
        if isinstance(outcome, ProtocolError):
            self._failed = True
            self._chunks = []
            self._size = 0
            self._skip = self._skip_args = 0
            commands.append(outcome)
            return commands
        if consumed == size:
            self._chunks = []
            self._size = 0
            self._needed = 0
        else:
            rest = data[consumed:]
            self._chunks = [rest]
            self._size = len(rest)
            self._needed = outcome - consumed if outcome else 0
        return commands

    def _parse(self, data: bytes) -> tuple[list[Parsed], int, int | ProtocolError]:
        """Parse ``data``; return commands, bytes consumed, and either the total length the
        incomplete next command needs (0 when unknown or none) or the error that stopped it.

        A refused request is parsed on (its headers are checked) but its arguments are not
        kept; payload bytes not arrived yet are left to :meth:`feed` to drop (``_skip``), and
        arguments whose headers have not arrived yet are counted in ``_skip_args``."""
        commands: list[Parsed] = []
        size = len(data)
        limit = self._max_request_size
        max_bulk = self._max_bulk
        pos = 0
        find = data.find
        # The rest of a refused request comes first.
        resume, self._skip_args = self._skip_args, 0
        while pos < size:
            if resume:
                count, cursor, refused = resume, pos, True
                resume = 0
            else:
                if data[pos] != _STAR:
                    # An inline request, which Redis takes wherever a request may start.
                    longest = min(MAX_INLINE, limit)
                    eol = find(b"\n", pos, pos + longest + 1)
                    if eol < 0:
                        if size - pos > longest:
                            return commands, pos, ProtocolError(_TOO_BIG_INLINE)
                        return commands, pos, 0
                    words = data[pos:eol].split()  # on whitespace, the \r too; no quoting
                    if words:  # an empty line is no request
                        commands.append(words)
                    pos = eol + 1
                    continue
                eol = find(_CRLF, pos, pos + MAX_HEADER_LINE)
                if eol < 0:
                    if size - pos >= MAX_HEADER_LINE:
                        return commands, pos, ProtocolError(_TOO_BIG_COUNT)
                    return commands, pos, 0
                try:
                    count = int(data[pos + 1 : eol])
                except ValueError:
                    return commands, pos, ProtocolError(_INVALID_COUNT)
                if count > MAX_ARGUMENTS:
                    return commands, pos, ProtocolError(_INVALID_COUNT)
                cursor = eol + 2
                if count <= 0:
                    # Redis skips empty and null arrays silently.
                    pos = cursor
                    continue
                refused = False
            args: list[bytes] = []
            for index in range(count):
                if cursor >= size:
                    return self._pause(commands, pos, cursor, refused, count - index)
                if data[cursor] != _DOLLAR:
                    return commands, pos, _unexpected("$", data[cursor])
                eol = find(_CRLF, cursor, cursor + MAX_HEADER_LINE)
                if eol < 0:
                    if size - cursor >= MAX_HEADER_LINE:
                        return (
                            commands,
                            pos,
                            ProtocolError("Protocol error: too big bulk count string"),
                        )
                    return self._pause(commands, pos, cursor, refused, count - index)
                try:
                    length = int(data[cursor + 1 : eol])
                except ValueError:
                    return commands, pos, ProtocolError(_INVALID_BULK)
                start = eol + 2
                end = start + length
                if length < 0:
                    return commands, pos, ProtocolError(_INVALID_BULK)
                if refused or length > max_bulk or end - pos > limit:
                    if length > MAX_SKIPPED_BULK:
                        return commands, pos, ProtocolError(_INVALID_BULK)
                    if not refused:
                        refused = True
                        commands.append(
                            TooLarge("value", length, max_bulk)
                            if length > max_bulk
                            else TooLarge("request", end - pos, limit)
                        )
                    cursor = end + 2
                    if cursor > size:
                        self._skip = cursor - size
                        self._skip_args = count - index - 1
                        return commands, size, 0
                    continue
                if end + 2 > size:
                    return commands, pos, end + 2
                if data[end : end + 2] != _CRLF:
                    return commands, pos, ProtocolError(_UNTERMINATED)
                args.append(data[start:end])
                cursor = end + 2
            if not refused:
                commands.append(args)
            pos = cursor
        return commands, pos, 0

    def _pause(
        self, commands: list[Parsed], pos: int, cursor: int, refused: bool, left: int
    ) -> tuple[list[Parsed], int, int]:
        """``_parse``'s answer when ``data`` ends before a bulk header: a request being kept
        is parsed again from its start; a refused one is consumed up to ``cursor``, with
        ``left`` arguments still to drop."""
        if not refused:
            return commands, pos, 0
        self._skip_args = left
        return commands, cursor, 0


# --- reply encoders (server side) -------------------------------------------------------


#: ``$<n>\r\n`` for the common small sizes: concatenating a ready header is about twice as fast
#: as formatting one, and every GET reply is a bulk string.
BULK_HEADERS: Final = tuple(b"$%d\r\n" % size for size in range(1024))


#: Bulk replies of at least this many bytes are remembered by :func:`bulk` (the last one).
LARGE_BULK: Final = 64 * 1024
#: The last large value :func:`bulk` encoded, and its reply (one tuple: replaced atomically).
_last_large: tuple[bytes, bytes] = (b"", b"")


def bulk(value: bytes) -> bytes:
    """A bulk string reply.

    A reply of :data:`LARGE_BULK` bytes or more is remembered with its value, and a request for
    the same value object gets the same reply object: a thousand clients reading one hot 1 MiB
    value share one reply instead of each copying the value into its own. Values are immutable
    ``bytes``, so the same object means the same content. :func:`forget_large_bulk` lets go of
    it (the store calls it every second, so a deleted value is not kept alive).
    """
    global _last_large
    size = len(value)
    if size < 1024:
        return BULK_HEADERS[size] + value + _CRLF
    if size < LARGE_BULK:
        return b"$%d\r\n%b\r\n" % (size, value)
    last_value, last_reply = _last_large
    if value is last_value:
        return last_reply
    reply = b"$%d\r\n%b\r\n" % (size, value)
    _last_large = (value, reply)
    return reply


def forget_large_bulk() -> None:
    """Let go of the large reply :func:`bulk` remembers (and of its value)."""
    global _last_large
    _last_large = (b"", b"")


def simple(text: str) -> bytes:
    """A simple string reply (``+OK``); line breaks are flattened to keep the framing."""
    return b"+%b\r\n" % _one_line(text)


def error(message: str) -> bytes:
    """An error reply; ``message`` starts with its code, e.g. ``"ERR syntax error"``."""
    return b"-%b\r\n" % _one_line(message)


def integer(number: int) -> bytes:
    """An integer reply."""
    return b":%d\r\n" % number


def array(items: Iterable[bytes]) -> bytes:
    """An array reply whose ``items`` are already-encoded replies."""
    encoded = list(items)
    return b"*%d\r\n%b" % (len(encoded), b"".join(encoded))


def bulk_array(values: Iterable[bytes | None]) -> bytes:
    """An array of bulk strings, ``None`` becoming a nil element."""
    items = values if values.__class__ is list else list(values)
    if None not in items:
        return bulk_list(items)  # type: ignore[arg-type]
    return array(NIL if value is None else bulk(value) for value in items)


def bulk_list(items: list[bytes]) -> bytes:
    """An array of bulk strings, none of them nil (what LRANGE, HGETALL... answer)."""
    sizes = list(map(len, items))
    if sizes and max(sizes) >= len(BULK_HEADERS):
        return array(map(bulk, items))
    # Small values, the common case: header, value and CRLF joined in C, no call per item.
    parts = [_CRLF] * (3 * len(items))
    headers = BULK_HEADERS
    parts[0::3] = [headers[size] for size in sizes]
    parts[1::3] = items
    return b"*%d\r\n%b" % (len(items), b"".join(parts))


def _one_line(text: str) -> bytes:
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


# --- client side ------------------------------------------------------------------------

Arg: TypeAlias = bytes | bytearray | memoryview | str | int | float


def _arg_bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode("utf-8")
    if isinstance(arg, bool):
        # bool is an int subclass; sending b"True" or b"1" silently would surprise someone.
        raise TypeError("RESP arguments cannot be bool; convert it explicitly")
    if isinstance(arg, int):
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(arg).encode("ascii")
    if isinstance(arg, bytearray | memoryview):
        return bytes(arg)
    raise TypeError(f"cannot send {type(arg).__name__} as a RESP argument")


def encode_command(*args: Arg) -> bytes:
    """One request as RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        value = _arg_bytes(arg)
        parts.append(b"$%d\r\n%b\r\n" % (len(value), value))
    return b"".join(parts)


class ErrorReply:
    """An error reply received from the server (a value, like every other reply)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    @property
    def code(self) -> str:
        """The leading word, e.g. ``"ERR"``, ``"WRONGTYPE"``, ``"NOAUTH"``."""
        return self.message.split(" ", 1)[0]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ErrorReply) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)

    def __repr__(self) -> str:
        return f"ErrorReply({self.message!r})"


class _NeedMore:
    """Type of :data:`NEED_MORE`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


#: Returned by :meth:`ReplyReader.next_reply` until a whole reply has arrived.
NEED_MORE: Final = _NeedMore()

Reply: TypeAlias = "bytes | int | str | ErrorReply | list[Reply] | None"


class _Incomplete(Exception):
    """Internal: the buffer ends inside a reply that needs ``needed`` bytes in all (0: unknown)."""

    def __init__(self, needed: int = 0) -> None:
        self.needed = needed


class ReplyReader:
    """Incremental parser for replies arriving on one client connection.

    A large value arriving in many chunks is parsed once: the chunks are only joined when
    the reply's announced length has arrived.
    """

    __slots__ = ("_chunks", "_failure", "_needed", "_size")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._needed = 0
        self._failure: ProtocolError | None = None

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""
        self._chunks.append(data)
        self._size += len(data)

    def next_reply(self) -> Reply | ProtocolError | _NeedMore:
        """The next complete reply, ``NEED_MORE``, or a ``ProtocolError`` (stream unusable)."""
        if self._failure is not None:
            return self._failure
        if self._size == 0 or self._size < self._needed:
            return NEED_MORE
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            reply, end = self._read(data, 0)
        except _Incomplete as incomplete:
            self._chunks = [data]
            self._needed = incomplete.needed
            return NEED_MORE
        except (ValueError, IndexError) as exc:
            self._failure = ProtocolError(f"Protocol error: malformed reply ({exc})")
            return self._failure
        rest = data[end:]
        self._chunks = [rest] if rest else []
        self._size = len(rest)
        self._needed = 0
        return reply

    def _read(self, data: bytes, pos: int) -> tuple[Reply, int]:
        eol = data.find(_CRLF, pos)
        if eol < 0:
            raise _Incomplete
        kind = data[pos]
        line = data[pos + 1 : eol]
        if kind == 0x24:  # '$'
            length = int(line)
            if length < 0:
                return None, eol + 2
            start = eol + 2
            end = start + length
            if end + 2 > len(data):
                raise _Incomplete(end + 2)
            if data[end : end + 2] != _CRLF:
                raise ValueError("bulk string not terminated")
            return data[start:end], end + 2
        if kind == 0x2B:  # '+'
            return line.decode("utf-8", "replace"), eol + 2
        if kind == 0x3A:  # ':'
            return int(line), eol + 2
        if kind == 0x2D:  # '-'
            return ErrorReply(line.decode("utf-8", "replace")), eol + 2
        if kind == _STAR:
            count = int(line)
            if count < 0:
                return None, eol + 2
            items: list[Reply] = []
            pos = eol + 2
            for _ in range(count):
                item, pos = self._read(data, pos)
                items.append(item)
            return items, pos
        raise ValueError(f"unexpected reply type {_describe(kind)!r}")
