"""Keyspace commands (Redis's db.c): DEL, UNLINK, EXISTS, TYPE, SCAN, KEYS, DBSIZE, FLUSHDB,
FLUSHALL and SELECT (there is one database)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine import EngineError
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_PATTERN_TOO_LONG,
    ERR_SYNTAX,
    MAX_PATTERN,
    parse_int,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_DB_RANGE = resp.error("ERR DB index is out of range")
ERR_INVALID_CURSOR = resp.error("ERR invalid cursor")


def _delete(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    delete = d.engine.delete
    return resp.integer(sum(1 for key in args[1:] if delete(key)))


command("del", -2, "write", (1, -1, 1))(_delete)
command("unlink", -2, "write fast", (1, -1, 1))(_delete)


@command("exists", -2, "readonly fast", (1, -1, 1))
def cmd_exists(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``EXISTS key [key...]``: repeated keys count each time, as in Redis."""
    contains = d.engine.contains
    return resp.integer(sum(1 for key in args[1:] if contains(key)))


@command("type", 2, "readonly fast", (1, 1, 1))
def cmd_type(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``TYPE key``: every value is a string."""
    return b"+string\r\n" if d.engine.contains(args[1]) else b"+none\r\n"


@command("scan", -2, "readonly")
def cmd_scan(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SCAN cursor [MATCH pattern] [COUNT n] [TYPE string]``."""
    cursor = parse_int(args[1])
    if cursor is None or cursor < 0:
        return ERR_INVALID_CURSOR
    match: bytes | None = None
    count = 10
    only_strings = True
    i = 2
    while i < len(args):
        option = args[i].upper()
        if i + 1 >= len(args):
            return ERR_SYNTAX
        if option == b"MATCH":
            match = args[i + 1]
            if len(match) > MAX_PATTERN:
                return ERR_PATTERN_TOO_LONG
        elif option == b"COUNT":
            number = parse_int(args[i + 1])
            if number is None:
                return ERR_NOT_INT
            if number < 1:
                return ERR_SYNTAX
            count = number
        elif option == b"TYPE":
            only_strings = args[i + 1].lower() == b"string"
        else:
            return ERR_SYNTAX
        i += 2
    try:
        next_cursor, keys = d.engine.scan(cursor, count, match)
    except EngineError:
        return ERR_INVALID_CURSOR
    if not only_strings:
        keys = []
    return resp.array([resp.bulk(b"%d" % next_cursor), resp.bulk_array(keys)])


@command("keys", 2, "readonly")
def cmd_keys(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``KEYS pattern``: one full scan step over the current keys."""
    if len(args[1]) > MAX_PATTERN:
        return ERR_PATTERN_TOO_LONG
    pattern = None if args[1] == b"*" else args[1]
    _, keys = d.engine.scan(0, len(d.engine) + 1, pattern)
    return resp.bulk_array(keys)


@command("dbsize", 1, "readonly fast")
def cmd_dbsize(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``DBSIZE``."""
    return resp.integer(len(d.engine))


def _flush(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        return ERR_SYNTAX
    d.engine.flush()
    return resp.OK


command("flushdb", -1, "write")(_flush)
command("flushall", -1, "write")(_flush)


@command("select", 2, "fast")
def cmd_select(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SELECT 0``: there is one database."""
    index = parse_int(args[1])
    if index is None:
        return ERR_NOT_INT
    return resp.OK if index == 0 else ERR_DB_RANGE
