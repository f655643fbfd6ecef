"""Keyspace commands (Redis's db.c): DEL, UNLINK, EXISTS, TOUCH, TYPE, RENAME, RENAMENX, COPY,
SCAN, KEYS, RANDOMKEY, DBSIZE, FLUSHDB, FLUSHALL and SELECT (there is one database). Each works
on keys of any type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine import EngineError, EntryTooLarge, KeyTooLarge
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_PATTERN_TOO_LONG,
    ERR_SYNTAX,
    MAX_PATTERN,
    ONE,
    ZERO,
    limit_error,
    parse_int,
    parse_scan,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_DB_RANGE = resp.error("ERR DB index is out of range")
ERR_INVALID_CURSOR = resp.error("ERR invalid cursor")
ERR_NO_SUCH_KEY = resp.error("ERR no such key")
ERR_SAME_OBJECT = resp.error("ERR source and destination objects are the same")


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


@command("touch", -2, "readonly fast", (1, -1, 1))
def cmd_touch(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``TOUCH key [key...]``: how many exist; each is marked recently used."""
    touch = d.engine.touch
    return resp.integer(sum(1 for key in args[1:] if touch(key)))


@command("randomkey", 1, "readonly")
def cmd_randomkey(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``RANDOMKEY``: a key drawn at random, or nil when there is none."""
    key = d.engine.random_key()
    return c.nil if key is None else resp.bulk(key)


@command("type", 2, "readonly fast", (1, 1, 1))
def cmd_type(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``TYPE key``: ``string``, ``hash``, ``list``, ``set``, or ``none`` when absent."""
    return b"+%b\r\n" % (d.engine.kind(args[1]) or b"none")


def _landed(d: Dispatcher, key: bytes) -> None:
    """A value moved or copied into ``key`` serves the callers parked on it (a BLPOP on the
    destination of a RENAME), as Redis signals every key a value is added under."""
    if d.blocked:
        d.blocked.replaced(key)


def _rename(d: Dispatcher, args: list[bytes], nx: bool) -> bytes:
    key, new = args[1], args[2]
    engine = d.engine
    if not engine.contains(key):
        return ERR_NO_SUCH_KEY
    if key == new:
        return ZERO if nx else resp.OK
    if nx and engine.contains(new):
        return ZERO
    try:
        engine.rename(key, new)
    except KeyTooLarge as exc:
        return limit_error(exc)
    _landed(d, new)
    return ONE if nx else resp.OK


@command("rename", 3, "write", (1, 2, 1))
def cmd_rename(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``RENAME key newkey``: the value and its TTL move, replacing what ``newkey`` held."""
    return _rename(d, args, nx=False)


@command("renamenx", 3, "write fast", (1, 2, 1))
def cmd_renamenx(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``RENAMENX key newkey``: 1 when renamed, 0 when ``newkey`` exists."""
    return _rename(d, args, nx=True)


@command("copy", -3, "write denyoom", (1, 2, 1))
def cmd_copy(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``COPY source destination [DB 0] [REPLACE]``: 1 when copied, 0 when the source is
    missing or the destination exists (without ``REPLACE``)."""
    replace = False
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"REPLACE":
            replace = True
        elif option == b"DB" and i + 1 < len(args):
            index = parse_int(args[i + 1])
            if index is None:
                return ERR_NOT_INT
            if index != 0:
                return ERR_DB_RANGE
            i += 1
        else:
            return ERR_SYNTAX
        i += 1
    key, new = args[1], args[2]
    if key == new:
        return ERR_SAME_OBJECT
    if not d.engine.contains(key) or (not replace and d.engine.contains(new)):
        return ZERO
    try:
        d.engine.copy(key, new)
    except (EntryTooLarge, KeyTooLarge) as exc:
        return limit_error(exc)
    _landed(d, new)
    return ONE


@command("scan", -2, "readonly")
def cmd_scan(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SCAN cursor [MATCH pattern] [COUNT n] [TYPE string]``."""
    cursor = parse_int(args[1])
    if cursor is None or cursor < 0:
        return ERR_INVALID_CURSOR
    options = parse_scan(args, 2, with_type=True)
    if isinstance(options, bytes):
        return options
    try:
        next_cursor, keys = d.engine.scan(cursor, options.count, options.match)
    except EngineError:
        return ERR_INVALID_CURSOR
    if options.kind is not None:
        keys = [key for key in keys if d.engine.kind(key) == options.kind]
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
