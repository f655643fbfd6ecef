"""Requests parsed by hiredis's C reader, with :class:`~.resp.CommandReader` as the authority.

hiredis (the optional dependency redis-py uses for replies) parses any RESP in C, ten times
faster than the pure-Python reader (three times with the checks below), but it is a reply
parser: it accepts types a request
never has, does not check the CRLF after a bulk string, knows none of the store's size limits
and reports nothing about a partial request. So :class:`HiredisCommandReader` uses it only
where its answer is provably the Python reader's, and hands everything else to a
:class:`~.resp.CommandReader` it keeps for that:

* a read is parsed by hiredis only when the Python reader holds nothing (it is ``idle``), the
  read is no longer than 16 KiB and the smallest size limit (then no request in it can be
  refused for its size, see :func:`hiredis_limit`) and no aggregate header in it announces
  10,000 items or more (hiredis allocates the list from the header, and freeing a list of
  millions of slots takes seconds: a 12-byte request must not cost the store that);
* the requests hiredis returns are encoded back (:func:`framing`) and must be the read's
  first bytes, byte for byte: any other type, a wrong terminator, a non-canonical number or a
  nested array fails that test, and the whole read goes to the Python reader instead;
* what follows the last complete request (a partial one, or garbage) goes to the Python
  reader, which answers it (an error, a refusal) or keeps it, exactly as it would have with
  the whole read; once it is idle again, the next read is hiredis's.

The hand-over itself is :class:`~.resp_prefix.PrefixCommandReader`'s, shared with the C
splitter of :mod:`.resp_split`, which a connection gets in preference to hiredis where it is
built (:func:`command_reader` has the order). ``BLINKSTORE_HIREDIS=0`` in the store's
environment keeps hiredis out of it, without uninstalling it.
"""

from __future__ import annotations

import os
import re
from typing import Any, Final

from blinkstore_gunicorn.protocol import resp_split
from blinkstore_gunicorn.protocol.resp import (
    BULK_HEADERS,
    DEFAULT_MAX_REQUEST_SIZE,
    CommandReader,
    Parsed,
)
from blinkstore_gunicorn.protocol.resp_prefix import PrefixCommandReader
from blinkstore_gunicorn.protocol.resp_split import SplitCommandReader

hiredis: Any
try:
    import hiredis
except ImportError:  # an optional dependency (the ``redis`` extra)
    hiredis = None

__all__ = [
    "ENV",
    "HIREDIS_MAX_READ",
    "HiredisCommandReader",
    "available",
    "command_reader",
    "framing",
    "hiredis_limit",
]

#: The environment variable that keeps the store on the pure-Python reader ("0").
ENV: Final = "BLINKSTORE_HIREDIS"
#: Reads longer than this go to the Python reader. hiredis wins on many small requests; on a
#: few large values the Python reader, which skips over a value without looking at it, is as
#: fast, and the checks below would read the value twice more.
HIREDIS_MAX_READ: Final = 16 * 1024
#: An array header of 5 digits or more, and the same for the other RESP types hiredis makes
#: a list for (sets, pushes, attributes): anywhere in a read, even inside a value, it sends
#: the read to the Python reader. The common ``*`` has a pattern of its own, which ``re``
#: finds by its first byte, several times faster than a character class.
_LARGE_ARRAY: Final = re.compile(rb"\*[0-9]{5}")
_LARGE_OTHER: Final = re.compile(rb"[~>|][0-9]{5}")

#: After a read longer than this, a connection's hiredis reader is replaced by a new one.
_KEEP_READER: Final = 1024
_CRLF: Final = b"\r\n"
#: ``*<n>\r\n`` for the usual argument counts.
_ARRAY_HEADERS: Final = tuple(b"*%d\r\n" % count for count in range(64))
#: What hiredis's ``gets`` returns while a reply is incomplete (a RESP3 ``#f`` reads as False).
_NOT_YET: Final = object()
#: What hiredis raises on input it cannot take: its protocol errors; TypeError when the
#: requests it returned cannot be encoded back (not arrays of bulk strings); MemoryError
#: when an array header announces more elements than can be allocated.
_NOT_HIREDIS: Final = (TypeError, MemoryError) + (
    (hiredis.HiredisError,) if hiredis is not None else ()
)


def available() -> bool:
    """Whether hiredis is installed (the ``redis`` extra)."""
    return hiredis is not None


