"""String commands (Redis's t_string.c): GET, SET and its variants, GETSET, GETDEL, GETEX, MGET,
MSET, MSETNX, the INCR/DECR family, INCRBYFLOAT, APPEND, STRLEN, GETRANGE (SUBSTR) and SETRANGE.

Every change goes through ``Dispatcher.store``, SET's write path: the shared-memory region,
WATCH, the memory account and eviction see it as they see a SET."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from blinkstore_gunicorn.engine import EngineError, ValueTooLarge, WrongType
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.floats import LongDouble, long_double
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NAN,
    ERR_NOT_FLOAT,
    ERR_NOT_INT,
    ERR_OVERFLOW,
    ERR_SYNTAX,
    INT64_MAX,
    INT64_MIN,
    ONE,
    ZERO,
    incremented,
    limit_error,
    parse_int,
    parse_long_double,
    reply_too_large,
    wrong_args,
)
from blinkstore_gunicorn.server.commands.shm import seen_at_once

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

_N = TypeVar("_N", int, LongDouble)  # INCR..., INCRBYFLOAT


@command("get", 2, "readonly fast", (1, 1, 1))
def cmd_get(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GET key``."""
    value = d.engine.get(args[1])
    return c.nil if value is None else resp.bulk(value)


_EXPIRE_UNITS = (b"EX", b"PX", b"EXAT", b"PXAT")


@command("set", -3, "write", (1, 1, 1))
def cmd_set(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms-ts|KEEPTTL]``."""
    key, value = args[1], args[2]
    if len(args) == 3:
        return d.store(key, value) or resp.OK
    nx = xx = get = keep_ttl = False
    unit = raw = b""
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"NX" and not xx:
            nx = True
        elif option == b"XX" and not nx:
            xx = True
        elif option == b"GET":
            get = True
        elif option == b"KEEPTTL" and not unit:
            keep_ttl = True
        elif option in _EXPIRE_UNITS and not unit and not keep_ttl and i + 1 < len(args):
            unit, raw = option, args[i + 1]
            i += 1
        else:
            return ERR_SYNTAX
        i += 1
    expire_at: int | None = None
    if unit:
        when = d.deadline(unit, raw, "set")
        if isinstance(when, bytes):
            return when
        expire_at = when
    old: bytes | None = None
    if get:
        old = d.engine.get(key)
        exists = old is not None
    else:
        exists = (nx or xx) and d.engine.contains(key)
    if (nx and exists) or (xx and not exists):
        return c.nil if old is None else resp.bulk(old)
    error = d.store(key, value, expire_at, keep_ttl)
    if error is not None:
        return error
    if get:
        return c.nil if old is None else resp.bulk(old)
    return resp.OK


@command("setnx", 3, "write fast", (1, 1, 1))
def cmd_setnx(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SETNX key value``: 1 when set, 0 when the key existed."""
    if d.engine.contains(args[1]):
        return ZERO
    return d.store(args[1], args[2]) or ONE


def _setex(d: Dispatcher, args: list[bytes], unit: bytes, name: str) -> bytes:
    when = d.deadline(unit, args[2], name)
    if isinstance(when, bytes):
        return when
    return d.store(args[1], args[3], when) or resp.OK


