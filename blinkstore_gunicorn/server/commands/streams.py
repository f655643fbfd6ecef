"""Stream commands (Redis's t_stream.c): XADD, XRANGE, XREVRANGE, XLEN, XDEL, XTRIM and XREAD,
whose ``BLOCK`` parks the caller in the store (``server/blocking.py``) until an XADD serves it.

The data and its memory account are ``engine/streams.py``'s; this module parses, checks and
encodes, with Redis 7.0's argument rules and error texts. Consumer groups are in
``streamgroups`` and ``streaminfo``; what the three share is ``xreply``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.engine import EntryTooLarge, KeyTooLarge
from blinkstore_gunicorn.engine.streams import (
    MIN_ID,
    NODE_ENTRIES,
    Stream,
    StreamError,
    StreamID,
    Trim,
    append,
    next_id,
    remove,
    trim,
)
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import DEFERRED, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    RESP3_NULL,
    limit_error,
    parse_int,
    wrong_args,
)
from blinkstore_gunicorn.server.commands.xreply import (
    ERR_GREATER,
    ERR_INVALID_ID,
    U64,
    Slice,
    bound,
    encode,
    format_id,
    parse_id,
    parse_read,
    slice_of,
    strict_id,
    too_large,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_MAXLEN: Final = resp.error("ERR The MAXLEN argument must be >= 0.")
ERR_LIMIT: Final = resp.error("ERR The LIMIT argument must be >= 0.")
ERR_BOTH: Final = resp.error(
    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible"
)
ERR_LIMIT_NO_STRATEGY: Final = resp.error(
    "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
)
ERR_LIMIT_EXACT: Final = resp.error(
    "ERR syntax error, LIMIT cannot be used without the special ~ option"
)
ERR_NO_STRATEGY: Final = resp.error(
    "ERR syntax error, XTRIM must be called with a trimming strategy"
)
#: Entries an approximate trim removes at most in one call when no LIMIT is given (Redis:
#: 100 nodes), so that one XADD never stalls the store on a huge trim.
DEFAULT_APPROX_LIMIT: Final = 100 * NODE_ENTRIES


class _AddOrTrim:
    """What XADD and XTRIM parsed: the trimming rule, XADD's NOMKSTREAM and its ID."""

    __slots__ = ("id_at", "make", "ms", "rule", "seq")

    def __init__(self) -> None:
        self.rule: Trim | None = None
        self.make = True
        #: The requested ID (None: ``*``; ``seq`` None: ``ms-*``) and its argument's position.
        self.ms: int | None = None
        self.seq: int | None = None
        self.id_at = 0


def _parse_add_or_trim(args: list[bytes], xadd: bool) -> _AddOrTrim | bytes:
    """Redis's ``streamParseAddOrTrimArgsOrReply``: the options from ``args[2:]``."""
    parsed = _AddOrTrim()
    maxlen: int | None = None
    minid: StreamID | None = None
    approx = False
    limit: int | None = None
    i = 2
    while i < len(args):
        more = len(args) - 1 - i
        option = args[i].upper()
        if xadd and args[i] == b"*":
            break
        if option in (b"MAXLEN", b"MINID") and more:
            if maxlen is not None or minid is not None:
                return ERR_BOTH
            approx = more >= 2 and args[i + 1] == b"~"
            if more >= 2 and args[i + 1] in (b"~", b"="):
                i += 1
            if option == b"MAXLEN":
                maxlen = parse_int(args[i + 1])
                if maxlen is None:
                    return ERR_NOT_INT
                if maxlen < 0:
                    return ERR_MAXLEN
            else:
                minid = strict_id(args[i + 1])
                if minid is None:
                    return ERR_INVALID_ID
            i += 1
        elif option == b"LIMIT" and more:
            limit = parse_int(args[i + 1])
            if limit is None:
                return ERR_NOT_INT
            if limit < 0:
                return ERR_LIMIT
            i += 1
        elif xadd and option == b"NOMKSTREAM":
            parsed.make = False
        elif xadd:
            try:
                parsed.ms, parsed.seq = parse_id(args[i], 0, auto_seq=True)
            except ValueError:
                return ERR_INVALID_ID
            break
        else:
            return ERR_SYNTAX
        i += 1
    parsed.id_at = i
    strategy = maxlen is not None or minid is not None
    if limit and not strategy:
        return ERR_LIMIT_NO_STRATEGY
    if not xadd and not strategy:
        return ERR_NO_STRATEGY
    if limit is not None and not approx:
        return ERR_LIMIT_EXACT
    if strategy:
        if limit is None:
            limit = DEFAULT_APPROX_LIMIT if approx else 0
        parsed.rule = Trim(maxlen=maxlen, minid=minid, approx=approx, limit=limit)
    return parsed


@command("xadd", -5, "write denyoom fast", (1, 1, 1))
def cmd_xadd(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] *|id field value
    [field value...]``: the new entry's ID (nil with NOMKSTREAM when the key is absent)."""
    parsed = _parse_add_or_trim(args, xadd=True)
    if isinstance(parsed, bytes):
        return parsed
    fields = tuple(args[parsed.id_at + 1 :])
    if not fields or len(fields) % 2:
        return wrong_args("xadd")
    if parsed.ms is not None and (parsed.ms, parsed.seq) == MIN_ID:
        return resp.error("ERR The ID specified in XADD must be greater than 0-0")
    key = args[1]
    for field in fields:
        error = d.fits(key, field)
        if error is not None:
            return error
    stream = d.engine.lookup(key, Stream)
    if stream is None and not parsed.make:
        return c.nil
    try:
        new_id = next_id(
            MIN_ID if stream is None else stream.last_id, parsed.ms, parsed.seq, d.clock_ms()
        )
        # Kept as the reply it is sent in (the engine does not read it): XRANGE only joins.
        append(d.engine, key, new_id, resp.bulk_array(fields), fields, rule=parsed.rule)
    except StreamError as exc:
        return resp.error(str(exc))
    except (EntryTooLarge, KeyTooLarge) as exc:
        return limit_error(exc)
    if d.blocked:
        d.blocked.ready(key)
    return resp.bulk(format_id(new_id))


