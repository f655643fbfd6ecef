"""List commands (Redis's t_list.c): LPUSH, RPUSH, LPUSHX, RPUSHX, LPOP, RPOP, LLEN, LRANGE,
LINDEX, LSET, LINSERT, LREM, LTRIM, LPOS, LMOVE, RPOPLPUSH, and the blocking BLPOP, BRPOP,
BLMOVE and BRPOPLPUSH, which park the caller in the store (``server/blocking.py``) until a
push serves it.

The data and its memory account are ``engine/lists.py``'s; this module parses, checks and
encodes. Indexes follow Redis: negative ones count from the tail, ranges are clamped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine import EntryTooLarge, KeyTooLarge, WrongType
from blinkstore_gunicorn.engine.lists import List, edit, pop, push
from blinkstore_gunicorn.engine.typed import LIST_ITEM_OVERHEAD
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import DEFERRED, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    RESP3_NULL,
    ZERO,
    bulk_items,
    limit_error,
    parse_int,
    parse_timeout,
    reply_too_large,
    wrong_args,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_POSITIVE = resp.error("ERR value is out of range, must be positive")
ERR_NO_SUCH_KEY = resp.error("ERR no such key")
ERR_INDEX = resp.error("ERR index out of range")
ERR_RANK_ZERO = resp.error(
    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
    "or use negative to start from the end of the list"
)
ERR_COUNT_NEGATIVE = resp.error("ERR COUNT can't be negative")
ERR_MAXLEN_NEGATIVE = resp.error("ERR MAXLEN can't be negative")

_EMPTY = List()


def _list(d: Dispatcher, key: bytes) -> List:
    """The key's list for a read (an empty one when the key is absent)."""
    found = d.engine.lookup(key, List)
    return _EMPTY if found is None else found


def _items(d: Dispatcher, key: bytes) -> deque[bytes]:
    """The list's items for a read (empty when the key is absent)."""
    return _list(d, key).items


def _size(items: Iterable[bytes], count: int, width: int) -> int:
    """The bytes of the ``count`` ``items`` (each ``width`` long; -1: their lengths differ)."""
    return width * count if width >= 0 else sum(map(len, items))


def _clamp(start: int, stop: int, size: int) -> tuple[int, int]:
    """Redis's range rule: negative indexes from the tail, clamped; an empty range is
    (0, 0). The result is ``[start, stop)``."""
    if start < 0:
        start = max(start + size, 0)
    if stop < 0:
        stop += size
    stop = min(stop, size - 1)
    return (0, 0) if start > stop else (start, stop + 1)


def _push(d: Dispatcher, args: list[bytes], left: bool, only_existing: bool) -> bytes:
    values = args[2:]
    limit = d.max_value_size
    # One pass in C over the sizes; the refusal names the first value too large, as before.
    if max(map(len, values)) > limit:
        return d.fits(b"", next(value for value in values if len(value) > limit))  # type: ignore[return-value]
    if only_existing and d.engine.lookup(args[1], List) is None:
        return ZERO
    try:
        length = push(d.engine, args[1], values, left)
    except (EntryTooLarge, KeyTooLarge) as exc:
        return limit_error(exc)
    if d.blocked:
        d.blocked.ready(args[1])
    return resp.integer(length)


