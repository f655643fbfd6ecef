"""Pops from the first non-empty of several keys (Redis 7's t_list.c and t_zset.c): LMPOP,
ZMPOP and their blocking forms BLMPOP and BZMPOP, which park the caller in the store
(``server/blocking.py``, as BLPOP and BZPOPMIN do) until a push or ZADD serves it: first come
first served, ``timeout`` honoured, forgotten when the connection closes, never parked inside
MULTI/EXEC or a script (the timeout reply comes at once there, as in Redis 7.0, which lets
scripts call these two but not BLPOP).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.lists import List, pop
from blinkstore_gunicorn.engine.zsets import zrem_range
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import DEFERRED, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_SYNTAX,
    RESP3_NULL,
    parse_int,
    parse_timeout,
    reply_too_large,
)
from blinkstore_gunicorn.server.commands.zreply import pairs_reply, zset_of

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_NUMKEYS = resp.error("ERR numkeys should be greater than 0")
ERR_COUNT = resp.error("ERR count should be greater than 0")

#: Pops up to ``count`` from one end of ``key``: the reply, or None when the key is empty.
_Serve = Callable[["Dispatcher", "Client", bytes, bool, int], "bytes | None"]


def _parse(
    args: list[bytes], at: int, ends: tuple[bytes, bytes]
) -> tuple[list[bytes], bool, int] | bytes:
    """``numkeys key [key...] END [COUNT count]`` from ``args[at:]``: the keys, whether the
    end is the first of ``ends`` (LEFT, MIN), and the count; or Redis's error reply."""
    numkeys = parse_int(args[at])
    if numkeys is None or numkeys < 1:
        return ERR_NUMKEYS
    where = at + 1 + numkeys
    if where >= len(args):
        return ERR_SYNTAX
    end = args[where].upper()
    if end not in ends:
        return ERR_SYNTAX
    count = None
    i = where + 1
    while i < len(args):
        if count is None and args[i].upper() == b"COUNT" and i + 1 < len(args):
            count = parse_int(args[i + 1])
            if count is None or count < 1:
                return ERR_COUNT
            i += 2
        else:
            return ERR_SYNTAX
    return args[at + 1 : where], end == ends[0], 1 if count is None else count


def _mpop(
    d: Dispatcher, c: Client, args: list[bytes], serve: _Serve, ends: tuple[bytes, bytes]
) -> bytes:
    """LMPOP and ZMPOP, and BLMPOP and BZMPOP (their first argument is the timeout)."""
    blocking = args[0].lower().startswith(b"b")
    parsed = _parse(args, 2 if blocking else 1, ends)
    if isinstance(parsed, bytes):
        return parsed
    keys, first_end, count = parsed
    null = RESP3_NULL if c.resp3 else resp.NIL_ARRAY
    if not blocking:
        for key in keys:
            reply = serve(d, c, key, first_end, count)
            if reply is not None:
                return reply
        return null
    deadline = parse_timeout(args[1], d.clock_ms())
    if isinstance(deadline, bytes):
        return deadline
    reply = d.blocked.serve_or_park(
        c.id,
        keys,
        deadline,
        serve=lambda key: serve(d, c, key, first_end, count),
        deliver=c.deliver,
        timeout_reply=null,
        on_close=c.on_close,
        may_park=not (c.in_exec or c.in_script),  # Redis answers at once there
    )
    return DEFERRED if reply is None else reply


def _list_pop(d: Dispatcher, c: Client, key: bytes, left: bool, count: int) -> bytes | None:
    found = d.engine.lookup(key, List)
    if found is None:
        return None
    # Checked before popping, so that a refused reply loses no item.
    ends = islice(found.items if left else reversed(found.items), count)
    error = reply_too_large(sum(map(len, ends)), d.max_reply_size)
    if error is not None:
        return error
    taken = pop(d.engine, key, count, left) or []
    return resp.array([resp.bulk(key), resp.bulk_array(taken)])


def _zset_pop(d: Dispatcher, c: Client, key: bytes, lowest: bool, count: int) -> bytes | None:
    size = len(zset_of(d, key))
    if not size:
        return None
    span = (0, min(count, size)) if lowest else (max(size - count, 0), size)
    error = reply_too_large(
        sum(len(m) + 24 for _, m in zset_of(d, key).order[span[0] : span[1]]), d.max_reply_size
    )
    if error is not None:
        return error
    taken = zrem_range(d.engine, key, *span)
    if not lowest:
        taken.reverse()
    return resp.array([resp.bulk(key), pairs_reply(c, taken)])


_SIDES = (b"LEFT", b"RIGHT")
_EXTREMES = (b"MIN", b"MAX")


@command("lmpop", -4, "write movablekeys", (0, 0, 0))
def cmd_lmpop(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``LMPOP numkeys key [key...] LEFT|RIGHT [COUNT count]``: ``[key, [elements]]`` from
    the first non-empty list, or a nil array."""
    return _mpop(d, c, args, _list_pop, _SIDES)


@command("blmpop", -5, "write blocking movablekeys", (0, 0, 0))
def cmd_blmpop(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BLMPOP timeout numkeys key [key...] LEFT|RIGHT [COUNT count]``: LMPOP, parked while
    every list is empty."""
    return _mpop(d, c, args, _list_pop, _SIDES)


@command("zmpop", -4, "write movablekeys", (0, 0, 0))
def cmd_zmpop(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``ZMPOP numkeys key [key...] MIN|MAX [COUNT count]``: ``[key, [[member, score]...]]``
    from the first non-empty sorted set, or a nil array."""
    return _mpop(d, c, args, _zset_pop, _EXTREMES)


@command("bzmpop", -5, "write blocking movablekeys", (0, 0, 0))
def cmd_bzmpop(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BZMPOP timeout numkeys key [key...] MIN|MAX [COUNT count]``: ZMPOP, parked while
    every sorted set is empty."""
    return _mpop(d, c, args, _zset_pop, _EXTREMES)