@command("xtrim", -4, "write", (1, 1, 1))
def cmd_xtrim(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]``: how many entries went."""
    parsed = _parse_add_or_trim(args, xadd=False)
    if isinstance(parsed, bytes):
        return parsed
    assert parsed.rule is not None
    return resp.integer(trim(d.engine, args[1], parsed.rule))


@command("xdel", -3, "write fast", (1, 1, 1))
def cmd_xdel(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XDEL key id [id...]``: how many of the entries existed (all IDs checked first)."""
    ids = [strict_id(raw) for raw in args[2:]]
    if None in ids:
        return ERR_INVALID_ID
    return resp.integer(remove(d.engine, args[1], ids))  # type: ignore[arg-type]


@command("xlen", 2, "readonly fast", (1, 1, 1))
def cmd_xlen(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XLEN key``: 0 when absent."""
    stream = d.engine.lookup(args[1], Stream)
    return resp.integer(0 if stream is None else len(stream))


def _range(d: Dispatcher, c: Client, args: list[bytes], rev: bool) -> bytes:
    low_raw, high_raw = (args[3], args[2]) if rev else (args[2], args[3])
    low = bound(low_raw, 0, start=True)
    if isinstance(low, bytes):
        return low
    high = bound(high_raw, U64, start=False)
    if isinstance(high, bytes):
        return high
    count: int | None = None
    i = 4
    while i < len(args):
        if args[i].upper() != b"COUNT" or i + 1 >= len(args):
            return ERR_SYNTAX
        count = parse_int(args[i + 1])
        if count is None:
            return ERR_NOT_INT
        count = max(count, 0)
        i += 2
    stream = d.engine.lookup(args[1], Stream)
    if stream is None:
        return resp.EMPTY_ARRAY
    if count == 0:
        return RESP3_NULL if c.resp3 else resp.NIL_ARRAY
    first, stop = stream.span(low, high)
    if count is not None and stop - first > count:
        if rev:
            first = stop - count
        else:
            stop = first + count
    entries = slice_of(stream, first, max(first, stop), rev)
    return too_large(d, [entries]) or encode(entries)


@command("xrange", -4, "readonly", (1, 1, 1))
def cmd_xrange(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XRANGE key start end [COUNT n]``: the entries between the IDs (``-``, ``+``,
    ``(`` for an exclusive end), oldest first."""
    return _range(d, c, args, rev=False)


@command("xrevrange", -4, "readonly", (1, 1, 1))
def cmd_xrevrange(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XREVRANGE key end start [COUNT n]``: as XRANGE, newest first."""
    return _range(d, c, args, rev=True)


@command("xread", -4, "readonly blocking movablekeys")
def cmd_xread(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``XREAD [COUNT n] [BLOCK ms] STREAMS key [key...] id [id...]``: the entries after each
    ID (``$``: the stream's last), or with BLOCK parked until an XADD brings some; a nil
    array when none came (in MULTI/EXEC it never waits)."""
    parsed = parse_read(c, args)
    if isinstance(parsed, bytes):
        return parsed
    after: dict[bytes, StreamID] = {}
    for key, raw in zip(parsed.keys, parsed.raw_ids, strict=True):
        stream = d.engine.lookup(key, Stream)
        if raw == b"$":
            wanted = MIN_ID if stream is None else stream.last_id
        elif raw == b">":
            return ERR_GREATER
        else:
            found = strict_id(raw)
            if found is None:
                return ERR_INVALID_ID
            wanted = found
        after.setdefault(key, wanted)
    count = parsed.count

    def serve(key: bytes) -> tuple[bytes, Slice] | None:
        """The key and its entries after the ID asked for, None when it has none."""
        stream = d.engine.lookup(key, Stream)
        if stream is None or stream.last_id <= after[key]:
            return None
        first = stream.after(after[key])
        if first == len(stream):  # the entries after the ID were deleted: none, as in Redis
            return None
        stop = len(stream) if not count else min(len(stream), first + count)
        return key, slice_of(stream, first, stop, rev=False)

    def reply(served: list[tuple[bytes, Slice]]) -> bytes:
        error = too_large(d, [entries for _, entries in served])
        if error is not None:
            return error
        pairs = [resp.bulk(key) + encode(entries) for key, entries in served]
        if c.resp3:  # a map of key to entries
            return b"%%%d\r\n%b" % (len(pairs), b"".join(pairs))
        return resp.array([b"*2\r\n" + pair for pair in pairs])

    def serve_parked(key: bytes) -> bytes | None:
        one = serve(key)
        return None if one is None else reply([one])

    served = [one for one in map(serve, after) if one is not None]
    if served:
        return reply(served)
    null = RESP3_NULL if c.resp3 else resp.NIL_ARRAY
    if parsed.block_ms is None or c.in_exec:
        return null
    deadline = None if parsed.block_ms == 0 else d.clock_ms() + parsed.block_ms
    d.blocked.park(
        c.id,
        list(after),
        deadline,
        serve=serve_parked,
        deliver=c.deliver,
        timeout_reply=null,
        consumes=False,
    )
    d.blocked.watch(c.id, c.on_close)
    return DEFERRED
