"""Pieces the sync and asyncio store backends share: command bytes, reply checks, INFO
parsing, connect errors and reconnect backoff. No I/O here."""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final

from blinkstore_gunicorn.client.errors import (
    CacheConnectionError,
    CacheResponseError,
    CacheTimeoutError,
)
from blinkstore_gunicorn.client.stampede import TIMED_OUT, Fetched
from blinkstore_gunicorn.protocol import ProtocolError, resp

__all__ = [
    "DELETE_IF_EQUAL",
    "FLUSHDB",
    "INFO",
    "PING",
    "UNSET",
    "Backoff",
    "Unset",
    "as_int",
    "as_values",
    "check",
    "cmd_get",
    "cmd_mset",
    "cmd_persist",
    "cmd_scan",
    "cmd_set",
    "connect_error",
    "fetched",
    "forget_in_forked_children",
    "grants_lease",
    "is_unknown_command",
    "lease_token",
    "parse_info",
    "scan_reply",
]

PING: Final = resp.encode_command("PING")
FLUSHDB: Final = resp.encode_command("FLUSHDB")
INFO: Final = resp.encode_command("INFO")

# Reconnect backoff: the first retry after a failed connect waits this long, doubling per
# consecutive failure up to the cap. Calls in between fail at once (no connect per request
# while the store is down), and the cap keeps recovery within half a second of the restart.
BACKOFF_FIRST: Final = 0.02
BACKOFF_CAP: Final = 0.5


def cmd_get(key: bytes) -> bytes:
    """``GET key``, hand-framed because it is the hottest path of all."""
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key)


def cmd_set(key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bytes:
    """``SET key value [PX ms] [NX|XX]``."""
    if px is None and not nx and not xx:
        return b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
            len(key),
            key,
            len(value),
            value,
        )
    args: list[resp.Arg] = ["SET", key, value]
    if px is not None:
        args += ["PX", px]
    if nx:
        args.append("NX")
    elif xx:
        args.append("XX")
    return resp.encode_command(*args)


def cmd_mset(items: Sequence[tuple[bytes, bytes]], px: int | None) -> list[bytes]:
    """One SET per pair, to pipeline (MSET has no TTL)."""
    return [cmd_set(key, value, px, False, False) for key, value in items]


def cmd_persist(key: bytes) -> list[bytes]:
    """PERSIST then EXISTS, to pipeline: PERSIST alone cannot say whether the key exists."""
    return [resp.encode_command("PERSIST", key), resp.encode_command("EXISTS", key)]


def cmd_scan(cursor: int, match: bytes, count: int) -> bytes:
    """One SCAN step."""
    return resp.encode_command("SCAN", cursor, "MATCH", match, "COUNT", count)


def check(reply: resp.Reply | ProtocolError) -> resp.Reply:
    """Raise :class:`CacheResponseError` for an error reply; return any other reply."""
    if isinstance(reply, resp.ErrorReply):
        raise CacheResponseError(reply.message)
    if isinstance(reply, ProtocolError):
        raise CacheResponseError(reply.message)
    return reply


def forget_in_forked_children(forget: Callable[[Any], None]) -> Callable[[Any], None]:
    """Return ``track(obj)``: in every child this process forks, ``forget(obj)`` runs for each
    tracked object still alive, so no connection made before a fork is used by two processes."""
    tracked: weakref.WeakSet[Any] = weakref.WeakSet()

    def in_child() -> None:
        for obj in list(tracked):
            forget(obj)

    os.register_at_fork(after_in_child=in_child)
    return tracked.add


class Unset:
    """Type of :data:`UNSET`: "no override" where None already means "no timeout"."""

    __slots__ = ()


UNSET: Final = Unset()


def fetched(reply: resp.Reply) -> Fetched:
    """A ``BS.FETCH`` reply: ``[HIT, value]``, ``[LEASE, token]`` or ``[TIMEOUT]``; for a
    lease, ``Fetched.lease`` holds the token (the backend wraps it)."""
    reply = check(reply)
    if isinstance(reply, list) and reply:
        kind = reply[0]
        if kind == b"HIT" and len(reply) == 2 and isinstance(reply[1], bytes):
            return Fetched("hit", reply[1])
        if kind == b"LEASE" and len(reply) == 2 and isinstance(reply[1], int):
            return Fetched("lease", lease=reply[1])
        if kind == b"TIMEOUT":
            return TIMED_OUT
    raise CacheResponseError(f"unexpected BS.FETCH reply {reply!r}")


