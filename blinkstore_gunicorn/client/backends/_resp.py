"""Pieces the sync and asyncio store backends share: their settings, command bytes, reply
checks, INFO parsing, connect and AUTH errors and resend rules (outages are ``_outage.py``'s).
No I/O here.

The two backends are not generated from one source, unlike the rest of the client (see
``scripts/unasync.py``): a blocking pool of connections and a pipelined multiplexer are two
designs, not one design in two flavours. What they repeat lives here instead."""

from __future__ import annotations

import os
import socket
import struct
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, cast

from blinkstore_gunicorn.client.backends._outage import Reconnect
from blinkstore_gunicorn.client.errors import (
    CacheConnectionError,
    CacheResponseError,
    CacheTimeoutError,
    error_reply,
)
from blinkstore_gunicorn.client.stampede import TIMED_OUT, Fetched
from blinkstore_gunicorn.client.url import CacheURL
from blinkstore_gunicorn.engine.ratelimit import GCRA_LUA, WINDOW_LUA
from blinkstore_gunicorn.protocol import ProtocolError, resp

__all__ = [
    "DELETE_IF_EQUAL",
    "EXTEND_IF_EQUAL",
    "FLUSHDB",
    "INFO",
    "LOCK_WAIT_SLACK",
    "PING",
    "UNSET",
    "Reconnect",
    "StoreSettings",
    "Unset",
    "as_int",
    "as_values",
    "auth_error",
    "check",
    "cmd_delete_if_equal",
    "cmd_extend_if_equal",
    "cmd_fetch",
    "cmd_fill",
    "cmd_get",
    "cmd_lease",
    "cmd_lock",
    "cmd_lockextend",
    "cmd_locktoken",
    "cmd_mset",
    "cmd_persist",
    "cmd_release",
    "cmd_scan",
    "cmd_set",
    "cmd_unlock",
    "connect_error",
    "fetched",
    "first_error",
    "forget_in_forked_children",
    "grants_lease",
    "is_unknown_command",
    "is_unknown_command_error",
    "lease_token",
    "lock_reply_timeout",
    "lock_token",
    "may_resend",
    "no_reply",
    "parked",
    "parse_info",
    "peer_pid",
    "scan_reply",
]

PING: Final = resp.encode_command("PING")
FLUSHDB: Final = resp.encode_command("FLUSHDB")
INFO: Final = resp.encode_command("INFO")

#: How often a request that must not run twice looks for a new store process when the
#: connection made after a break reaches the old one (which may be dying).
DYING_STORE_CHECKS: Final = 3
#: How many times one request is sent again after its connection broke (each time to a new
#: connection, or a new store process when it must not run twice): a store killed again while
#: it starts still costs no error, a store that keeps dying does.
RESENDS: Final = 3
_PEERCRED: Final = struct.Struct("3i")


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


def cmd_fetch(key: bytes, lease_ms: int, wait_ms: int) -> bytes:
    """``BS.FETCH``: the value, else a lease, else park up to ``wait_ms``."""
    return resp.encode_command("BS.FETCH", key, "LEASE", lease_ms, "WAIT", wait_ms)


def cmd_lease(key: bytes, lease_ms: int) -> bytes:
    """``BS.LEASE``: a lease if nobody holds one, without waiting."""
    return resp.encode_command("BS.LEASE", key, lease_ms)


def cmd_fill(key: bytes, token: int, value: bytes, px: int | None) -> bytes:
    """``BS.FILL``: store a leased key's value and end the lease."""
    ttl: tuple[str | int, ...] = ("PX", px) if px is not None else ()
    return resp.encode_command("BS.FILL", key, token, value, *ttl)


def cmd_release(key: bytes, token: int) -> bytes:
    """``BS.RELEASE``: end a lease without a value."""
    return resp.encode_command("BS.RELEASE", key, token)


def cmd_delete_if_equal(key: bytes, expected: bytes) -> bytes:
    """The compare-and-delete script (for Redis/Valkey servers, which have no BS.* leases)."""
    return resp.encode_command("EVAL", DELETE_IF_EQUAL, 1, key, expected)


def first_error(reader: resp.ReplyReader) -> resp.ErrorReply | None:
    """The first error reply among the complete replies in ``reader``, else None: what a store
    that refused a request said before it closed the connection."""
    while True:
        reply = reader.next_reply()
        if reply is resp.NEED_MORE or isinstance(reply, ProtocolError):
            return None
        if isinstance(reply, resp.ErrorReply):
            return reply


