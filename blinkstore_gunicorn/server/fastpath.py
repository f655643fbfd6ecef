"""A shortcut for the most common RESP input: one complete command in one read.

A request/response client (redis-py, our own client, redis-benchmark with ``-P 1``) sends one
command and waits, so almost every ``data_received`` holds exactly one whole command.
:func:`single_parser` gives a connection the test for such a read, with the connection's size
limits: the C function of ``protocol/_split.c`` (:func:`~.resp_split.one_request`) where it is
built and ``BLINKSTORE_NATIVE`` is not ``0``, else :func:`parse_single`, the pure-Python
reference. Both return the arguments only where the connection's reader would read the same
ones and refuse nothing (each argument and the request strictly below the reader's limits);
anything else (several commands, a partial one, unusual spellings such as ``*02``, a size at or
over a limit) returns None and goes through the reader, which stays the one authority on the
protocol and answers a refused request as it would in any read.

Nothing is remembered between reads. A memo of small requests (a repeat cost one dict lookup)
saved nothing on repeated GETs with the C parse, and with the Python one it saved about as much
on exact repeats as it cost every request that never repeats (the memo's lists kept alive made
the garbage collector run more often); hot keys are read from the shared-memory region anyway,
so what reaches the socket is mostly writes and misses (figures in docs/benchmarks.md).

Once parsed, a plain GET, MGET, ``SET key value``, INCR, DECR, INCRBY, DECRBY, MSET, ``EXPIRE
key seconds`` or ``PEXPIRE key ms`` can be answered in C as well (:func:`resp_executor`, the
optional ``server/_fastcmd.c``): the run from the request to the reply bytes then never enters
the Python dispatcher, handler or engine (a write calls the region's own C publish, as the
engine does). The C code answers only the common case (no WATCH, lease, other type, eviction or
TTL due involved; a SET of a key with a TTL, an EXPIRE that deletes or rebuilds the expiry heap)
and hands everything else to ``Dispatcher.execute``, before any side effect, so that it stays
the reference. So are the plain LPUSH, RPUSH, LPOP, RPOP, SADD, HSET and LRANGE on an existing
container, SPOP and ZPOPMIN of an absent key and a ZADD that changes no score
(``server/_fasttypes.c``): a key to create or to delete, of another type, with a TTL, watched,
with a client parked on it, or near the memory limit goes to Python.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from blinkstore_gunicorn.engine.base import EngineError
from blinkstore_gunicorn.engine.hashes import Hash
from blinkstore_gunicorn.engine.lists import List
from blinkstore_gunicorn.engine.memory import (
    _HEAP_SLACK,
    _HEAP_STALE_BYTES,
    ENTRY_OVERHEAD,
    REGION_OVERHEAD,
    TTL_OVERHEAD,
    MemoryEngine,
)
from blinkstore_gunicorn.engine.sets import Set
from blinkstore_gunicorn.engine.typed import (
    HASH_FIELD_OVERHEAD,
    LIST_ITEM_OVERHEAD,
    SET_MEMBER_OVERHEAD,
)
from blinkstore_gunicorn.engine.zsets import ZSet
from blinkstore_gunicorn.protocol.resp import LARGE_BULK
from blinkstore_gunicorn.protocol.resp_split import OneRequest, one_request
from blinkstore_gunicorn.server.commands.registry import COMMANDS
from blinkstore_gunicorn.server.commands.replies import limit_error
from blinkstore_gunicorn.shm.layout import BLOCK_HEADER
from blinkstore_gunicorn.shm.native import ENV as NATIVE_ENV
from blinkstore_gunicorn.shm.writer import RegionFull

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher, ServerStats

__all__ = [
    "FAST_PATH_MAX",
    "NATIVE_COMMANDS",
    "Executor",
    "parse_single",
    "resp_executor",
    "single_parser",
]

#: ``execute(dispatcher, client, request) -> reply``: how a connection runs a RESP request.
Executor = Callable[["Dispatcher", "Client", Any], bytes]

#: Reads longer than this go through the reader when the parse is Python's (splitting a large
#: value into pieces costs more than the reader, which skips over it).
FAST_PATH_MAX = 1024


def single_parser(max_request_size: int, max_bulk: int) -> OneRequest:
    """``parse(data)`` for a connection whose reader has these limits (see the module's
    docstring): the arguments when ``data`` is exactly one request the reader would take
    unchanged, else None. C where it is available, else :func:`parse_single`."""
    parse = one_request(max_request_size, max_bulk)
    if parse is None:
        parse = functools.partial(parse_single, max_bulk, max_request_size)
    return parse


def parse_single(max_bulk: int, max_request: int, data: bytes) -> list[bytes] | None:
    """The arguments of ``data`` if it is exactly one complete RESP command within the limits,
    else None: the pure-Python reference of ``protocol/_split.c``'s ``one``.

    When it returns a list, ``data`` is byte for byte ``*<n>\\r\\n`` followed by ``n`` times
    ``$<len>\\r\\n<arg>\\r\\n`` with no CRLF inside any argument, every ``<len>`` below
    ``max_bulk`` and the request (from ``*`` to the end of its last argument, as the reader
    measures it) below ``max_request``, so the reader would have parsed it identically and
    refused nothing.
    """
    size = len(data)
    if size > FAST_PATH_MAX or size - 2 >= max_request:
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
    # An argument is shorter than the read that holds it.
    if size > max_bulk and max(map(len, args)) >= max_bulk:
        return None
    return args


#: The commands the C path answers, in the order its ``Runner`` takes their handlers.
NATIVE_COMMANDS = (
    "get", "mget", "set", "incr", "decr", "incrby", "decrby", "mset", "expire", "pexpire",
)  # fmt: skip
#: The data-type commands it answers (``server/_fasttypes.c``), in the order it takes them.
_NATIVE_TYPED = (
    "lpush", "rpush", "lpop", "rpop", "sadd", "hset", "lrange", "spop", "zadd", "zpopmin",
)  # fmt: skip


def _region_full(stats: ServerStats, exc: RegionFull) -> bytes:
    """The reply of a write the region refused: ``MemoryEngine._publish`` raises it as an
    :class:`EngineError`, which ``Dispatcher.store`` (and MSET) turn into this reply. The C
    path's only error reply: counted here, as ``Dispatcher.execute`` counts the others."""
    reply = limit_error(EngineError(str(exc)))
    stats.count_error(reply)
    return reply


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
    handlers = tuple(COMMANDS[name].handler for name in NATIVE_COMMANDS)
    # What an entry, a region block and a deadline cost; when the expiry heap is rebuilt.
    costs = (
        ENTRY_OVERHEAD, REGION_OVERHEAD, BLOCK_HEADER, TTL_OVERHEAD, _HEAP_SLACK, _HEAP_STALE_BYTES
    )  # fmt: skip
    typed = (
        tuple(COMMANDS[name].handler for name in _NATIVE_TYPED),
        (List, Set, Hash, ZSet),
        deque,
        (ENTRY_OVERHEAD, LIST_ITEM_OVERHEAD, SET_MEMBER_OVERHEAD, HASH_FIELD_OVERHEAD, LARGE_BULK),
    )
    try:
        runner = Runner(
            dispatcher,
            handlers,
            reference,
            LARGE_BULK,
            costs,
            RegionFull,
            functools.partial(_region_full, dispatcher.stats),
            typed,
        )
        return runner.execute
    except (TypeError, AttributeError):
        # A helper built from another version of the engine's layout (a stale build).
        return reference
