"""The blocking store backend's connections (``store.py``): one socket with its reply reader,
the failures a request can meet on it, the probe of a store that stopped answering, and what
keeps a connection out of the pool (a lease, a lock, a subscription)."""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from typing import TYPE_CHECKING, Final

from blinkstore_gunicorn.client.backends import _resp
from blinkstore_gunicorn.client.errors import CacheResponseError, error_reply
from blinkstore_gunicorn.protocol import ProtocolError, resp

if TYPE_CHECKING:
    from blinkstore_gunicorn.client.backends.store import StoreBackend

__all__ = [
    "RECV_SIZE",
    "Broken",
    "Closed",
    "Connection",
    "Probe",
    "StoreFeed",
    "StoreLease",
    "StoreLock",
]

RECV_SIZE: Final = 256 * 1024
_NEED_MORE: Final = resp.NEED_MORE


class Closed(Exception):
    """The store closed the connection; ``got_data`` says whether part of a reply came."""

    def __init__(self, got_data: bool) -> None:
        super().__init__("connection closed by the store")
        self.got_data = got_data


class Connection:
    """One socket, its reply parser, and the pid of the store process it reaches."""

    __slots__ = ("peer", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = resp.ReplyReader()
        self.peer = _resp.peer_pid(sock)

    def read_reply(self) -> resp.Reply:
        reader = self.reader
        got_data = False
        while True:
            reply = reader.next_reply()
            if reply is _NEED_MORE:
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    raise Closed(got_data)
                got_data = True
                reader.feed(data)
                continue
            if isinstance(reply, ProtocolError):
                raise CacheResponseError(f"malformed reply from the store: {reply.message}")
            return reply  # type: ignore[return-value]

    def raise_refusal(self) -> None:
        """After a send failed on a closed socket: raise the error reply the store sent first."""
        with contextlib.suppress(OSError):
            self.sock.setblocking(False)  # the peer is gone: take what came, never wait
            while data := self.sock.recv(RECV_SIZE):
                self.reader.feed(data)
        if (refusal := _resp.first_error(self.reader)) is not None:
            self.close()
            raise error_reply(refusal.message)  # answered, so never resent

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Broken(Exception):
    """A request's connection failed; ``sent`` says whether the request reached the socket."""

    def __init__(self, cause: BaseException, sent: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.sent = sent

    @property
    def may_run_again(self) -> bool:
        """Whether the request may be sent again, given the right new connection (a timeout
        never: the store may still be working on it; a partial reply neither)."""
        if isinstance(self.cause, TimeoutError):
            return False
        if not self.sent:
            return True
        if isinstance(self.cause, Closed):
            return not self.cause.got_data
        return isinstance(self.cause, ConnectionResetError | BrokenPipeError)


class Probe:
    """A ``PING`` (behind AUTH when there is a password) sent to a store that stopped
    answering, on a non-blocking connection of its own, and how many replies are due."""

    __slots__ = ("conn", "due")

    def __init__(self, conn: Connection, due: int) -> None:
        self.conn = conn
        self.due = due

    def heard(self) -> bool | None:
        """True once every reply came, False if the connection failed, None meanwhile."""
        try:
            data = self.conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return None
        except OSError:
            return False
        if not data:
            return False
        self.due -= sum(1 for _ in _resp.replies(self.conn.reader, data))
        return True if self.due <= 0 else None


class StoreLease:
    """A lease granted on ``conn``; the connection is kept out of the pool until it ends,
    so the store ends the lease by itself if this process dies."""

    __slots__ = ("_backend", "_conn", "_key", "_token")

    def __init__(self, backend: StoreBackend, conn: Connection, key: bytes, token: int) -> None:
        self._backend, self._conn, self._key, self._token = backend, conn, key, token

    def _finish(self, payload: bytes) -> None:
        conn = self._conn
        try:
            conn.sock.sendall(payload)
            reply = conn.read_reply()
        except (OSError, Closed) as exc:
            conn.close()
            raise self._backend._io_error(exc) from None
        except BaseException:
            conn.close()
            raise
        self._backend._checkin(conn)
        _resp.check(reply)

    def fill(self, value: bytes, px: int | None) -> None:
        """BS.FILL: store the value, wake the waiters, end the lease."""
        self._finish(_resp.cmd_fill(self._key, self._token, value, px))

    def release(self) -> None:
        """BS.RELEASE: end the lease without a value; the first waiter takes over."""
        self._finish(_resp.cmd_release(self._key, self._token))


class StoreLock:
    """A lock granted on ``conn``; the connection stays out of the pool while the lock is
    held, so the store releases the lock by itself if this process dies."""

    __slots__ = ("_backend", "_conn", "_name", "token")

    def __init__(self, backend: StoreBackend, conn: Connection, name: bytes, token: bytes) -> None:
        self._backend, self._conn, self._name, self.token = backend, conn, name, token

    def _ask(self, payload: bytes) -> bool:
        """Whether the store answered 1; False when the connection is lost (and the lock
        with it: the store releases the locks of a closed connection)."""
        conn = self._conn
        try:
            conn.sock.sendall(payload)
            reply = conn.read_reply()
        except (OSError, Closed):
            conn.close()
            return False
        except BaseException:
            conn.close()
            raise
        return _resp.as_int(_resp.check(reply)) == 1

    def release(self) -> bool:
        """BLINK.UNLOCK: whether the lock was still ours; the connection goes back to the
        pool unless it was lost."""
        try:
            return self._ask(_resp.cmd_unlock(self._name, self.token))
        finally:
            if self._conn.sock.fileno() >= 0:
                self._backend._checkin(self._conn)

    def extend(self, ms: int, replace: bool) -> bool:
        """BLINK.LOCKEXTEND: ``ms`` more (``replace``: from now); whether the lock was ours."""
        return self._ask(_resp.cmd_lockextend(self._name, self.token, ms, replace))


class StoreFeed:
    """A subscribed connection: messages are read when asked for, so a subscriber that stops
    asking leaves them in the store, which disconnects it past its pub/sub buffer limit."""

    __slots__ = ("_backend", "_conn", "early")

    def __init__(self, backend: StoreBackend, conn: Connection) -> None:
        self._backend = backend
        self._conn = conn
        #: Messages that arrived before the last confirmation.
        self.early: deque[_resp.RawMessage] = deque()

    def next(self, timeout: float | None) -> _resp.RawMessage | None:
        """The next message, or None after ``timeout`` seconds."""
        if self.early:
            return self.early.popleft()
        conn = self._conn
        try:
            # settimeout(0) would make the socket non-blocking: a zero timeout polls briefly.
            conn.sock.settimeout(None if timeout is None else max(timeout, 0.001))
            while True:
                message = _resp.pubsub_message(conn.read_reply())
                if message is not None:
                    return message
        except TimeoutError:
            return None  # a partial message stays in the reader for the next call
        except (OSError, Closed) as exc:
            conn.close()
            raise self._backend._io_error(exc) from None

    def close(self) -> None:
        """Close the connection (the store ends its subscriptions)."""
        self._conn.close()
