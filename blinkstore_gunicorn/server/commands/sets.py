"""Set commands (Redis's t_set.c): SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SPOP,
SRANDMEMBER, SMOVE, SINTER, SUNION, SDIFF (and their STORE forms), SINTERCARD and SSCAN.

The data and its memory account are ``engine/sets.py``'s; this module parses, checks and
encodes. Whole-set replies are RESP3 sets (``~``) where Redis sends them, and are refused past
the client buffer limit, as MGET is.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine import EntryTooLarge, KeyTooLarge
from blinkstore_gunicorn.engine.pattern import compile_pattern
from blinkstore_gunicorn.engine.sets import Set, sadd, spop, srem, sstore
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    INT64_MAX,
    ONE,
    ZERO,
    limit_error,
    parse_int,
    parse_scan,
    reply_too_large,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_POSITIVE = resp.error("ERR value is out of range, must be positive")
ERR_COUNT_RANGE = resp.error(
    f"ERR value is out of range, value must between {-INT64_MAX} and {INT64_MAX}"
)
ERR_INVALID_CURSOR = resp.error("ERR invalid cursor")
ERR_NUMKEYS = resp.error("ERR numkeys should be greater than 0")
ERR_TOO_MANY_KEYS = resp.error("ERR Number of keys can't be greater than number of args")
ERR_NEGATIVE_LIMIT = resp.error("ERR LIMIT can't be negative")

_EMPTY: frozenset[bytes] = frozenset()


def _members(d: Dispatcher, key: bytes) -> Collection[bytes]:
    """The set's members for a read (empty when the key is absent)."""
    found = d.engine.lookup(key, Set)
    return _EMPTY if found is None else found.members


def _too_large(d: Dispatcher, members: Collection[bytes]) -> bytes | None:
    return reply_too_large(sum(map(len, members)), d.max_reply_size)


def _write(d: Dispatcher, write: Callable[[], int]) -> int | bytes:
    """Run a write; its result, or the error reply of a size limit it broke (no change)."""
    try:
        return write()
    except (EntryTooLarge, KeyTooLarge) as exc:
        return limit_error(exc)


def _checked(d: Dispatcher, members: list[bytes]) -> bytes | None:
    for member in members:
        error = d.fits(member, b"")
        if error is not None:
            return error
    return None