@command("lpush", -3, "write denyoom fast", (1, 1, 1))
def cmd_lpush(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LPUSH key element [element...]``: the new length."""
    return _push(d, args, left=True, only_existing=False)


@command("rpush", -3, "write denyoom fast", (1, 1, 1))
def cmd_rpush(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``RPUSH key element [element...]``: the new length."""
    return _push(d, args, left=False, only_existing=False)


@command("lpushx", -3, "write denyoom fast", (1, 1, 1))
def cmd_lpushx(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LPUSHX key element [element...]``: only onto an existing list; 0 otherwise."""
    return _push(d, args, left=True, only_existing=True)


@command("rpushx", -3, "write denyoom fast", (1, 1, 1))
def cmd_rpushx(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``RPUSHX key element [element...]``: only onto an existing list; 0 otherwise."""
    return _push(d, args, left=False, only_existing=True)


def _pop(d: Dispatcher, c: Client, args: list[bytes], left: bool) -> bytes:
    if len(args) > 3:
        return wrong_args("lpop" if left else "rpop")
    if len(args) == 2:
        taken = pop(d.engine, args[1], 1, left)
        return resp.bulk(taken[0]) if taken else c.nil
    count = parse_int(args[2])
    if count is None or count < 0:
        return ERR_POSITIVE
    found = _list(d, args[1])
    items, width = found.items, found.width
    # Checked before popping, so that a refused reply loses no item.
    ends = islice(items if left else reversed(items), count)
    error = reply_too_large(_size(ends, min(count, len(items)), width), d.max_reply_size)
    if error is not None:
        return error
    taken = pop(d.engine, args[1], count, left)
    if taken is None:
        return RESP3_NULL if c.resp3 else resp.NIL_ARRAY
    return bulk_items(taken, width)


@command("lpop", -2, "write fast", (1, 1, 1))
def cmd_lpop(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LPOP key [count]``."""
    return _pop(d, c, args, left=True)


@command("rpop", -2, "write fast", (1, 1, 1))
def cmd_rpop(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``RPOP key [count]``."""
    return _pop(d, c, args, left=False)


@command("llen", 2, "readonly fast", (1, 1, 1))
def cmd_llen(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LLEN key``."""
    return resp.integer(len(_items(d, args[1])))


@command("lrange", 4, "readonly", (1, 1, 1))
def cmd_lrange(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LRANGE key start stop``."""
    start, stop = parse_int(args[2]), parse_int(args[3])
    if start is None or stop is None:
        return ERR_NOT_INT
    found = _list(d, args[1])
    start, stop = _clamp(start, stop, len(found.items))
    chosen = list(islice(found.items, start, stop))
    width = found.width
    size = _size(chosen, len(chosen), width)
    return reply_too_large(size, d.max_reply_size) or bulk_items(chosen, width)


def _position(index: int, size: int) -> int | None:
    """The position ``index`` names in a list of ``size``, None when outside it."""
    if index < 0:
        index += size
    return index if 0 <= index < size else None


@command("lindex", 3, "readonly", (1, 1, 1))
def cmd_lindex(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LINDEX key index``."""
    index = parse_int(args[2])
    if index is None:
        return ERR_NOT_INT
    items = _items(d, args[1])
    position = _position(index, len(items))
    return c.nil if position is None else resp.bulk(items[position])


@command("lset", 4, "write denyoom", (1, 1, 1))
def cmd_lset(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LSET key index element``."""
    index = parse_int(args[2])
    if index is None:
        return ERR_NOT_INT
    error = d.fits(b"", args[3])
    if error is not None:
        return error
    found = d.engine.lookup(args[1], List)
    if found is None:
        return ERR_NO_SUCH_KEY
    position = _position(index, len(found.items))
    if position is None:
        return ERR_INDEX

    def change(items: deque[bytes]) -> None:
        items[position] = args[3]

    return _edit(d, args[1], change, len(args[3])) or resp.OK


def _edit(
    d: Dispatcher, key: bytes, change: Callable[[deque[bytes]], None], growth: int
) -> bytes | None:
    """Edit an existing list; None, or the error reply of a size limit (nothing changed)."""
    try:
        edit(d.engine, key, change, growth)
    except (EntryTooLarge, KeyTooLarge) as exc:
        return limit_error(exc)
    return None


@command("linsert", 5, "write denyoom", (1, 1, 1))
def cmd_linsert(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LINSERT key BEFORE|AFTER pivot element``: the new length, -1 without the pivot, 0
    without the key."""
    where = args[2].upper()
    if where not in (b"BEFORE", b"AFTER"):
        return ERR_SYNTAX
    error = d.fits(b"", args[4])
    if error is not None:
        return error
    items = _items(d, args[1])
    if not items:
        return ZERO
    try:
        index = items.index(args[3])
    except ValueError:
        return resp.integer(-1)

    def change(items: deque[bytes]) -> None:
        items.insert(index if where == b"BEFORE" else index + 1, args[4])

    return _edit(d, args[1], change, len(args[4]) + LIST_ITEM_OVERHEAD) or resp.integer(len(items))


@command("lrem", 4, "write", (1, 1, 1))
def cmd_lrem(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LREM key count element``: remove ``count`` matches from the head (negative: from the
    tail; 0: all); how many were removed."""
    count = parse_int(args[2])
    if count is None:
        return ERR_NOT_INT
    element = args[3]
    items = _items(d, args[1])
    matches = items.count(element)
    if not matches:
        return ZERO
    removed = matches if count == 0 else min(abs(count), matches)

    def change(items: deque[bytes]) -> None:
        left = removed
        ordered = list(items) if count >= 0 else list(reversed(items))
        kept = []
        for item in ordered:
            if left and item == element:
                left -= 1
            else:
                kept.append(item)
        items.clear()
        items.extend(kept if count >= 0 else reversed(kept))

    return _edit(d, args[1], change, 0) or resp.integer(removed)


@command("ltrim", 4, "write", (1, 1, 1))
def cmd_ltrim(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LTRIM key start stop``: keep only that range (none: the key goes)."""
    start, stop = parse_int(args[2]), parse_int(args[3])
    if start is None or stop is None:
        return ERR_NOT_INT
    items = _items(d, args[1])
    if not items:
        return resp.OK
    start, stop = _clamp(start, stop, len(items))

    def change(items: deque[bytes]) -> None:
        kept = list(islice(items, start, stop))
        items.clear()
        items.extend(kept)

    return _edit(d, args[1], change, 0) or resp.OK


@command("lpos", -3, "readonly", (1, 1, 1))
def cmd_lpos(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LPOS key element [RANK rank] [COUNT num] [MAXLEN len]``."""
    rank, count, maxlen = 1, None, 0
    i = 3
    while i < len(args):
        option = args[i].upper()
        if i + 1 >= len(args) or option not in (b"RANK", b"COUNT", b"MAXLEN"):
            return ERR_SYNTAX
        number = parse_int(args[i + 1])
        if number is None:
            return ERR_NOT_INT
        if option == b"RANK":
            if number == 0:
                return ERR_RANK_ZERO
            rank = number
        elif option == b"COUNT":
            if number < 0:
                return ERR_COUNT_NEGATIVE
            count = number
        elif number < 0:
            return ERR_MAXLEN_NEGATIVE
        else:
            maxlen = number
        i += 2
    items = _items(d, args[1])
    size = len(items)
    ordered = (
        enumerate(items)
        if rank > 0
        else ((size - 1 - n, item) for n, item in enumerate(reversed(items)))
    )
    skip = abs(rank) - 1
    wanted = count if count else size
    found: list[int] = []
    for scanned, (position, item) in enumerate(ordered):
        if maxlen and scanned >= maxlen:
            break
        if item == args[2]:
            if skip:
                skip -= 1
                continue
            found.append(position)
            if len(found) >= wanted:
                break
    if count is None:
        return resp.integer(found[0]) if found else c.nil
    return resp.array(resp.integer(position) for position in found)


def _move(d: Dispatcher, c: Client, args: list[bytes], *, left: bool, to_left: bool) -> bytes:
    reply = _moved(d, args[1], args[2], left=left, to_left=to_left)
    return c.nil if reply is None else reply


def _moved(
    d: Dispatcher, source: bytes, destination: bytes, *, left: bool, to_left: bool
) -> bytes | None:
    """Move one element (LMOVE): its reply, an error reply, or None when the source is empty."""
    items = _items(d, source)
    if not items:
        return None
    d.engine.lookup(destination, List)  # WRONGTYPE before any change, as in Redis
    value = items[0] if left else items[-1]
    if source == destination:

        def change(items: deque[bytes]) -> None:
            if left != to_left:
                items.rotate(-1 if left else 1)

        return _edit(d, source, change, 0) or resp.bulk(value)
    try:
        push(d.engine, destination, [value], to_left)
    except (EntryTooLarge, KeyTooLarge) as exc:
        return limit_error(exc)
    pop(d.engine, source, 1, left)
    if d.blocked:
        d.blocked.ready(destination)
    return resp.bulk(value)


def _side(raw: bytes) -> bool | None:
    side = raw.upper()
    return True if side == b"LEFT" else (False if side == b"RIGHT" else None)


@command("lmove", 5, "write denyoom", (1, 2, 1))
def cmd_lmove(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LMOVE source destination LEFT|RIGHT LEFT|RIGHT``: the element moved, or nil."""
    left, to_left = _side(args[3]), _side(args[4])
    if left is None or to_left is None:
        return ERR_SYNTAX
    return _move(d, c, args, left=left, to_left=to_left)


@command("rpoplpush", 3, "write denyoom", (1, 2, 1))
def cmd_rpoplpush(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``RPOPLPUSH source destination`` (``LMOVE source destination RIGHT LEFT``)."""
    return _move(d, c, args, left=False, to_left=True)


def _block(
    d: Dispatcher,
    c: Client,
    keys: list[bytes],
    raw_timeout: bytes,
    *,
    serve: Callable[[bytes], bytes | None],
    timeout_reply: bytes,
) -> bytes:
    """Answer at once from the first key with elements, else park until a push serves it.
    ``serve`` raises ``WrongType`` for a key of another type met first, as Redis answers."""
    deadline = parse_timeout(raw_timeout, d.clock_ms())
    if isinstance(deadline, bytes):
        return deadline
    reply = d.blocked.serve_or_park(
        c.id,
        keys,
        deadline,
        serve=serve,
        deliver=c.deliver,
        timeout_reply=timeout_reply,
        on_close=c.on_close,
        may_park=not c.in_exec,
    )
    return DEFERRED if reply is None else reply


def _blocking_pop(d: Dispatcher, c: Client, args: list[bytes], left: bool) -> bytes:
    keys = args[1:-1]

    def serve(key: bytes) -> bytes | None:
        taken = pop(d.engine, key, 1, left)
        return resp.bulk_array([key, taken[0]]) if taken else None

    timeout_reply = RESP3_NULL if c.resp3 else resp.NIL_ARRAY
    return _block(d, c, keys, args[-1], serve=serve, timeout_reply=timeout_reply)


@command("blpop", -3, "write noscript blocking", (1, -2, 1))
def cmd_blpop(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BLPOP key [key...] timeout``: ``[key, element]`` from the first non-empty list, or
    parked until a push; a nil array when ``timeout`` seconds pass (0: no limit)."""
    return _blocking_pop(d, c, args, left=True)


@command("brpop", -3, "write noscript blocking", (1, -2, 1))
def cmd_brpop(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BRPOP key [key...] timeout``: as BLPOP, from the tail."""
    return _blocking_pop(d, c, args, left=False)


def _blocking_move(
    d: Dispatcher,
    c: Client,
    source: bytes,
    destination: bytes,
    raw_timeout: bytes,
    *,
    left: bool,
    to_left: bool,
) -> bytes:
    """BLMOVE's work (BRPOPLPUSH is BLMOVE ... RIGHT LEFT)."""

    def serve(key: bytes) -> bytes | None:
        try:
            return _moved(d, source, destination, left=left, to_left=to_left)
        except WrongType as exc:  # the destination changed type while the caller waited
            return resp.error(str(exc))

    # Redis answers a timeout with a null array, but an empty source inside MULTI with a
    # plain null (the two differ in RESP2 only).
    timeout_reply = c.nil if c.in_exec or c.resp3 else resp.NIL_ARRAY
    return _block(d, c, [source], raw_timeout, serve=serve, timeout_reply=timeout_reply)


@command("blmove", 6, "write denyoom noscript blocking", (1, 2, 1))
def cmd_blmove(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout``: LMOVE, parked while the
    source is empty."""
    left, to_left = _side(args[3]), _side(args[4])
    if left is None or to_left is None:
        return ERR_SYNTAX
    return _blocking_move(d, c, args[1], args[2], args[5], left=left, to_left=to_left)


@command("brpoplpush", 4, "write denyoom noscript blocking", (1, 2, 1))
def cmd_brpoplpush(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BRPOPLPUSH source destination timeout``: ``BLMOVE source destination RIGHT LEFT
    timeout``."""
    return _blocking_move(d, c, args[1], args[2], args[3], left=False, to_left=True)
