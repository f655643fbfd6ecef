"""``BLINK.LOCK*``: host-wide locks held by connections (RESP only; see docs/locks.md).

``BLINK.LOCK name [PX ms] [BLOCK ms]``
    The lock's token (an integer) when nobody holds it; else, with ``BLOCK``, the request is
    parked until the lock passes to this caller (the token) or ``BLOCK`` ms pass (nil);
    ``BLOCK 0`` waits without limit, and without ``BLOCK`` the reply is nil at once. Waiters
    are served in arrival order. ``PX`` is how long the lock lasts unless extended; without
    it, the lock lasts until released or until its holder's connection closes. The holder
    asking again gets nil (a lock is not re-entrant, and it would wait for itself).
``BLINK.UNLOCK name token``
    1 if ``token`` held the lock (released: the first parked caller gets it), else 0.
``BLINK.LOCKEXTEND name token ms [REPLACE]``
    1 if ``token`` holds the lock and its timeout was moved ``ms`` later (``REPLACE``: set to
    ``ms`` from now), else 0.
``BLINK.LOCKTOKEN name``
    The holder's token, or nil when the lock is free.

Lock names are not keys: ``GET``, ``KEYS`` and ``FLUSHALL`` neither see nor touch them. A lock
also ends when its holder's connection closes (a killed worker); deadlines are checked by the
store's 100 ms timer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import DEFERRED, command
from blinkstore_gunicorn.server.commands.replies import (
    ERR_NOT_INT,
    ERR_SYNTAX,
    ONE,
    ZERO,
    invalid_expire,
    parse_int,
)

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_NEGATIVE_TIMEOUT: Final = resp.error("ERR timeout is negative")


class _ParkedLock:
    """A ``BLINK.LOCK ... BLOCK`` waiting in the store; answers its connection exactly once."""

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    def lease_granted(self, token: int) -> None:
        self._client.deliver(resp.integer(token))

    def timed_out(self) -> None:
        self._client.deliver(self._client.nil)


def _parse_lock_options(args: list[bytes]) -> tuple[int | None, int | None] | bytes:
    """``(px, block)`` from ``[PX ms] [BLOCK ms]`` (None where absent), or an error reply."""
    px: int | None = None
    block: int | None = None
    options = args[2:]
    if len(options) % 2:
        return ERR_SYNTAX
    for name, raw in zip(options[::2], options[1::2], strict=True):
        option = name.upper()
        number = parse_int(raw)
        if option not in (b"PX", b"BLOCK"):
            return ERR_SYNTAX
        if number is None:
            return ERR_NOT_INT
        if option == b"PX":
            if number <= 0:
                return invalid_expire("blink.lock")
            px = number
        else:
            if number < 0:
                return ERR_NEGATIVE_TIMEOUT
            block = number
    return px, block


@command("blink.lock", -2, "write blocking noscript no_multi", (1, 1, 1))
def cmd_blink_lock(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BLINK.LOCK name [PX ms] [BLOCK ms]``: the token, nil, or parked until one of them."""
    options = _parse_lock_options(args)
    if isinstance(options, bytes):
        return options
    px, block = options
    name = args[1]
    locks = d.locks
    now = d.clock_ms()
    token = locks.try_acquire(name, c, px, now)
    if token is not None:
        locks.watch(c, c.on_close, d.clock_ms)
        return resp.integer(token)
    if block is None or locks.holder(name) is c:
        return c.nil
    locks.park(name, _ParkedLock(c), owner=c, lease_ms=px, wait_ms=block or None, now_ms=now)
    locks.watch(c, c.on_close, d.clock_ms)
    return DEFERRED


@command("blink.unlock", 3, "write fast", (1, 1, 1))
def cmd_blink_unlock(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BLINK.UNLOCK name token``: release the lock if ``token`` holds it."""
    token = parse_int(args[2])
    if token is None:
        return ERR_NOT_INT
    return ONE if d.locks.release(args[1], token, d.clock_ms()) else ZERO


@command("blink.lockextend", -4, "write fast", (1, 1, 1))
def cmd_blink_lockextend(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BLINK.LOCKEXTEND name token ms [REPLACE]``: more time for the holder of ``token``."""
    token = parse_int(args[2])
    ms = parse_int(args[3])
    if token is None or ms is None:
        return ERR_NOT_INT
    if len(args) > 5 or (len(args) == 5 and args[4].upper() != b"REPLACE"):
        return ERR_SYNTAX
    if ms <= 0:
        return invalid_expire("blink.lockextend")
    held = d.locks.extend(args[1], token, ms, d.clock_ms(), replace=len(args) == 5)
    return ONE if held else ZERO


@command("blink.locktoken", 2, "readonly fast", (1, 1, 1))
def cmd_blink_locktoken(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BLINK.LOCKTOKEN name``: the holder's token, or nil when the lock is free."""
    token = d.locks.token(args[1])
    return c.nil if token is None else resp.integer(token)