@command("sadd", -3, "write denyoom fast", (1, 1, 1))
def cmd_sadd(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SADD key member [member...]``: how many were added."""
    members = args[2:]
    error = _checked(d, members)
    if error is not None:
        return error
    added = _write(d, lambda: sadd(d.engine, args[1], members))
    return added if isinstance(added, bytes) else resp.integer(added)


@command("srem", -3, "write fast", (1, 1, 1))
def cmd_srem(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SREM key member [member...]``: how many were removed."""
    return resp.integer(srem(d.engine, args[1], args[2:]))


@command("smembers", 2, "readonly", (1, 1, 1))
def cmd_smembers(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SMEMBERS key``: a set in RESP3."""
    members = _members(d, args[1])
    return _too_large(d, members) or c.bulk_set(members)


@command("sismember", 3, "readonly fast", (1, 1, 1))
def cmd_sismember(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SISMEMBER key member``."""
    return ONE if args[2] in _members(d, args[1]) else ZERO


@command("smismember", -3, "readonly fast", (1, 1, 1))
def cmd_smismember(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SMISMEMBER key member [member...]``: 1 or 0 for each."""
    members = _members(d, args[1])
    return resp.array(ONE if member in members else ZERO for member in args[2:])


@command("scard", 2, "readonly fast", (1, 1, 1))
def cmd_scard(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SCARD key``."""
    return resp.integer(len(_members(d, args[1])))


@command("spop", -2, "write fast", (1, 1, 1))
def cmd_spop(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SPOP key [count]``: one member (or nil), or a set of up to ``count``."""
    if len(args) > 3:
        return ERR_SYNTAX
    if len(args) == 2:
        taken = spop(d.engine, args[1], 1)
        return resp.bulk(taken[0]) if taken else c.nil
    count = parse_int(args[2])
    if count is None or count < 0:
        return ERR_POSITIVE
    # Checked before popping, so that a refused reply loses no member: all of them when the
    # count takes them all (a partial pop's reply is at most that large too).
    members = _members(d, args[1])
    error = _too_large(d, members) if count >= len(members) else None
    return error or c.bulk_set(spop(d.engine, args[1], count))


@command("srandmember", -2, "readonly", (1, 1, 1))
def cmd_srandmember(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SRANDMEMBER key [count]``: distinct members for a positive count, members that may
    repeat for a negative one."""
    if len(args) > 3:
        return ERR_SYNTAX
    members = _members(d, args[1])
    if len(args) == 2:
        return resp.bulk(random.choice(list(members))) if members else c.nil
    count = parse_int(args[2])
    if count is None:
        return ERR_NOT_INT
    if count < -INT64_MAX:
        return ERR_COUNT_RANGE
    if count >= len(members):
        chosen = list(members)
    elif count >= 0:
        chosen = random.sample(list(members), count)
    else:
        chosen = random.choices(list(members), k=-count) if members else []
    return _too_large(d, chosen) or resp.bulk_array(chosen)


@command("smove", 4, "write fast", (1, 2, 1))
def cmd_smove(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SMOVE source destination member``: 1 when moved, 0 when not in ``source``."""
    source, destination, member = args[1], args[2], args[3]
    found = d.engine.lookup(source, Set)
    if found is None:
        return ZERO
    d.engine.lookup(destination, Set)  # WRONGTYPE before any change, as in Redis
    if member not in found.members:
        return ZERO
    if source == destination:
        return ONE
    added = _write(d, lambda: sadd(d.engine, destination, [member]))
    if isinstance(added, bytes):
        return added
    srem(d.engine, source, [member])
    return ONE


def _combine(d: Dispatcher, keys: list[bytes], how: str) -> set[bytes]:
    """The intersection, union or difference of the sets at ``keys`` (absent keys are empty;
    every key is type-checked first, so WRONGTYPE wins over an empty result)."""
    sets = [_members(d, key) for key in keys]
    if how == "inter":
        if not all(sets):
            return set()
        smallest = min(sets, key=len)
        return set(smallest).intersection(*sets)
    if how == "union":
        return set().union(*sets)
    return set(sets[0]).difference(*sets[1:])


def _combine_command(how: str, store: bool) -> Callable[[Dispatcher, Client, list[bytes]], bytes]:
    def handler(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
        if not store:
            result = _combine(d, args[1:], how)
            return _too_large(d, result) or c.bulk_set(result)
        result = _combine(d, args[2:], how)
        stored = _write(d, lambda: _store(d, args[1], result))
        return stored if isinstance(stored, bytes) else resp.integer(stored)

    return handler


def _store(d: Dispatcher, key: bytes, members: set[bytes]) -> int:
    sstore(d.engine, key, members)
    return len(members)


# SINTER/SUNION/SDIFF key [key...] and SINTERSTORE/SUNIONSTORE/SDIFFSTORE destination key...
for _how in ("inter", "union", "diff"):
    command(f"s{_how}", -2, "readonly", (1, -1, 1))(_combine_command(_how, store=False))
    command(f"s{_how}store", -3, "write denyoom", (1, -1, 1))(_combine_command(_how, store=True))


@command("sintercard", -3, "readonly", (2, -1, 1))
def cmd_sintercard(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SINTERCARD numkeys key [key...] [LIMIT limit]``: the intersection's size, counting
    at most ``limit`` (0: no limit)."""
    numkeys = parse_int(args[1])
    if numkeys is None or numkeys <= 0:
        return ERR_NUMKEYS
    if numkeys > len(args) - 2:
        return ERR_TOO_MANY_KEYS
    rest = args[2 + numkeys :]
    limit = 0
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"LIMIT":
            return ERR_SYNTAX
        number = parse_int(rest[1])
        if number is None or number < 0:
            return ERR_NEGATIVE_LIMIT
        limit = number
    size = len(_combine(d, args[2 : 2 + numkeys], "inter"))
    return resp.integer(min(size, limit) if limit else size)


@command("sscan", -3, "readonly", (1, 1, 1))
def cmd_sscan(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``SSCAN key cursor [MATCH pattern] [COUNT n]``: the whole set in one step (cursor 0),
    as Redis answers for a small set."""
    cursor = parse_int(args[2])
    if cursor is None or cursor < 0:
        return ERR_INVALID_CURSOR
    options = parse_scan(args, 3, with_type=False)
    if isinstance(options, bytes):
        return options
    members: Collection[bytes] = _members(d, args[1])
    if options.match is not None:
        matches = compile_pattern(options.match)
        members = [member for member in members if matches(member)]
    return _too_large(d, members) or resp.array([resp.bulk(b"0"), resp.bulk_array(members)])
