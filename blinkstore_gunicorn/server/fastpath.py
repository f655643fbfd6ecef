"""A shortcut for the most common RESP input: one small, complete command in one read.

A request/response client (redis-py, our own client, redis-benchmark with ``-P 1``) sends one
command and waits, so almost every ``data_received`` holds exactly one whole command. Splitting
it on CRLF in C and checking the pieces against the headers costs about half of running the
incremental :class:`~blinkstore_gunicorn.protocol.resp.CommandReader`. Anything else (several
commands, a partial one, a value containing CRLF, unusual spellings such as ``*02``) returns
None and goes through the reader, which stays the one authority on the protocol.

Cache traffic repeats itself: the request for a hot key is the same bytes every time. Small
requests are therefore remembered (up to :data:`MEMO_ENTRIES`, forgotten all at once when
full), and a repeat costs one dict lookup. Handlers never modify their ``args``, so a
remembered list can be handed out again.
"""

from __future__ import annotations

__all__ = ["FAST_PATH_MAX", "MEMO_ENTRIES", "MEMO_MAX", "parse_single", "recall", "single_command"]

#: Reads longer than this always go through the reader (and its request-size limit).
FAST_PATH_MAX = 1024
#: Requests up to this size are remembered...
MEMO_MAX = 128
#: ...this many at most.
MEMO_ENTRIES = 4096

_memo: dict[bytes, list[bytes]] = {}

#: ``recall(data)``: the arguments of a request of at most :data:`MEMO_MAX` bytes seen before,
#: else None (then ask :func:`parse_single`). A bound C method, so that a repeated request
#: costs the connection no Python call; the size bound is the caller's, because hashing a large
#: read would cost more than parsing it.
recall = _memo.get


def single_command(data: bytes) -> list[bytes] | None:
    """The arguments of ``data`` if it is exactly one complete RESP command, else None.

    When it returns a list, ``data`` is byte for byte ``*<n>\\r\\n`` followed by ``n`` times
    ``$<len>\\r\\n<arg>\\r\\n`` with no CRLF inside any argument, so the reader would have
    parsed it identically. The caller must not modify the list.
    """
    if len(data) <= MEMO_MAX:
        # Only small reads are looked up: hashing a large value would cost more than parsing.
        args = _memo.get(data)
        if args is not None:
            return args
    return parse_single(data)


def parse_single(data: bytes) -> list[bytes] | None:
    """:func:`single_command` without the memo lookup, for a caller that already asked
    :data:`recall`; remembers what it parses when ``data`` is small."""
    size = len(data)
    if size > FAST_PATH_MAX:
        return None
    if data[:1] != b"*" or data[-2:] != b"\r\n":
        return None
    parts = data.split(b"\r\n")
    count = len(parts) - 2
    if count < 2 or count & 1:
        return None
    count >>= 1
    if parts[0] != b"*%d" % count:
        return None
    args = parts[2:-1:2]
    if parts[1:-1:2] != [b"$%d" % len(arg) for arg in args]:
        return None
    if size <= MEMO_MAX:
        if len(_memo) >= MEMO_ENTRIES:
            _memo.clear()
        _memo[data] = args
    return args
