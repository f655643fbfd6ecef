"""Hash commands (Redis's t_hash.c): HSET, HSETNX, HMSET, HGET, HMGET, HGETALL, HDEL, HLEN,
HEXISTS, HKEYS, HVALS, HSTRLEN, HINCRBY, HINCRBYFLOAT, HRANDFIELD and HSCAN.

The data and its memory account are ``engine/hashes.py``'s; this module parses, checks and
encodes. A reply gathering a whole hash is refused past the client buffer limit, as MGET is.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine import EntryTooLarge, KeyTooLarge
from blinkstore_gunicorn.engine.hashes import Hash, hdel, hset
from blinkstore_gunicorn.engine.pattern import compile_pattern
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.floats import long_double
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
    parse_scan,
    reply_too_large,
    wrong_args,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_HASH_NOT_INT = resp.error("ERR hash value is not an integer")
ERR_HASH_NOT_FLOAT = resp.error("ERR hash value is not a float")
ERR_RANGE = resp.error("ERR value is out of range")
ERR_COUNT_RANGE = resp.error(
    f"ERR value is out of range, value must between {-INT64_MAX} and {INT64_MAX}"
)
ERR_INCR_NAN = resp.error("ERR value is NaN or Infinity")
ERR_INVALID_CURSOR = resp.error("ERR invalid cursor")


def _fields(d: Dispatcher, key: bytes) -> dict[bytes, bytes]:
    """The hash's fields for a read (empty when the key is absent)."""
    found = d.engine.lookup(key, Hash)
    return {} if found is None else found.fields


def _set(
    d: Dispatcher, key: bytes, pairs: list[tuple[bytes, bytes]], only_new: bool
) -> int | bytes:
    """Write the pairs; the number of new fields, or an error reply (nothing written)."""
    for field, value in pairs:
        error = d.fits(field, value)
        if error is not None:
            return error
    try:
        return hset(d.engine, key, pairs, only_new=only_new)
    except (EntryTooLarge, KeyTooLarge) as exc:
        return limit_error(exc)


def _pairs(args: list[bytes], name: str) -> list[tuple[bytes, bytes]] | bytes:
    if len(args) % 2:
        return wrong_args(name)
    return list(zip(args[2::2], args[3::2], strict=True))


