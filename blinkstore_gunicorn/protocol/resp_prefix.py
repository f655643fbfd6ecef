"""What the fast request readers share: C takes what it proves canonical, Python the rest.

The store's fast request readers (:mod:`.resp_split`'s, in C; :mod:`.resp_hiredis`'s) share
this shape. Each read that arrives while the pure-Python :class:`~.resp.CommandReader` holds
nothing (it is ``idle``) goes to the subclass's :meth:`PrefixCommandReader._split`, which takes
only requests it has proved the Python reader would read the same way (same arguments, no
refusal, no error) from the read's first byte on; the bytes after them (a partial request,
another RESP type, a size at a limit, garbage) are fed to the Python reader, which answers
them exactly as it would have answered the whole read, and keeps what it cannot complete. The
next read goes to ``_split`` again once the Python reader is idle. So for any input, split
into any reads, the results and the state read by the connection (``idle``, ``skipping``,
``buffered``) are the Python reader's: one authority on the protocol.
"""

from __future__ import annotations

from blinkstore_gunicorn.protocol.errors import ProtocolError
from blinkstore_gunicorn.protocol.resp import DEFAULT_MAX_REQUEST_SIZE, CommandReader, Parsed

__all__ = ["PrefixCommandReader"]


class PrefixCommandReader:
    """:class:`~.resp.CommandReader`'s interface and results; subclasses parse the common case.

    A subclass implements :meth:`_split`; see the module's docstring for when it is called.
    """

    __slots__ = ("_chunks", "_failed", "_max_bulk", "_max_request_size", "_python", "_size")

    def __init__(
        self, max_request_size: int = DEFAULT_MAX_REQUEST_SIZE, max_bulk: int | None = None
    ) -> None:
        self._max_request_size = max_request_size
        self._max_bulk = max_request_size if max_bulk is None else max_bulk
        self._python = CommandReader(max_request_size, self._max_bulk)
        #: Reads fed while the Python reader was idle, not drained yet.
        self._chunks: list[bytes] = []
        self._size = 0
        self._failed = False

    def _split(self, data: bytes) -> tuple[list[Parsed], int]:
        """The requests at the start of ``data`` the Python reader would read unchanged, and
        how many bytes they take; the rest of ``data`` goes to the Python reader."""
        raise NotImplementedError

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete command."""
        return self._size + self._python.buffered

    @property
    def skipping(self) -> bool:
        """Whether the reader is dropping the rest of a refused request."""
        return self._python.skipping

    @property
    def idle(self) -> bool:
        """Whether the next byte starts a new request (nothing partial, nothing to drop)."""
        return not self._size and self._python.idle

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        if self._failed:
            return
        if self._size or self._python.idle:
            self._chunks.append(data)
            self._size += len(data)
        else:
            self._python.feed(data)  # the rest of what the Python reader holds

    def drain(self) -> list[Parsed]:
        """Every complete command fed so far; a ``ProtocolError`` can only come last."""
        if not self._size:
            return self._check(self._python.drain()) if not self._failed else []
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        commands, consumed = self._split(data)
        if consumed < len(data):
            # The Python reader's from a request's first byte (``data[0:]`` is ``data`` itself).
            python = self._python
            python.feed(data[consumed:])
            commands += self._check(python.drain())
        return commands

    def _check(self, parsed: list[Parsed]) -> list[Parsed]:
        """``parsed``, noting a protocol error (the stream ends there: nothing more is read)."""
        if parsed and parsed[-1].__class__ is ProtocolError:
            self._failed = True
        return parsed
