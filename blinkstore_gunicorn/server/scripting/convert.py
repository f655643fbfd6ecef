"""Redis's conversion rules between RESP replies and Lua values, both ways.

RESP -> Lua (what ``redis.call`` returns): integer -> number, bulk -> string, null -> false,
array -> table, status -> ``{ok=...}``, error -> ``{err=...}``.

Lua -> RESP (what a script returns): number -> integer (truncated), string -> bulk, true -> 1,
false and nil -> null, ``{err=...}`` -> error, ``{ok=...}`` -> status, any other table ->
array of its items from 1 up to the first nil. Functions and other values become null.
"""

from __future__ import annotations

import math
from typing import Any, Final

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.protocol.resp import ErrorReply, Reply

__all__ = ["MAX_DEPTH", "argument", "number_reply", "to_lua", "to_reply"]

#: Nesting limit of a returned table (a table may contain itself).
MAX_DEPTH: Final = 128
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_ERR_DEPTH: Final = resp.error("ERR reached lua stack limit")


def to_lua(lua: Any, reply: Reply) -> Any:
    """One parsed RESP2 reply as the Lua value ``redis.call`` hands a script."""
    if reply.__class__ is bytes or reply.__class__ is int:
        return reply
    if reply is None:
        return False
    if reply.__class__ is list:
        return lua.table(*[to_lua(lua, item) for item in reply])
    if reply.__class__ is str:
        return lua.table_from({b"ok": reply.encode()})
    assert isinstance(reply, ErrorReply)
    return lua.table_from({b"err": reply.message.encode("utf-8", "replace")})


def number_reply(number: float) -> bytes:
    """A Lua number as Redis replies it: truncated toward zero; out of range (or NaN)
    gives the smallest 64-bit integer, as the C cast does on the platforms Redis runs on."""
    if not math.isfinite(number) or not _INT64_MIN <= number <= _INT64_MAX:
        return resp.integer(_INT64_MIN)
    return resp.integer(int(number))


class _TooDeep(Exception):
    """A returned table nests deeper than :data:`MAX_DEPTH`."""


def to_reply(value: Any, nil: bytes) -> bytes:
    """A value a script returned, as the reply bytes for a client whose null is ``nil``."""
    try:
        return _reply(value, nil, 0)
    except _TooDeep:
        return _ERR_DEPTH


def _reply(value: Any, nil: bytes, depth: int) -> bytes:
    kind = value.__class__
    if kind is bytes:
        return resp.bulk(value)
    if kind is int or kind is float:
        return number_reply(value)
    if value is True:
        return resp.integer(1)
    if value is None or value is False or not hasattr(value, "items"):
        return nil
    if depth >= MAX_DEPTH:
        raise _TooDeep
    err = value[b"err"]
    if err.__class__ is bytes:
        return resp.error(err.decode("utf-8", "replace"))
    ok = value[b"ok"]
    if ok.__class__ is bytes:
        return resp.simple(ok.decode("utf-8", "replace"))
    items: list[bytes] = []
    index = 1
    while True:
        item = value[index]
        if item is None:
            break
        items.append(_reply(item, nil, depth + 1))
        index += 1
    return resp.array(items)


def argument(value: object) -> bytes | None:
    """A ``redis.call`` argument as bytes (numbers as Lua prints them), else None."""
    if value.__class__ is bytes:
        return value
    if value.__class__ is int:
        return b"%d" % value
    if value.__class__ is float:
        return b"%.14g" % value
    return None
