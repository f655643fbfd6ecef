"""``BS.*``: the store's single-flight commands (RESP only; see docs/stampede.md).

``BS.FETCH key [LEASE ms] [WAIT ms]``
    ``[HIT, value]`` when the key is there; else ``[LEASE, token]`` when nobody is computing
    it (the caller computes); else the request is parked until the value lands
    (``[HIT, value]``), the lease passes to this caller (``[LEASE, token]``) or ``WAIT`` ms
    pass (``[TIMEOUT]``). ``WAIT 0`` never parks.
``BS.LEASE key ms``
    The lease without looking at the value (refreshing a stale or soon-stale value): the
    token, or nil when another caller holds it.
``BS.FILL key token value [PX ms]``
    Store the value (waking every parked caller) and end the lease: 1 if ``token`` still held
    it, else 0 (the value is stored either way: it is a correct, newer value).
``BS.RELEASE key token``
    End the lease without a value (the loader failed): the first parked caller receives it.
    1 if ``token`` held it, else 0.

A lease also ends when its connection closes (a killed worker) or after its ``LEASE`` ms;
deadlines are checked by the store's 100 ms timer.
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

__all__ = ["DEFAULT_LEASE_MS", "DEFAULT_WAIT_MS"]

DEFAULT_LEASE_MS: Final = 10_000
DEFAULT_WAIT_MS: Final = 10_000

_HIT: Final = resp.bulk(b"HIT")
_LEASE: Final = resp.bulk(b"LEASE")
TIMEOUT_REPLY: Final = resp.array([resp.bulk(b"TIMEOUT")])


def hit_reply(value: bytes) -> bytes:
    """``[HIT, value]``."""
    return b"*2\r\n" + _HIT + resp.bulk(value)


def lease_reply(token: int) -> bytes:
    """``[LEASE, token]``."""
    return b"*2\r\n" + _LEASE + resp.integer(token)


class _ParkedFetch:
    """A ``BS.FETCH`` waiting in the store; answers its connection exactly once."""

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    def value_landed(self, value: bytes) -> None:
        self._client.deliver(hit_reply(value))

    def lease_granted(self, token: int) -> None:
        self._client.deliver(lease_reply(token))

    def timed_out(self) -> None:
        self._client.deliver(TIMEOUT_REPLY)


def _watch(d: Dispatcher, c: Client) -> None:
    """End ``c``'s leases and waits when its connection closes (registered once)."""
    leases = d.leases
    if leases.track(c):
        c.on_close.append(lambda: leases.owner_gone(c, d.clock_ms()))


def _milliseconds(raw: bytes, name: str, allow_zero: bool) -> int | bytes:
    number = parse_int(raw)
    if number is None:
        return ERR_NOT_INT
    if number < 0 or (number == 0 and not allow_zero):
        return invalid_expire(name)
    return number


@command("bs.fetch", -2, "write blocking noscript no_multi", (1, 1, 1))
def cmd_bs_fetch(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BS.FETCH key [LEASE ms] [WAIT ms]``."""
    key = args[1]
    lease_ms: int | bytes = DEFAULT_LEASE_MS
    wait_ms: int | bytes = DEFAULT_WAIT_MS
    options = args[2:]
    if len(options) % 2:
        return ERR_SYNTAX
    for name, raw in zip(options[::2], options[1::2], strict=True):
        option = name.upper()
        if option == b"LEASE":
            lease_ms = _milliseconds(raw, "bs.fetch", allow_zero=False)
        elif option == b"WAIT":
            wait_ms = _milliseconds(raw, "bs.fetch", allow_zero=True)
        else:
            return ERR_SYNTAX
    if isinstance(lease_ms, bytes):
        return lease_ms
    if isinstance(wait_ms, bytes):
        return wait_ms
    value = d.engine.get(key)
    if value is not None:
        return hit_reply(value)
    now = d.clock_ms()
    token = d.leases.try_acquire(key, c, lease_ms, now)
    if token is not None:
        _watch(d, c)
        return lease_reply(token)
    if wait_ms == 0:
        return TIMEOUT_REPLY
    d.leases.park(key, _ParkedFetch(c), owner=c, lease_ms=lease_ms, wait_ms=wait_ms, now_ms=now)
    _watch(d, c)
    return DEFERRED


@command("bs.lease", 3, "write fast", (1, 1, 1))
def cmd_bs_lease(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BS.LEASE key ms``: the token, or nil when another caller holds the lease."""
    lease_ms = _milliseconds(args[2], "bs.lease", allow_zero=False)
    if isinstance(lease_ms, bytes):
        return lease_ms
    token = d.leases.try_acquire(args[1], c, lease_ms, d.clock_ms())
    if token is None:
        return c.nil
    _watch(d, c)
    return resp.integer(token)


@command("bs.fill", -4, "write", (1, 1, 1))
def cmd_bs_fill(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BS.FILL key token value [PX ms]``: store, wake the waiters, end the lease."""
    key, raw_token, value = args[1], args[2], args[3]
    token = parse_int(raw_token)
    if token is None:
        return ERR_NOT_INT
    expire_at: int | None = None
    if len(args) == 6 and args[4].upper() == b"PX":
        when = d.deadline(b"PX", args[5], "bs.fill")
        if isinstance(when, bytes):
            return when
        expire_at = when
    elif len(args) != 4:
        return ERR_SYNTAX
    held = d.leases.token(key) == token
    error = d.store(key, value, expire_at)
    if error is not None:
        # The value could not be stored: hand the lease on rather than strand the waiters.
        if held:
            d.leases.release(key, token, d.clock_ms())
        return error
    return ONE if held else ZERO


@command("bs.release", 3, "write fast", (1, 1, 1))
def cmd_bs_release(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``BS.RELEASE key token``: end the lease without a value."""
    token = parse_int(args[2])
    if token is None:
        return ERR_NOT_INT
    return ONE if d.leases.release(args[1], token, d.clock_ms()) else ZERO