def check(reply: resp.Reply | ProtocolError) -> resp.Reply:
    """Raise :class:`CacheResponseError` for an error reply; return any other reply."""
    if isinstance(reply, resp.ErrorReply):
        raise error_reply(reply.message)
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


def no_reply(display: str, timeout: float | None) -> CacheTimeoutError:
    """The exception for a request left unanswered: from now on the store counts as down."""
    return CacheTimeoutError(
        f"no reply from the store at {display} within {timeout}s; it counts as down until it "
        "answers again"
    )


def auth_error(display: str, reply: resp.Reply) -> CacheConnectionError | None:
    """The exception for a refused AUTH, or None when it was accepted."""
    if isinstance(reply, resp.ErrorReply):
        return CacheConnectionError(
            f"authentication with the store at {display} failed: {reply.message}"
        )
    return None


class StoreSettings:
    """What both store backends hold besides their connections: the URL, timeouts, the
    AUTH command, the reconnect pacing and whether reads wait for a restarting store."""

    name = "store"

    def __init__(
        self, url: CacheURL, timeout: float | None, connect_timeout: float | None, reads_wait: bool
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._reads_wait = reads_wait
        self._reconnect = Reconnect(url.display, timeout)
        self._auth = resp.encode_command("AUTH", url.password) if url.password is not None else None

    @property
    def reachable(self) -> bool:
        """Whether no outage is known (a store that refuses or leaves requests unanswered)."""
        return self._reconnect.down_since is None


def peer_pid(sock: Any) -> int | None:
    """The pid of the process serving a connected Unix socket (None where unknown: TCP, or no
    ``SO_PEERCRED``). A different pid after a reconnect means the store process was replaced."""
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return None
    pid: int = _PEERCRED.unpack(creds)[0]
    return pid or None


def may_resend(idempotent: bool, old_peer: int | None, new_peer: int | None) -> bool:
    """Whether a request whose connection broke after it was sent may run again on a new
    connection: an idempotent one may; another (``INCRBY``...) only when the new connection
    reaches another store process, since the old one's data, and whatever the request did to
    it, died with it. Over TCP nobody can tell, so such a request is never sent twice."""
    return idempotent or (old_peer is not None and new_peer is not None and old_peer != new_peer)


def parked(payload: bytes) -> bytes:
    """``payload`` (a request the store may park: ``BS.FETCH``, a waiting ``BLINK.LOCK``)
    behind a ``PING``: its ``PONG`` comes at once from a store that is alive, so a store that
    does not answer is noticed within the client timeout, not after the park's longer one."""
    return PING + payload


# -- locks (BLINK.LOCK* commands, see docs/locks.md) ----------------------------------------

#: Compare-and-pexpire, for extending a lock key only while it is still ours: ``ARGV[2]`` ms
#: more, or from now when ``ARGV[3]`` is ``1``.
EXTEND_IF_EQUAL: Final = (
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if ARGV[3] == '1' then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
    "local left = redis.call('PTTL', KEYS[1]) "
    "if left < 0 then return 1 end "
    "return redis.call('PEXPIRE', KEYS[1], left + ARGV[2])"
)


def cmd_lock(name: bytes, px: int | None, wait_ms: int | None) -> bytes:
    """``BLINK.LOCK``: ``wait_ms`` 0 does not wait, None waits without limit (``BLOCK 0``)."""
    options: list[str | int] = []
    if px is not None:
        options += ["PX", px]
    if wait_ms != 0:
        options += ["BLOCK", wait_ms or 0]
    return resp.encode_command("BLINK.LOCK", name, *options)


def cmd_unlock(name: bytes, token: bytes) -> bytes:
    """``BLINK.UNLOCK``."""
    return resp.encode_command("BLINK.UNLOCK", name, token)


def cmd_lockextend(name: bytes, token: bytes, ms: int, replace: bool) -> bytes:
    """``BLINK.LOCKEXTEND`` (``REPLACE``: ``ms`` from now)."""
    return resp.encode_command("BLINK.LOCKEXTEND", name, token, ms, *(["REPLACE"] * replace))


def cmd_locktoken(name: bytes) -> bytes:
    """``BLINK.LOCKTOKEN``."""
    return resp.encode_command("BLINK.LOCKTOKEN", name)


def cmd_extend_if_equal(key: bytes, expected: bytes, ms: int, replace: bool) -> bytes:
    """The compare-and-pexpire script (for Redis/Valkey servers, which have no BLINK.*)."""
    return resp.encode_command("EVAL", EXTEND_IF_EQUAL, 1, key, expected, ms, int(replace))


#: The store ends waits on its 100 ms timer, so a wait's "no" may come that much late.
LOCK_WAIT_SLACK: Final = 0.1


def lock_reply_timeout(timeout: float | None, wait_ms: int | None) -> float | None:
    """How long a ``BLINK.LOCK`` reply may take: the client timeout plus the wait and its
    slack (None: the wait has no limit, so neither has the reply)."""
    if wait_ms is None or timeout is None:
        return None
    return timeout + wait_ms / 1000 + LOCK_WAIT_SLACK


def is_unknown_command_error(exc: CacheResponseError) -> bool:
    """:func:`is_unknown_command` for a reply that was raised."""
    return str(exc).startswith("ERR unknown command")


def lock_token(reply: resp.Reply) -> bytes | None:
    """A ``BLINK.LOCK`` / ``BLINK.LOCKTOKEN`` reply: the token as bytes, or None."""
    reply = check(reply)
    if reply is None:
        return None
    if isinstance(reply, int):
        return b"%d" % reply
    raise CacheResponseError(f"unexpected lock reply {reply!r}")


# -- pub/sub -----------------------------------------------------------------------------------

#: A message as the backends hand it over: (channel, payload, pattern or None).
RawMessage = tuple[bytes, bytes, bytes | None]


def cmd_publish(channel: bytes, message: bytes) -> bytes:
    """PUBLISH."""
    return resp.encode_command(b"PUBLISH", channel, message)


def cmd_subscribe(channels: Sequence[bytes], patterns: Sequence[bytes]) -> tuple[bytes, int]:
    """SUBSCRIBE and/or PSUBSCRIBE in one write, and how many confirmations they bring."""
    payload = b""
    if channels:
        payload += resp.encode_command(b"SUBSCRIBE", *channels)
    if patterns:
        payload += resp.encode_command(b"PSUBSCRIBE", *patterns)
    return payload, len(channels) + len(patterns)


def replies(reader: resp.ReplyReader, data: bytes) -> Iterator[resp.Reply]:
    """Feed ``data`` to ``reader``; every reply it completes (a malformed one raises)."""
    reader.feed(data)
    while True:
        reply = reader.next_reply()
        if reply is resp.NEED_MORE:
            return
        if isinstance(reply, ProtocolError):
            raise CacheResponseError(f"malformed reply from the store: {reply.message}")
        yield cast(resp.Reply, reply)


def pubsub_message(reply: resp.Reply) -> RawMessage | None:
    """The message in a subscribed connection's ``reply``; None for a confirmation (RESP2
    ``[subscribe, channel, count]`` and the like). An error reply raises."""
    if type(reply) is resp.ErrorReply:
        raise CacheResponseError(reply.message)
    if not isinstance(reply, list) or not reply:
        raise CacheResponseError(f"unexpected reply on a subscribed connection: {reply!r}")
    parts = [part for part in reply if isinstance(part, bytes)]
    kind = reply[0]
    if kind == b"message" and len(parts) == len(reply) == 3:
        return parts[1], parts[2], None
    if kind == b"pmessage" and len(parts) == len(reply) == 4:
        return parts[2], parts[3], parts[1]
    return None


# -- rate limits (docs/rate-limits.md) -------------------------------------------------------


def cmd_rate_limit(key: bytes, limit: int, period_ms: int, cost: int) -> tuple[bytes, bytes]:
    """``BLINK.RATELIMIT``, and the same by script for a Redis/Valkey server."""
    return (
        resp.encode_command("BLINK.RATELIMIT", key, limit, period_ms, cost),
        resp.encode_command("EVAL", GCRA_LUA, 1, key, limit, period_ms, cost),
    )


def cmd_incr_window(key: bytes, period_ms: int, delta: int) -> tuple[bytes, bytes]:
    """``BLINK.WINDOW``, and the same by script for a Redis/Valkey server."""
    return (
        resp.encode_command("BLINK.WINDOW", key, period_ms, delta),
        resp.encode_command("EVAL", WINDOW_LUA, 1, key, period_ms, delta),
    )


def rate_limit_reply(reply: Any) -> tuple[bool, int, int, int]:
    """``[allowed, remaining, reset_ms, retry_after_ms]`` (store or script)."""
    if isinstance(reply, list) and len(reply) == 4 and all(isinstance(n, int) for n in reply):
        return bool(reply[0]), reply[1], reply[2], reply[3]
    raise CacheResponseError(f"unexpected BLINK.RATELIMIT reply {reply!r}")