def hiredis_limit(max_request_size: int, max_bulk: int) -> int:
    """The longest read hiredis may parse: one no request in which can break a size limit.

    A request inside a read of ``n`` bytes has at most ``n`` bytes, and so has each of its
    arguments, so a read within both limits holds nothing the Python reader would refuse.
    """
    return min(HIREDIS_MAX_READ, max_request_size, max_bulk)


def _new_hiredis() -> Any:
    """A hiredis reader that returns :data:`_NOT_YET` while a reply is incomplete."""
    return hiredis.Reader(notEnoughData=_NOT_YET)


def _allocates(data: bytes) -> bool:
    """Whether ``data`` may hold an aggregate header of 10,000 items or more."""
    if _LARGE_ARRAY.search(data) is not None:
        return True
    return (b"~" in data or b">" in data or b"|" in data) and _LARGE_OTHER.search(data) is not None


def framing(requests: list[Any]) -> bytes:
    """The canonical RESP of ``requests`` (lists of byte strings), as clients send it.

    Raises TypeError when an item is not a list of ``bytes`` (hiredis returns ints, None,
    nested lists... for other RESP types); a dict or set comes out framed as an array, which
    the caller's comparison with the wire then refuses.
    """
    parts: list[bytes] = []
    append = parts.append
    arrays = _ARRAY_HEADERS
    headers = BULK_HEADERS
    small = len(headers)
    for args in requests:
        count = len(args)
        append(arrays[count] if count < 64 else b"*%d\r\n" % count)
        for arg in args:
            size = len(arg)
            append(headers[size] if size < small else b"$%d\r\n" % size)
            append(arg)
            append(_CRLF)
    return b"".join(parts)


class HiredisCommandReader(PrefixCommandReader):
    """:class:`~.resp.CommandReader`'s interface and results, parsed by hiredis where it can.

    See the module's docstring for when a read is hiredis's and when the Python reader's. The
    results are the Python reader's for any input, split into any reads (a test feeds both
    random and mutated streams and compares).
    """

    __slots__ = ("_hiredis", "_limit")

    def __init__(
        self, max_request_size: int = DEFAULT_MAX_REQUEST_SIZE, max_bulk: int | None = None
    ) -> None:
        if hiredis is None:
            raise RuntimeError("hiredis is not installed")
        super().__init__(max_request_size, max_bulk)
        self._hiredis = _new_hiredis()
        self._limit = hiredis_limit(max_request_size, self._max_bulk)

    def _split(self, data: bytes) -> tuple[list[Parsed], int]:
        if len(data) > self._limit or _allocates(data):
            return [], 0
        reader = self._hiredis
        reader.feed(data)
        gets = reader.gets
        commands: list[Any] = []
        wire: bytes | None
        try:
            while (item := gets()) is not _NOT_YET:
                commands.append(item)
            wire = framing(commands)
        except _NOT_HIREDIS:
            wire = None
        if wire is None or not data.startswith(wire):
            self._hiredis = _new_hiredis()  # what it holds of ``data`` is not a request
            return [], 0
        if [] in commands:
            # Redis and the Python reader skip empty arrays (``*0``) silently.
            commands = [args for args in commands if args]
        if len(wire) < len(data) or len(data) > _KEEP_READER:
            # What follows the requests (a partial one, or garbage) is the Python reader's, and
            # hiredis starts afresh after it. And hiredis keeps a buffer the size of its largest
            # read (32 KiB after 16 KiB): an idle connection must not hold that, outside the
            # client budget.
            self._hiredis = _new_hiredis()
        return commands, len(wire)


def command_reader(
    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE, max_bulk: int | None = None
) -> CommandReader | PrefixCommandReader:
    """A request reader for one connection, the first of these that is there and not turned off:

    1. the C splitter (:class:`~.resp_split.SplitCommandReader`): built by ``setup.py`` where
       a compiler was at hand, off with ``BLINKSTORE_NATIVE=0``;
    2. hiredis's (:class:`HiredisCommandReader`): where hiredis is installed (the ``redis``
       extra), off with ``BLINKSTORE_HIREDIS=0``;
    3. the pure-Python :class:`~.resp.CommandReader`, the reference the other two defer to.

    The environment is read each time (not once at import), so that a test can switch.
    """
    if resp_split.available():
        return SplitCommandReader(max_request_size, max_bulk)
    if available() and os.environ.get(ENV, "1") != "0":
        return HiredisCommandReader(max_request_size, max_bulk)
    return CommandReader(max_request_size, max_bulk)
