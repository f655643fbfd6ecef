"""Redis's conversion rules between RESP replies and Lua values, both ways.

RESP -> Lua (what ``redis.call`` returns): integer -> number, bulk -> string, null -> false,
array -> table, status -> ``{ok=...}``, error -> ``{err=...}``.

Lua -> RESP (what a script returns): number -> integer (truncated), string -> bulk, true -> 1,
false and nil -> null, ``{err=...}`` -> error, ``{ok=...}`` -> status, any other table ->
array of its items from 1 up to the first nil. Functions and other values become null. That
direction is written in Lua (``encode`` in ``sandbox.py``), so that a returned table is
converted without a Python<->Lua crossing per item; this module gives it its limits.
"""

from __future__ import annotations

from typing import Any, Final

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.protocol.resp import ErrorReply, Reply

__all__ = ["ERR_DEPTH", "MAX_DEPTH", "argument", "to_lua"]

#: Nesting limit of a returned table (a table may contain itself).
MAX_DEPTH: Final = 128
#: The reply to a returned table nested deeper than :data:`MAX_DEPTH`.
ERR_DEPTH: Final = resp.error("ERR reached lua stack limit")


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


def argument(value: object) -> bytes | None:
    """A ``redis.call`` argument as bytes (numbers as Lua prints them), else None."""
    if value.__class__ is bytes:
        return value
    if value.__class__ is int:
        return b"%d" % value
    if value.__class__ is float:
        return b"%.14g" % value
    return None
