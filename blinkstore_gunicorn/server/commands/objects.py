"""Per-key introspection and replication stubs (Redis's object.c, replication.c): OBJECT
ENCODING/FREQ/IDLETIME/REFCOUNT/HELP, MEMORY USAGE/HELP, and WAIT.

``OBJECT ENCODING`` names the encoding Redis 7.0 would choose for the value as it is now, with
Redis's default thresholds (``hash-max-listpack-entries 512``, ``zset-max-listpack-entries
128``, ``*-max-listpack-value 64``...): the store keeps one representation per type, but
clients and tools branch on these names. Redis never converts back to the compact encoding and
makes strings changed in place ``raw``; the store judges from the current value only.
``OBJECT IDLETIME`` answers 0: SIEVE keeps one visited bit, not an access time. ``MEMORY
USAGE`` is the store's own account of the key (what it counts against the memory limit), not
Redis's allocator figure. ``WAIT`` answers 0: there are no replicas.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.hashes import Hash
from blinkstore_gunicorn.engine.sets import Set
from blinkstore_gunicorn.engine.zsets import ZSet
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    ZERO,
    as_text,
    help_reply,
    parse_int,
    unknown_subcommand,
    wrong_args,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.engine import Container
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_NO_LFU = resp.error(
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
    "that when switching between policies at runtime LRU and LFU data will take some time to "
    "adjust."
)
ERR_WAIT_TIMEOUT = resp.error("ERR timeout is not an integer or out of range")
ERR_WAIT_NEGATIVE = resp.error("ERR timeout is negative")

#: Redis 7.0's defaults: the largest compact hash and sorted set, their longest element, the
#: largest intset, and the longest string held with its object header (``embstr``).
MAX_HASH_LISTPACK_ENTRIES = 512
MAX_ZSET_LISTPACK_ENTRIES = 128
MAX_LISTPACK_VALUE = 64
MAX_INTSET_ENTRIES = 512
MAX_EMBSTR = 44
#: Redis's refcount of a shared object: the integers 0..9999 are shared.
SHARED_REFCOUNT = 2**31 - 1
SHARED_INTEGERS = 10_000

_OBJECT_HELP = (
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
)
#: Redis 7.0's ``MEMORY HELP``, the subcommands the store has.
_MEMORY_HELP = (
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
)


def _integer(raw: bytes) -> int | None:
    """The value as Redis's ``string2l`` reads it (``-0`` is no integer there)."""
    return None if raw == b"-0" else parse_int(raw)


def _compact(items: Iterable[bytes], size: int, most: int) -> bool:
    """Whether Redis keeps these ``size`` items in a listpack (``items`` read only then)."""
    return size <= most and all(len(item) <= MAX_LISTPACK_VALUE for item in items)


def encoding(value: bytes | Container) -> bytes:
    """The encoding Redis 7.0 would report for ``value`` (see the module's docstring)."""
    if isinstance(value, bytes):
        if _integer(value) is not None:
            return b"int"
        return b"embstr" if len(value) <= MAX_EMBSTR else b"raw"
    if isinstance(value, Hash):
        fields = value.fields
        compact = _compact(chain(fields, fields.values()), len(fields), MAX_HASH_LISTPACK_ENTRIES)
        return b"listpack" if compact else b"hashtable"
    if isinstance(value, ZSet):
        compact = _compact(value.scores, len(value), MAX_ZSET_LISTPACK_ENTRIES)
        return b"listpack" if compact else b"skiplist"
    if isinstance(value, Set):
        small = len(value.members) <= MAX_INTSET_ENTRIES
        integers = small and all(_integer(member) is not None for member in value.members)
        return b"intset" if integers else b"hashtable"
    return b"quicklist" if value.kind == b"list" else value.kind


def _refcount(value: bytes | Container) -> int:
    number = _integer(value) if isinstance(value, bytes) else None
    return SHARED_REFCOUNT if number is not None and 0 <= number < SHARED_INTEGERS else 1


@command("object", -2, "")
def cmd_object(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key``, ``OBJECT HELP``."""
    sub = args[1].upper()
    if sub == b"HELP":
        return help_reply(_OBJECT_HELP) if len(args) == 2 else wrong_args("object|help")
    if sub not in (b"ENCODING", b"FREQ", b"IDLETIME", b"REFCOUNT"):
        return unknown_subcommand(args)
    if len(args) != 3:
        return wrong_args(f"object|{as_text(args[1]).lower()}")
    value = d.engine.value(args[2])
    if value is None:
        return c.nil
    if sub == b"ENCODING":
        return resp.bulk(encoding(value))
    if sub == b"FREQ":
        return ERR_NO_LFU
    if sub == b"IDLETIME":
        return ZERO
    return resp.integer(_refcount(value))


@command("memory", -2, "")
def cmd_memory(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``MEMORY USAGE key [SAMPLES count]``: the bytes the key counts against the memory
    limit, or nil; ``MEMORY HELP``."""
    sub = args[1].upper()
    if sub == b"HELP":
        return help_reply(_MEMORY_HELP) if len(args) == 2 else wrong_args("memory|help")
    if sub != b"USAGE":
        return unknown_subcommand(args)
    if len(args) < 3:
        return wrong_args("memory|usage")
    rest = args[3:]
    while rest:
        if len(rest) < 2 or rest[0].upper() != b"SAMPLES":
            return ERR_SYNTAX
        samples = parse_int(rest[1])
        if samples is None:
            return ERR_NOT_INT
        if samples < 0:
            return ERR_SYNTAX
        rest = rest[2:]
    usage = d.engine.usage(args[2])
    return c.nil if usage is None else resp.integer(usage)


@command("wait", 3, "noscript")
def cmd_wait(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``WAIT numreplicas timeout``: 0 at once, the store has no replicas to wait for."""
    if parse_int(args[1]) is None:
        return ERR_NOT_INT
    timeout = parse_int(args[2])
    if timeout is None:
        return ERR_WAIT_TIMEOUT
    return ERR_WAIT_NEGATIVE if timeout < 0 else ZERO
