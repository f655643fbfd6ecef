"""The Blink store over RESP, blocking: a small thread-safe pool of plain sockets.

Why this shape:

* One request per connection at a time, connections taken from a pool (``list.pop`` /
  ``list.append`` are atomic under the GIL, so no lock on the hot path): threads never queue
  behind one socket, and a gthread worker with 8 threads uses at most 8 connections.
* Only stdlib sockets, so gevent's monkeypatching makes the same code cooperative.
* Fork safety: ``os.register_at_fork`` empties every pool in the child, so a connection made
  before a fork (gunicorn ``preload_app``) is never used by two processes.
* A store restart (the supervisor needs ~150 ms) is waited for, not reported: connects are
  retried at a short fixed pace within the client timeout (see ``_outage.Reconnect``), for
  reads too unless the cache serves misses during outages (``wait_on_reads=False``).
* One deadline per call, the client timeout: connecting, waiting for a restart, the reply and
  any resend all come out of it. A store that leaves a request unanswered that long (stopped,
  stuck) is down: calls fail at once until it answers a probe (see ``_probe``).
* A connection that breaks under a request (the store was killed) drops every idle one and
  runs the request once more on a fresh connection when that is safe: it surely did not run,
  it is idempotent, or the fresh connection reaches another store process (``may_resend``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from blinkstore_gunicorn.client._leases_sync import LockKeyLeases, SyncLease
from blinkstore_gunicorn.client._locks_sync import KeyLocks, LockHold
from blinkstore_gunicorn.client.backends import _outage, _resp
from blinkstore_gunicorn.client.backends.store_ratelimit import StoreRateLimits
from blinkstore_gunicorn.client.backends.store_socket import (
    Broken,
    Closed,
    Connection,
    Probe,
    StoreFeed,
    StoreLease,
    StoreLock,
)
from blinkstore_gunicorn.client.errors import (
    CacheConnectionError,
    CacheResponseError,
    CacheTimeoutError,
    error_reply,
)
from blinkstore_gunicorn.client.stampede import Fetched
from blinkstore_gunicorn.client.url import CacheURL
from blinkstore_gunicorn.protocol import resp

__all__ = ["StoreBackend"]


class StoreBackend(_resp.StoreSettings, StoreRateLimits):
    """Blocking RESP backend for ``unix://`` and ``tcp://`` URLs."""

    def __init__(
        self,
        url: CacheURL,
        *,
        timeout: float | None,
        connect_timeout: float | None,
        max_idle: int = 8,
        wait_on_reads: bool = True,
    ) -> None:
        super().__init__(url, timeout, connect_timeout, wait_on_reads)
        self._max_idle = max_idle
        self._idle: list[Connection] = []
        self._lock_keys: LockKeyLeases | None = None
        self._probing = threading.Lock()
        _track_for_fork(self)

    # -- connections -----------------------------------------------------------------------

    def _connect(self, wait: bool, until: float) -> Connection:
        """A new connection for a call that ends at ``until``; with ``wait``, a restarting
        store is waited for (see module)."""
        reconnect = self._reconnect
        deadline = until if wait else None
        while True:
            if reconnect.unanswered:
                self._probe(until)
            delay = reconnect.wait_time(deadline)
            if delay:
                time.sleep(delay)
            conn = self._attempt(until)
            if conn is not None:
                return conn

    def _dial(self, until: float) -> Connection | None:
        """One connect; None when nobody listens (recorded for pacing)."""
        url = self.url
        sock: socket.socket | None = None
        connect_timeout = _outage.step_timeout(self._connect_timeout, until)
        try:
            if url.unix_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(connect_timeout)
                sock.connect(url.unix_path)
            else:
                assert url.host is not None and url.port is not None
                sock = socket.create_connection((url.host, url.port), connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self._timeout)
        except OSError as exc:
            if sock is not None:
                sock.close()
            self._reconnect.failed(_resp.connect_error(url.display, exc, connect_timeout))
            return None
        return Connection(sock)

    def _attempt(self, until: float) -> Connection | None:
        """One connect (and AUTH); None when nobody listens (recorded for pacing)."""
        conn = self._dial(until)
        if conn is None:
            return None
        if self._auth is not None:
            url = self.url
            try:
                conn.sock.settimeout(_outage.step_timeout(self._timeout, until))
                conn.sock.sendall(self._auth)
                reply = conn.read_reply()
                conn.sock.settimeout(self._timeout)
            except TimeoutError as exc:
                conn.close()
                raise self._io_error(exc) from None
            except (OSError, Closed) as exc:
                conn.close()
                raise CacheConnectionError(
                    f"the store at {url.display} dropped the connection during AUTH: {exc}"
                ) from None
            error = _resp.auth_error(url.display, reply)
            if error is not None:
                conn.close()
                raise error
        self._reconnect.succeeded()
        return conn

    def _probe(self, until: float) -> None:
        """Return once a store that left a request unanswered answers again, else raise the
        outage's error at once. The question is a PING on a connection of its own, sent
        without waiting for the reply; the calls that come by read what arrived, and send
        a new probe when this one's connection fails."""
        reconnect = self._reconnect
        if not self._probing.acquire(blocking=False):
            raise reconnect.error()  # another thread is looking at the probe
        try:
            probe: Probe | None = reconnect.probe
            if probe is not None:
                heard = probe.heard()
                if heard:
                    probe.conn.close()
                    reconnect.answered()
                    return
                if heard is None:
                    raise reconnect.error()
                probe.conn.close()
                reconnect.probe = None
            if reconnect.probe_due():
                conn = self._dial(until)
                if conn is None:
                    return  # now it refuses connections: the caller's connect loop decides
                payload = (self._auth or b"") + _resp.PING
                try:
                    conn.sock.sendall(payload)
                    conn.sock.settimeout(0.0)
                except OSError:
                    conn.close()
                else:
                    reconnect.probing(Probe(conn, 2 if self._auth else 1))
            raise reconnect.error()
        finally:
            self._probing.release()

    def _unanswered(self, error: CacheTimeoutError) -> None:
        """A request went unanswered for the client timeout: the store is down until it
        answers a probe, and the idle connections to it would only wait as long."""
        self._reconnect.timed_out(error)
        self._drop_idle()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _forget(self) -> None:
        # The fork hook: close() only releases this process's descriptor (no shutdown), so a
        # parent keeps using its sockets undisturbed. A thread that held the probe's lock did
        # not survive the fork: the child gets a lock of its own.
        self._drop_idle()
        self._reconnect.probe = None
        self._probing = threading.Lock()

    def close(self) -> None:
        """Close idle connections and the probe (busy ones close when returned)."""
        self._drop_idle()
        probe: Probe | None = self._reconnect.probe
        if probe is not None:
            self._reconnect.probe = None
            probe.conn.close()

    # -- requests --------------------------------------------------------------------------

    def _request(
        self, payload: bytes, replies: int = 1, idempotent: bool = True, wait: bool = True
    ) -> Any:
        """Send ``payload`` (``replies`` pipelined commands); return the reply (or the list of
        replies when ``replies > 1``). Error replies raise after the connection is returned."""
        result, conn = self._round_trip(payload, replies, idempotent, wait=wait)
        self._checkin(conn)
        if replies == 1:
            if type(result) is resp.ErrorReply:
                raise error_reply(result.message)
        else:
            for reply in result:
                _resp.check(reply)
        return result

    def _read(self, payload: bytes) -> Any:
        """A request that only reads: it waits for a restarting store only if reads do."""
        return self._request(payload, wait=self._reads_wait)

    def _round_trip(
        self,
        payload: bytes,
        replies: int = 1,
        idempotent: bool = True,
        park: float | _resp.Unset | None = _resp.UNSET,
        wait: bool = True,
    ) -> tuple[Any, Connection]:
        """Send ``payload`` on a pooled connection and read ``replies`` replies; the caller
        owns the connection afterwards (``_checkin`` gives it back). With ``park``, the last
        reply may take that long once the others came (``_resp.parked``: the store parks a
        ``BS.FETCH``); everything else shares the client timeout."""
        until = _outage.deadline(self._timeout)
        # A pooled connection's own timeout is the call's; anything later gets what is left.
        budget: float | _resp.Unset | None = _resp.UNSET
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._connect(wait, until)
            budget = _outage.step_timeout(self._timeout, until)
        resends = 0
        while True:
            try:
                return self._exchange(conn, payload, replies, budget, park), conn
            except Broken as broken:
                if not broken.may_run_again or resends == _resp.RESENDS:
                    raise self._io_error(broken.cause) from None
                resends += 1
                # A store restart kills every idle connection at once.
                self._drop_idle()
                fresh = self._connect(wait, until)
                if broken.sent:
                    fresh = self._past_a_dying_store(conn.peer, fresh, idempotent, wait, until)
                    if not _resp.may_resend(idempotent, conn.peer, fresh.peer):
                        self._checkin(fresh)
                        raise self._io_error(broken.cause) from None
                conn = fresh
                budget = _outage.step_timeout(self._timeout, until)

    def _past_a_dying_store(
        self, old_peer: int | None, fresh: Connection, idempotent: bool, wait: bool, until: float
    ) -> Connection:
        """``fresh``, or a newer connection when ``fresh`` reached the same store process as
        the broken one and that process turns out to be dying (a killed process can accept a
        connection while its sockets are being closed)."""
        for _ in range(_resp.DYING_STORE_CHECKS):
            if _resp.may_resend(idempotent, old_peer, fresh.peer) or fresh.peer is None:
                break
            budget = _outage.step_timeout(self._timeout, until)
            try:
                self._exchange(fresh, _resp.PING, 1, budget, _resp.UNSET)
            except Broken:
                fresh = self._connect(wait, until)
            else:
                break
        return fresh

    def _exchange(
        self,
        conn: Connection,
        payload: bytes,
        replies: int,
        budget: float | _resp.Unset | None,
        park: float | _resp.Unset | None,
    ) -> Any:
        """One request on ``conn`` whose replies come within ``budget`` (unset: the socket's
        own timeout), the last within ``park`` if set; a connection failure closes ``conn``
        and raises :class:`Broken`."""
        sent = False
        sock = conn.sock
        try:
            if not isinstance(budget, _resp.Unset):
                sock.settimeout(budget)
            sock.sendall(payload)
            sent = True
            if replies == 1:
                result: Any = conn.read_reply()
            else:
                result = [conn.read_reply() for _ in range(replies - 1)]
                if not isinstance(park, _resp.Unset):
                    sock.settimeout(park)
                result.append(conn.read_reply())
            if not (isinstance(budget, _resp.Unset) and isinstance(park, _resp.Unset)):
                sock.settimeout(self._timeout)
        except (OSError, Closed) as exc:
            if not sent and isinstance(exc, BrokenPipeError | ConnectionResetError):
                conn.raise_refusal()  # the store refused it while it was still being sent
            conn.close()
            raise Broken(exc, sent) from None
        except BaseException:
            # Interrupted mid-request (KeyboardInterrupt, gevent.Timeout...): the reply may
            # still arrive on this socket, so it must never serve another request.
            conn.close()
            raise
        return result

    def _checkin(self, conn: Connection) -> None:
        idle = self._idle  # read again: a fork or a restart may have replaced the list
        if len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()

    def _io_error(self, exc: BaseException) -> CacheConnectionError:
        display = self.url.display
        if isinstance(exc, TimeoutError):
            error = _resp.no_reply(display, self._timeout)
            self._unanswered(error)
            return error
        if isinstance(exc, Closed):
            return CacheConnectionError(f"the store at {display} closed the connection")
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return CacheConnectionError(f"lost the connection to the store at {display}: {reason}")

    # -- operations ------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """GET."""
        reply: bytes | None = self._read(_resp.cmd_get(key))
        return reply

    def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """MGET."""
        return _resp.as_values(self._read(resp.encode_command("MGET", *keys)))

    def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool:
        """SET [PX] [NX|XX]."""
        return bool(self._request(_resp.cmd_set(key, value, px, nx, xx)) == "OK")

    def mset(self, items: Sequence[tuple[bytes, bytes]], px: int | None) -> None:
        """Pipelined SETs."""
        self._request(b"".join(_resp.cmd_mset(items, px)), len(items))

    def delete(self, keys: Sequence[bytes]) -> int:
        """DEL."""
        return _resp.as_int(self._request(resp.encode_command("DEL", *keys)))

    def exists(self, key: bytes) -> bool:
        """EXISTS."""
        return _resp.as_int(self._read(resp.encode_command("EXISTS", key))) > 0

    def incrby(self, key: bytes, delta: int) -> int:
        """INCRBY (sent twice only to a new store process, see ``may_resend``)."""
        payload = resp.encode_command("INCRBY", key, delta)
        return _resp.as_int(self._request(payload, idempotent=False))

    def pexpire(self, key: bytes, px: int | None) -> bool:
        """PEXPIRE, or PERSIST + EXISTS."""
        if px is None:
            replies = self._request(b"".join(_resp.cmd_persist(key)), 2)
            return _resp.as_int(replies[1]) > 0
        return _resp.as_int(self._request(resp.encode_command("PEXPIRE", key, px))) > 0

    def pttl(self, key: bytes) -> int:
        """PTTL."""
        return _resp.as_int(self._read(resp.encode_command("PTTL", key)))

    def scan_iter(self, match: bytes, count: int) -> Iterator[bytes]:
        """SCAN until the cursor comes back 0."""
        cursor = 0
        while True:
            cursor, keys = _resp.scan_reply(self._read(_resp.cmd_scan(cursor, match, count)))
            yield from keys
            if cursor == 0:
                return

    def flushdb(self) -> None:
        """FLUSHDB."""
        self._request(_resp.FLUSHDB)

    def ping(self) -> None:
        """PING."""
        self._read(_resp.PING)

    def info(self) -> dict[str, Any]:
        """INFO, parsed."""
        return _resp.parse_info(self._read(_resp.INFO))

    # -- single-flight leases (BS.* commands, see docs/stampede.md) -----------------------

    def fetch(self, key: bytes, lease_ms: int, wait_ms: int) -> Fetched:
        """BS.FETCH: the value, else the lease, else park in the store up to ``wait_ms``."""
        if self._lock_keys is not None:
            return self._lock_keys.fetch(key, lease_ms, wait_ms)
        payload = _resp.parked(_resp.cmd_fetch(key, lease_ms, wait_ms))
        park = None if self._timeout is None else self._timeout + wait_ms / 1000
        replies, conn = self._round_trip(
            payload, 2, idempotent=False, park=park, wait=self._reads_wait
        )
        reply = replies[1]
        self._checkin_unless_lease(conn, reply)
        if _resp.is_unknown_command(reply):
            return self._without_native_leases().fetch(key, lease_ms, wait_ms)
        outcome = _resp.fetched(reply)
        if outcome.kind != "lease":
            return outcome
        # The lease lives as long as this connection: it stays ours until fill/release.
        return Fetched("lease", lease=StoreLease(self, conn, key, outcome.lease))

    def try_lease(self, key: bytes, lease_ms: int) -> SyncLease | None:
        """BS.LEASE: the lease if nobody holds it, without waiting."""
        if self._lock_keys is not None:
            return self._lock_keys.try_lease(key, lease_ms)
        reply, conn = self._round_trip(_resp.cmd_lease(key, lease_ms), idempotent=False, wait=False)
        self._checkin_unless_lease(conn, reply)
        if _resp.is_unknown_command(reply):
            return self._without_native_leases().try_lease(key, lease_ms)
        token = _resp.lease_token(reply)
        return None if token is None else StoreLease(self, conn, key, token)

    def _checkin_unless_lease(self, conn: Connection, reply: Any) -> None:
        if not _resp.grants_lease(reply):
            self._checkin(conn)

    def _without_native_leases(self) -> LockKeyLeases:
        # A Redis/Valkey server behind a unix:// or tcp:// URL has no BS.* commands.
        self._lock_keys = LockKeyLeases(self)
        return self._lock_keys

    def delete_if_equal(self, key: bytes, expected: bytes) -> bool:
        """Compare-and-delete by script (only used against Redis/Valkey servers)."""
        reply = self._request(_resp.cmd_delete_if_equal(key, expected), idempotent=False)
        return _resp.as_int(reply) > 0

    # -- locks (BLINK.LOCK* commands, see docs/locks.md) -----------------------------------

    #: Lock keys, once the server turned out to be Redis/Valkey (no BLINK.* commands).
    _key_locks: KeyLocks | None = None

    def lock(self, name: bytes, px: int | None, wait_ms: int | None) -> LockHold | None:
        """BLINK.LOCK: the lock, held on its own connection until it is released, or None
        when it stays taken for ``wait_ms`` (0: no wait; None: no limit)."""
        if self._key_locks is not None:
            return self._key_locks.lock(name, px, wait_ms)
        payload = _resp.cmd_lock(name, px, wait_ms)
        if wait_ms == 0:
            reply, conn = self._round_trip(payload, idempotent=False)
        else:
            park = _resp.lock_reply_timeout(self._timeout, wait_ms)
            replies, conn = self._round_trip(_resp.parked(payload), 2, False, park)
            reply = replies[1]
        if not isinstance(reply, int):
            self._checkin(conn)
        if _resp.is_unknown_command(reply):
            self._key_locks = KeyLocks(self)
            return self._key_locks.lock(name, px, wait_ms)
        token = _resp.lock_token(reply)
        return None if token is None else StoreLock(self, conn, name, token)

    def lock_token(self, name: bytes) -> bytes | None:
        """BLINK.LOCKTOKEN: the holder's token, or None when the lock is free."""
        if self._key_locks is None:
            try:
                return _resp.lock_token(self._request(_resp.cmd_locktoken(name)))
            except CacheResponseError as exc:
                if not _resp.is_unknown_command_error(exc):
                    raise
                self._key_locks = KeyLocks(self)
        return self._key_locks.lock_token(name)

    def extend_if_equal(self, key: bytes, expected: bytes, ms: int, replace: bool) -> bool:
        """Compare-and-pexpire by script (only used against Redis/Valkey servers)."""
        payload = _resp.cmd_extend_if_equal(key, expected, ms, replace)
        return _resp.as_int(self._request(payload, idempotent=False)) > 0

    # -- pub/sub --

    def publish(self, channel: bytes, message: bytes) -> int:
        """PUBLISH (never sent twice: a lost connection may have delivered it)."""
        return _resp.as_int(self._request(_resp.cmd_publish(channel, message), idempotent=False))

    def subscribe(self, channels: Sequence[bytes], patterns: Sequence[bytes]) -> StoreFeed:
        """SUBSCRIBE / PSUBSCRIBE on a connection of its own; returns once confirmed."""
        payload, confirmations = _resp.cmd_subscribe(channels, patterns)
        conn = self._connect(True, _outage.deadline(self._timeout))
        feed = StoreFeed(self, conn)
        try:
            conn.sock.sendall(payload)
            while confirmations:
                message = _resp.pubsub_message(conn.read_reply())
                if message is None:
                    confirmations -= 1
                else:  # published between two of the confirmations
                    feed.early.append(message)
        except (OSError, Closed) as exc:
            conn.close()
            raise self._io_error(exc) from None
        except BaseException:
            conn.close()
            raise
        return feed


#: ``StoreBackend`` objects whose connections a forked child must drop, not share.
_track_for_fork = _resp.forget_in_forked_children(StoreBackend._forget)