def is_unknown_command(reply: resp.Reply) -> bool:
    """Whether the server does not know the command (a Redis/Valkey server, not the store)."""
    return isinstance(reply, resp.ErrorReply) and reply.message.startswith("ERR unknown command")


def grants_lease(reply: resp.Reply) -> bool:
    """Whether a BS.FETCH / BS.LEASE reply hands this connection a lease."""
    return isinstance(reply, int) or (isinstance(reply, list) and reply[:1] == [b"LEASE"])


#: Compare-and-delete, for releasing a stampede lock key only while it is still ours.
DELETE_IF_EQUAL: Final = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


def lease_token(reply: resp.Reply) -> int | None:
    """A ``BS.LEASE`` reply: the token, or None when someone else holds the lease."""
    reply = check(reply)
    if reply is None or isinstance(reply, int):
        return reply
    raise CacheResponseError(f"unexpected BS.LEASE reply {reply!r}")


def as_int(reply: resp.Reply) -> int:
    """An integer reply, or a clear error for anything else."""
    if isinstance(reply, int):
        return reply
    raise CacheResponseError(f"expected an integer reply, got {reply!r}")


def as_values(reply: resp.Reply) -> list[bytes | None]:
    """An array of bulk strings (MGET)."""
    if not isinstance(reply, list):
        raise CacheResponseError(f"expected an array reply, got {reply!r}")
    return [item if isinstance(item, bytes) else None for item in reply]


def scan_reply(reply: resp.Reply) -> tuple[int, list[bytes]]:
    """``[cursor, [keys...]]`` as (cursor, keys)."""
    if (
        isinstance(reply, list)
        and len(reply) == 2
        and isinstance(reply[0], bytes)
        and isinstance(reply[1], list)
    ):
        return int(reply[0]), [key for key in reply[1] if isinstance(key, bytes)]
    raise CacheResponseError(f"malformed SCAN reply {reply!r}")


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_info(reply: resp.Reply) -> dict[str, Any]:
    """INFO's ``key:value`` lines as a flat dict; numbers become int/float and keyspace lines
    (``db0:keys=1,expires=0``) become dicts, as redis-py does."""
    if not isinstance(reply, bytes):
        raise CacheResponseError(f"expected INFO text, got {reply!r}")
    info: dict[str, Any] = {}
    for line in reply.decode("utf-8", "replace").splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        if "=" in value:
            info[key] = {k: _number(v) for k, _, v in (p.partition("=") for p in value.split(","))}
        else:
            info[key] = _number(value)
    return info


def connect_error(display: str, exc: OSError, timeout: float | None) -> CacheConnectionError:
    """The exception for a failed connect, naming the store and the cause."""
    if isinstance(exc, TimeoutError):
        return CacheTimeoutError(f"connecting to the store at {display} timed out after {timeout}s")
    reason = exc.strerror or str(exc) or type(exc).__name__
    return CacheConnectionError(f"cannot connect to the store at {display}: {reason}")


class Backoff:
    """Reconnect pacing: after a failed connect, calls fail fast until the next attempt."""

    __slots__ = ("display", "failures", "retry_at")

    def __init__(self, display: str) -> None:
        self.display = display
        self.failures = 0
        self.retry_at = 0.0

    def check(self) -> None:
        """Raise at once while waiting for the next connect attempt."""
        if self.failures:
            wait = self.retry_at - time.monotonic()
            if wait > 0:
                raise CacheConnectionError(
                    f"the store at {self.display} is unreachable "
                    f"(next connect attempt in {wait:.2f}s)"
                )

    def failed(self) -> None:
        """Record a failed connect."""
        delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2**self.failures)
        self.failures += 1
        self.retry_at = time.monotonic() + delay

    def succeeded(self) -> None:
        """Record a successful connect."""
        self.failures = 0
