"""DUMP and RESTORE (Redis's cluster.c): a key's value in Redis's DUMP format, and back.

The payload is ``storage/dump.py``'s (RDB value, version, CRC-64), so a payload moves keys
between redis-server and the store in both directions. RESTORE keeps nothing of IDLETIME and
FREQ but checks them as Redis does: the store keeps no access clock or frequency per key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.base import EngineError
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    limit_error,
    parse_int,
)
from blinkstore_gunicorn.storage import rdb
from blinkstore_gunicorn.storage.dump import ChecksumError, dump_payload, load_payload
from blinkstore_gunicorn.storage.encodings import FormatError
from blinkstore_gunicorn.storage.snapshot import add_record, record

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_BUSYKEY = b"-BUSYKEY Target key name already exists.\r\n"
ERR_PAYLOAD = resp.error("ERR DUMP payload version or checksum are wrong")
ERR_BAD_DATA = resp.error("ERR Bad data format")
ERR_TTL = resp.error("ERR Invalid TTL value, must be >= 0")
ERR_IDLETIME = resp.error("ERR Invalid IDLETIME value, must be >= 0")
ERR_FREQ = resp.error("ERR Invalid FREQ value, must be >= 0 and <= 255")


@command("dump", 2, "readonly random", (1, 1, 1))
def cmd_dump(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``DUMP key``: the key's value in Redis's DUMP format, nil when absent."""
    value = d.engine.value(args[1])
    if value is None:
        return c.nil
    return resp.bulk(dump_payload(record(args[1], value, None)))


def _options(args: list[bytes]) -> tuple[bool, bool] | bytes:
    """``REPLACE``, ``ABSTTL``, ``IDLETIME s``, ``FREQ f`` (not both of the last two), in
    Redis's order of checks: (replace, absttl) or an error reply."""
    replace = absttl = False
    idle = freq = False
    at = 4
    while at < len(args):
        word, more = args[at].upper(), at + 1 < len(args)
        if word == b"REPLACE":
            replace = True
        elif word == b"ABSTTL":
            absttl = True
        elif (
            word in (b"IDLETIME", b"FREQ") and more and not (freq if word == b"IDLETIME" else idle)
        ):
            number = parse_int(args[at + 1])
            if number is None:
                return ERR_NOT_INT
            if word == b"IDLETIME":
                if number < 0:
                    return ERR_IDLETIME
                idle = True
            else:
                if not 0 <= number <= 255:
                    return ERR_FREQ
                freq = True
            at += 1
        else:
            return ERR_SYNTAX
        at += 1
    return replace, absttl


@command("restore", -4, "write denyoom", (1, 1, 1))
def cmd_restore(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]``: the key from a
    DUMP payload; a bad payload changes nothing."""
    options = _options(args)
    if isinstance(options, bytes):
        return options
    replace, absttl = options
    key = args[1]
    if not replace and d.engine.contains(key):
        return ERR_BUSYKEY
    ttl = parse_int(args[2])
    if ttl is None:
        return ERR_NOT_INT
    if ttl < 0:
        return ERR_TTL
    try:
        kind, value = load_payload(args[3])
    except ChecksumError:
        return ERR_PAYLOAD
    except FormatError:
        return ERR_BAD_DATA
    if replace:
        d.engine.delete(key)
    deadline = None
    if ttl:
        deadline = ttl if absttl else ttl + d.clock_ms()
        if deadline <= d.clock_ms():
            return resp.OK  # already expired: the old value is gone, nothing is added
    try:
        add_record(d.engine, rdb.Record(key, kind, value, deadline))
    except EngineError as exc:
        return limit_error(exc)
    if d.blocked:  # a restored value serves callers parked on it, as a RENAME onto it does
        d.blocked.replaced(key)
    return resp.OK