@command("hset", -4, "write denyoom fast", (1, 1, 1))
def cmd_hset(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HSET key field value [field value...]``: the number of fields added."""
    pairs = _pairs(args, "hset")
    if isinstance(pairs, bytes):
        return pairs
    added = _set(d, args[1], pairs, only_new=False)
    return added if isinstance(added, bytes) else resp.integer(added)


@command("hmset", -4, "write denyoom fast", (1, 1, 1))
def cmd_hmset(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HMSET key field value [field value...]`` (deprecated alias of HSET): OK."""
    pairs = _pairs(args, "hmset")
    if isinstance(pairs, bytes):
        return pairs
    added = _set(d, args[1], pairs, only_new=False)
    return added if isinstance(added, bytes) else resp.OK


@command("hsetnx", 4, "write denyoom fast", (1, 1, 1))
def cmd_hsetnx(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HSETNX key field value``: 1 when set, 0 when the field existed."""
    added = _set(d, args[1], [(args[2], args[3])], only_new=True)
    return added if isinstance(added, bytes) else resp.integer(added)


@command("hget", 3, "readonly fast", (1, 1, 1))
def cmd_hget(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HGET key field``."""
    value = _fields(d, args[1]).get(args[2])
    return c.nil if value is None else resp.bulk(value)


@command("hmget", -3, "readonly fast", (1, 1, 1))
def cmd_hmget(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HMGET key field [field...]``: nil for each field not set."""
    fields = _fields(d, args[1])
    values = [fields.get(field) for field in args[2:]]
    size = sum(len(value) for value in values if value is not None)
    return reply_too_large(size, d.max_reply_size) or c.bulk_array(values)


def _whole(d: Dispatcher, fields: dict[bytes, bytes], keys: bool, values: bool) -> bytes | None:
    size = 0
    if keys:
        size += sum(map(len, fields))
    if values:
        size += sum(map(len, fields.values()))
    return reply_too_large(size, d.max_reply_size)


@command("hgetall", 2, "readonly", (1, 1, 1))
def cmd_hgetall(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HGETALL key``: a map in RESP3, field/value pairs in one array in RESP2."""
    fields = _fields(d, args[1])
    return _whole(d, fields, True, True) or c.map(
        [(resp.bulk(field), resp.bulk(value)) for field, value in fields.items()]
    )


@command("hkeys", 2, "readonly", (1, 1, 1))
def cmd_hkeys(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HKEYS key``."""
    fields = _fields(d, args[1])
    return _whole(d, fields, True, False) or resp.bulk_array(fields)


@command("hvals", 2, "readonly", (1, 1, 1))
def cmd_hvals(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HVALS key``."""
    fields = _fields(d, args[1])
    return _whole(d, fields, False, True) or resp.bulk_array(fields.values())


@command("hdel", -3, "write fast", (1, 1, 1))
def cmd_hdel(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HDEL key field [field...]``: how many fields were removed."""
    return resp.integer(hdel(d.engine, args[1], args[2:]))


@command("hlen", 2, "readonly fast", (1, 1, 1))
def cmd_hlen(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HLEN key``."""
    return resp.integer(len(_fields(d, args[1])))


@command("hexists", 3, "readonly fast", (1, 1, 1))
def cmd_hexists(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HEXISTS key field``."""
    return ONE if args[2] in _fields(d, args[1]) else ZERO


@command("hstrlen", 3, "readonly fast", (1, 1, 1))
def cmd_hstrlen(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HSTRLEN key field``: 0 when absent."""
    return resp.integer(len(_fields(d, args[1]).get(args[2], b"")))


@command("hincrby", 4, "write denyoom fast", (1, 1, 1))
def cmd_hincrby(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HINCRBY key field increment``: the new value."""
    delta = parse_int(args[3])
    if delta is None:
        return ERR_NOT_INT
    old = _fields(d, args[1]).get(args[2])
    current = 0 if old is None else parse_int(old)
    if current is None:
        return ERR_HASH_NOT_INT
    new = current + delta
    if not INT64_MIN <= new <= INT64_MAX:
        return ERR_OVERFLOW
    added = _set(d, args[1], [(args[2], b"%d" % new)], only_new=False)
    return added if isinstance(added, bytes) else resp.integer(new)


@command("hincrbyfloat", 4, "write denyoom fast", (1, 1, 1))
def cmd_hincrbyfloat(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HINCRBYFLOAT key field increment``: the new value, as text (long double, as Redis)."""
    delta = parse_long_double(args[3])
    if delta is None:
        return ERR_NOT_FLOAT
    if isinstance(delta, float):  # an infinity
        return ERR_INCR_NAN
    old = _fields(d, args[1]).get(args[2])
    current = long_double(0) if old is None else parse_long_double(old)
    if current is None:
        return ERR_HASH_NOT_FLOAT
    text = incremented(current, delta)
    if text is None:
        return ERR_NAN
    added = _set(d, args[1], [(args[2], text)], only_new=False)
    return added if isinstance(added, bytes) else resp.bulk(text)


@command("hrandfield", -2, "readonly", (1, 1, 1))
def cmd_hrandfield(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HRANDFIELD key [count [WITHVALUES]]``: distinct fields for a positive count, fields
    that may repeat for a negative one."""
    if len(args) == 2:
        fields = _fields(d, args[1])
        return resp.bulk(random.choice(list(fields))) if fields else c.nil
    count = parse_int(args[2])
    if count is None:
        return ERR_NOT_INT
    if count < -INT64_MAX:
        return ERR_COUNT_RANGE
    if len(args) > 4 or (len(args) == 4 and args[3].upper() != b"WITHVALUES"):
        return ERR_SYNTAX
    with_values = len(args) == 4
    if with_values and count < -(INT64_MAX // 2):
        return ERR_RANGE
    fields = _fields(d, args[1])
    names = list(fields)
    if count >= 0:
        chosen = names if count >= len(names) else random.sample(names, count)
    else:
        chosen = random.choices(names, k=-count) if names else []
    size = sum(len(name) + (len(fields[name]) if with_values else 0) for name in chosen)
    error = reply_too_large(size, d.max_reply_size)
    if error is not None:
        return error
    if not with_values:
        return resp.bulk_array(chosen)
    if c.resp3:
        return resp.array(resp.bulk_array((name, fields[name])) for name in chosen)
    return resp.bulk_array(item for name in chosen for item in (name, fields[name]))


@command("hscan", -3, "readonly", (1, 1, 1))
def cmd_hscan(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``HSCAN key cursor [MATCH pattern] [COUNT n]``: the whole hash in one step (cursor 0),
    as Redis answers for a small hash; a hash too large for one reply gets the buffer error."""
    cursor = parse_int(args[2])
    if cursor is None or cursor < 0:
        return ERR_INVALID_CURSOR
    options = parse_scan(args, 3, with_type=False)
    if isinstance(options, bytes):
        return options
    fields = _fields(d, args[1])
    if options.match is not None:
        matches = compile_pattern(options.match)
        fields = {name: value for name, value in fields.items() if matches(name)}
    error = _whole(d, fields, True, True)
    if error is not None:
        return error
    flat = [item for pair in fields.items() for item in pair]
    return resp.array([resp.bulk(b"0"), resp.bulk_array(flat)])
