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

Once parsed, a plain GET, MGET, ``SET key value``, INCR, DECR, INCRBY, DECRBY or MSET can be
answered in C as well (:func:`resp_executor`, the optional ``server/_fastcmd.c``): the run from
the request to the reply bytes then never enters the Python dispatcher, handler or engine (a
write calls the region's own C publish, as the engine does). The C code answers only the
common case (no TTL, WATCH, lease, other type or eviction involved) and hands everything else
to ``Dispatcher.execute``, before any side effect, so that it stays the reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from blinkstore_gunicorn.engine.base import EngineError
from blinkstore_gunicorn.engine.memory import ENTRY_OVERHEAD, REGION_OVERHEAD, MemoryEngine
from blinkstore_gunicorn.protocol.resp import LARGE_BULK
from blinkstore_gunicorn.server.commands.registry import COMMANDS
from blinkstore_gunicorn.server.commands.replies import limit_error
from blinkstore_gunicorn.shm.layout import BLOCK_HEADER
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from blinkstore_gunicorn.shm.writer import RegionFull

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__ = [
    "FAST_PATH_MAX",
    "MEMO_ENTRIES",
    "MEMO_MAX",
    "Executor",
    "parse_single",
    "recall",
    "resp_executor",
    "single_command",
]

#: ``execute(dispatcher, client, request) -> reply``: how a connection runs a RESP request.
Executor = Callable[["Dispatcher", "Client", Any], bytes]

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


#: The commands the C path answers, in the order its ``Runner`` takes their handlers.
_NATIVE_COMMANDS = ("get", "mget", "set", "incr", "decr", "incrby", "decrby", "mset")


def _region_full(exc: RegionFull) -> bytes:
    """The reply of a write the region refused: ``MemoryEngine._publish`` raises it as an
    :class:`EngineError`, which ``Dispatcher.store`` (and MSET) turn into this reply."""
    return limit_error(EngineError(str(exc)))


def resp_executor(dispatcher: Dispatcher, reference: Executor) -> Executor:
    """What runs ``dispatcher``'s RESP requests: ``reference`` (``Dispatcher.execute``), or a
    C stand-in that answers the plain reads and writes itself and calls ``reference`` for the
    rest.

    The C path is used when it is built, the engine is a :class:`MemoryEngine` (whose layout it
    reads) and ``BLINKSTORE_NATIVE`` (the switch of the region's C helper too) is not ``0``.
    """
    if os.environ.get(NATIVE_ENV, "1") == "0" or type(dispatcher.engine) is not MemoryEngine:
        return reference
    try:
        from blinkstore_gunicorn.server._fastcmd import Runner
    except ImportError:
        return reference
    handlers = tuple(COMMANDS[name].handler for name in _NATIVE_COMMANDS)
    costs = (ENTRY_OVERHEAD, REGION_OVERHEAD, BLOCK_HEADER)
    try:
        runner = Runner(
            dispatcher, handlers, reference, LARGE_BULK, costs, RegionFull, _region_full
        )
        return runner.execute
    except TypeError:
        # A helper built from another version of the engine's layout (a stale build).
        return reference
