"""Time-to-live commands (Redis's expire.c): EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST,
TTL, PTTL, EXPIRETIME and PEXPIRETIME."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import Handler, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    INT64_MAX,
    INT64_MIN,
    ONE,
    ZERO,
    as_text,
    invalid_expire,
    parse_int,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []


def _expire(d: Dispatcher, args: list[bytes], name: str, scale: int, absolute: bool) -> bytes:
    amount = parse_int(args[2])
    if amount is None:
        return ERR_NOT_INT
    nx = xx = gt = lt = False
    for raw in args[3:]:
        option = raw.upper()
        if option == b"NX":
            nx = True
        elif option == b"XX":
            xx = True
        elif option == b"GT":
            gt = True
        elif option == b"LT":
            lt = True
        else:
            return resp.error(f"ERR Unsupported option {as_text(raw)}")
    if nx and (xx or gt or lt):
        return resp.error("ERR NX and XX, GT or LT options at the same time are not compatible")
    if gt and lt:
        return resp.error("ERR GT and LT options at the same time are not compatible")
    # Redis's bounds are C divisions, which round toward zero (Python's // floors).
    if scale != 1 and not -(-INT64_MIN // scale) <= amount <= INT64_MAX // scale:
        return invalid_expire(name)
    when = amount * scale
    if not absolute:
        when += d.clock_ms()
        if when > INT64_MAX:
            return invalid_expire(name)
    engine = d.engine
    try:
        current = engine.expire_at(args[1])
    except KeyError:
        return ZERO
    # A key without TTL counts as an infinite TTL for GT and LT, as in Redis.
    if (
        (nx and current is not None)
        or (xx and current is None)
        or (gt and (current is None or when <= current))
        or (lt and current is not None and when >= current)
    ):
        return ZERO
    return ONE if engine.set_expire_at(args[1], when) else ZERO


def _expire_command(name: str, scale: int, absolute: bool) -> Handler:
    def handler(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
        return _expire(d, args, name, scale, absolute)

    return handler


# EXPIRE key seconds, PEXPIRE key milliseconds, EXPIREAT key unix-seconds and
# PEXPIREAT key unix-milliseconds, each with [NX|XX|GT|LT]: one handler, four scales.
for _name, _scale, _absolute in (
    ("expire", 1000, False),
    ("pexpire", 1, False),
    ("expireat", 1000, True),
    ("pexpireat", 1, True),
):
    command(_name, -3, "write fast", (1, 1, 1))(_expire_command(_name, _scale, _absolute))


@command("persist", 2, "write fast", (1, 1, 1))
def cmd_persist(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PERSIST key``: 1 when a TTL was removed."""
    try:
        current = d.engine.expire_at(args[1])
    except KeyError:
        return ZERO
    if current is None:
        return ZERO
    d.engine.set_expire_at(args[1], None)
    return ONE


def _remaining_ms(d: Dispatcher, key: bytes, absolute: bool = False) -> int:
    """Milliseconds left (``absolute``: the deadline in Unix ms), -1 without TTL, -2 when the
    key is absent."""
    try:
        when = d.engine.expire_at(key)
    except KeyError:
        return -2
    if when is None:
        return -1
    return max(0, when if absolute else when - d.clock_ms())


@command("ttl", 2, "readonly fast", (1, 1, 1))
def cmd_ttl(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``TTL key`` in seconds, rounded to nearest like Redis."""
    return resp.integer(_seconds(_remaining_ms(d, args[1])))


def _seconds(ms: int) -> int:
    """Milliseconds rounded to the nearest second, as Redis does (-1 and -2 kept)."""
    return ms if ms < 0 else (ms + 500) // 1000


@command("pttl", 2, "readonly fast", (1, 1, 1))
def cmd_pttl(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PTTL key`` in milliseconds."""
    return resp.integer(_remaining_ms(d, args[1]))


@command("expiretime", 2, "readonly fast", (1, 1, 1))
def cmd_expiretime(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``EXPIRETIME key``: the deadline in Unix seconds (rounded as TTL), -1 or -2."""
    return resp.integer(_seconds(_remaining_ms(d, args[1], absolute=True)))


@command("pexpiretime", 2, "readonly fast", (1, 1, 1))
def cmd_pexpiretime(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PEXPIRETIME key``: the deadline in Unix milliseconds, -1 or -2."""
    return resp.integer(_remaining_ms(d, args[1], absolute=True))