@command("setex", 4, "write", (1, 1, 1))
def cmd_setex(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SETEX key seconds value``."""
    return _setex(d, args, b"EX", "setex")


@command("psetex", 4, "write", (1, 1, 1))
def cmd_psetex(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PSETEX key milliseconds value``."""
    return _setex(d, args, b"PX", "psetex")


@command("getdel", 2, "write fast", (1, 1, 1))
def cmd_getdel(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GETDEL key``."""
    value = d.engine.get(args[1])
    if value is None:
        return c.nil
    d.engine.delete(args[1])
    return resp.bulk(value)


@command("getex", -2, "write fast", (1, 1, 1))
def cmd_getex(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GETEX key [EX s|PX ms|EXAT ts|PXAT ms-ts|PERSIST]``."""
    key = args[1]
    persist = False
    expire_at: int | None = None
    if len(args) == 3 and args[2].upper() == b"PERSIST":
        persist = True
    elif len(args) == 4 and args[2].upper() in _EXPIRE_UNITS:
        when = d.deadline(args[2].upper(), args[3], "getex")
        if isinstance(when, bytes):
            return when
        expire_at = when
    elif len(args) != 2:
        return ERR_SYNTAX
    value = d.engine.get(key)
    if value is None:
        return c.nil
    # PERSIST on a key without a TTL changes nothing (a WATCH on it stays intact)
    if expire_at is not None or (persist and d.engine.expire_at(key) is not None):
        d.engine.set_expire_at(key, expire_at)
    return resp.bulk(value)


@command("mget", -2, "readonly fast", (1, -1, 1))
def cmd_mget(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``MGET key [key...]``."""
    get = d.engine.get
    values: list[bytes | None] = []
    for key in args[1:]:
        try:
            values.append(get(key))
        except WrongType:  # MGET answers nil for a key of another type, as in Redis
            values.append(None)
    # The same large key named many times would build a reply of any size.
    size = sum(len(value) for value in values if value is not None)
    return reply_too_large(size, d.max_reply_size) or c.bulk_array(values)


def _pairs(d: Dispatcher, args: list[bytes], name: str) -> list[tuple[bytes, bytes]] | bytes:
    if len(args) % 2 == 0:
        return wrong_args(name)
    keys, values = args[1::2], args[2::2]
    pairs = list(zip(keys, values, strict=True))
    # All sizes at once (in C); only a request that breaks a limit looks for the first pair.
    if max(map(len, keys)) > d.max_key_size or max(map(len, values)) > d.max_value_size:
        for key, value in pairs:
            error = d.fits(key, value)
            if error is not None:
                return error
    return pairs


def _store_all(d: Dispatcher, pairs: list[tuple[bytes, bytes]]) -> bytes | None:
    """``Dispatcher.store`` of each pair, stopping at the first refusal (its error reply)."""
    write = d.write
    try:
        for key, value in pairs:
            write(key, value)
    except EngineError as exc:
        return limit_error(exc)
    return None


@command("mset", -3, "write", (1, -1, 2))
def cmd_mset(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``MSET key value [key value...]``."""
    pairs = _pairs(d, args, "mset")
    if isinstance(pairs, bytes):
        return pairs
    with seen_at_once(d):
        return _store_all(d, pairs) or resp.OK


@command("msetnx", -3, "write", (1, -1, 2))
def cmd_msetnx(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``MSETNX key value [key value...]``: 1 when all were set, 0 when any key existed."""
    pairs = _pairs(d, args, "msetnx")
    if isinstance(pairs, bytes):
        return pairs
    if any(d.engine.contains(key) for key, _ in pairs):
        return ZERO
    with seen_at_once(d):
        return _store_all(d, pairs) or ONE


def _number_at(
    d: Dispatcher, key: bytes, parse: Callable[[bytes], _N | None], zero: _N
) -> _N | None:
    """The key's value read by ``parse`` (``zero`` when absent); None when it is no number."""
    old = d.engine.peek(key)
    return zero if old is None else parse(old)


def _incr(d: Dispatcher, key: bytes, delta: int) -> bytes:
    current = _number_at(d, key, parse_int, 0)
    if current is None:
        return ERR_NOT_INT
    new = current + delta
    if new > INT64_MAX or new < INT64_MIN:
        return ERR_OVERFLOW
    return d.store(key, b"%d" % new, keep_ttl=True) or resp.integer(new)


@command("incr", 2, "write fast", (1, 1, 1))
def cmd_incr(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``INCR key``."""
    return _incr(d, args[1], 1)


@command("decr", 2, "write fast", (1, 1, 1))
def cmd_decr(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``DECR key``."""
    return _incr(d, args[1], -1)


@command("incrby", 3, "write fast", (1, 1, 1))
def cmd_incrby(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``INCRBY key increment``."""
    delta = parse_int(args[2])
    return ERR_NOT_INT if delta is None else _incr(d, args[1], delta)


@command("decrby", 3, "write fast", (1, 1, 1))
def cmd_decrby(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``DECRBY key decrement``."""
    delta = parse_int(args[2])
    if delta is None:
        return ERR_NOT_INT
    if delta == INT64_MIN:
        return resp.error("ERR decrement would overflow")
    return _incr(d, args[1], -delta)


@command("incrbyfloat", 3, "write fast", (1, 1, 1))
def cmd_incrbyfloat(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``INCRBYFLOAT key increment``, in long double precision as Redis computes it."""
    current = _number_at(d, args[1], parse_long_double, long_double(0))
    delta = parse_long_double(args[2])
    if current is None or delta is None:
        return ERR_NOT_FLOAT
    text = incremented(current, delta)
    if text is None:
        return ERR_NAN
    return d.store(args[1], text, keep_ttl=True) or resp.bulk(text)


@command("append", 3, "write fast", (1, 1, 1))
def cmd_append(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``APPEND key value``: the new length."""
    value = (d.engine.peek(args[1]) or b"") + args[2]
    return d.store(args[1], value, keep_ttl=True) or resp.integer(len(value))


@command("strlen", 2, "readonly fast", (1, 1, 1))
def cmd_strlen(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``STRLEN key``."""
    return resp.integer(len(d.engine.peek(args[1]) or b""))


@command("getset", 3, "write denyoom fast", (1, 1, 1))
def cmd_getset(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GETSET key value``: the old value (or nil); the key is set without TTL."""
    old = d.engine.get(args[1])
    error = d.store(args[1], args[2])
    if error is not None:
        return error
    return c.nil if old is None else resp.bulk(old)


def _getrange(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``GETRANGE key start end`` (and ``SUBSTR``): Redis's clamping, inclusive ``end``."""
    start, end = parse_int(args[2]), parse_int(args[3])
    if start is None or end is None:
        return ERR_NOT_INT
    value = d.engine.peek(args[1]) or b""
    if start < 0 and end < 0 and start > end:
        return resp.bulk(b"")
    size = len(value)
    start = max(start + size if start < 0 else start, 0)
    end = min(max(end + size if end < 0 else end, 0), size - 1)
    return resp.bulk(value[start : end + 1] if start <= end else b"")


command("getrange", 4, "readonly", (1, 1, 1))(_getrange)
command("substr", 4, "readonly", (1, 1, 1))(_getrange)

#: Redis's ``proto-max-bulk-len``: the longest string SETRANGE may make.
MAX_BULK = 512 * 1024 * 1024
ERR_OFFSET = resp.error("ERR offset is out of range")
ERR_STRING_SIZE = resp.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")


@command("setrange", 4, "write denyoom", (1, 1, 1))
def cmd_setrange(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SETRANGE key offset value``: overwrite from ``offset`` (zero-padded); the new length.
    The TTL is kept."""
    offset = parse_int(args[2])
    if offset is None:
        return ERR_NOT_INT
    if offset < 0:
        return ERR_OFFSET
    key, part = args[1], args[3]
    old = d.engine.peek(key)
    if not part:
        return resp.integer(len(old or b""))
    size = offset + len(part)
    if size > MAX_BULK:
        return ERR_STRING_SIZE
    if size > d.max_value_size:  # refused before the padded copy is built
        return limit_error(ValueTooLarge(size, d.max_value_size))
    value = (old or b"").ljust(offset, b"\0")
    value = value[:offset] + part + value[size:]
    return d.store(key, value, keep_ttl=True) or resp.integer(len(value))
