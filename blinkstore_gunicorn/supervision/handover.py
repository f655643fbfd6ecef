"""The control channel between the supervisor and one store process it started.

A ``SOCK_SEQPACKET`` socket pair per store process (messages keep their bounds; descriptors
travel as ``SCM_RIGHTS``, received close-on-exec). Two messages:

* supervisor -> store, **GO**: bind the socket now. Every store waits for it (a standby until
  it is promoted, any other store gets it at once); it names the pid of the store whose region
  the supervisor revoked (0: none), so the new store skips the wait for that one's heartbeat
  (``shm/generation.py``), and the token that region held; the region's descriptor comes
  attached, for the new store to adopt its entries (``shm/adoption.py``). Closing the
  supervisor's end instead lets a standby go.
* store -> supervisor, **REGION**, before the store serves: a writable descriptor of its
  region attached. The supervisor makes a :class:`~blinkstore_gunicorn.shm.generation.
  Revocation` from it (the header page, mapped out of reach of the processes it forks), keeps
  the descriptor (closed in every process it forks), revokes the region as soon as it reaps
  the store, and hands the descriptor to the successor with GO.
* supervisor -> store, **MAPPED**, the answer to REGION: the supervisor is done mapping the
  header page (or failed to). Only then does the store seal the region against writes
  (``RegionWriter.seal``): after the seal nobody can map it writable, the supervisor included
  (the successor maps it read-only to adopt it).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time

from blinkstore_gunicorn.shm.adoption import Inheritance
from blinkstore_gunicorn.shm.fds import recv_fds
from blinkstore_gunicorn.shm.generation import Revocation

__all__ = ["HeldRegion", "StoreChannel", "channel_pair", "hand_over_region", "wait_for_go"]

_GO = struct.Struct("<4sQQ")
_GO_TAG = b"GO\0\0"
_REGION = b"RGN\0"
_MAPPED = b"MAPD"
_MAX_MESSAGE = 64
_MAX_FDS = 4


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """``(supervisor end, store end)``, both close-on-exec (``pass_fds`` hands on the second)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class HeldRegion:
    """A dead store's region as its supervisor holds it for the successor: the writable
    descriptor (owned: :meth:`close` it) and the token the region held before revocation."""

    __slots__ = ("fd", "token")

    def __init__(self, fd: int, token: int) -> None:
        self.fd = fd
        self.token = token

    def close(self) -> None:
        """Let the descriptor go (idempotent)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class StoreChannel:
    """The supervisor's end of one store process's channel, and what came through it."""

    __slots__ = ("_held", "_region_fd", "_revocation", "_sock", "eof", "revoked")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock: socket.socket | None = sock
        self._revocation: Revocation | None = None
        self._region_fd: int | None = None
        self._held: HeldRegion | None = None
        #: The store closed its end (it exited): nothing more to read.
        self.eof = False
        #: Whether :meth:`revoke` revoked a region this store handed over.
        self.revoked = False

    def fileno(self) -> int | None:
        """The descriptor to wait on while messages may come, else None."""
        sock = self._sock
        return None if sock is None or self.eof else sock.fileno()

    def go(self, revoked_pid: int, region: HeldRegion | None = None) -> bool:
        """Tell the store to bind (and hand it ``region`` to adopt); False when it is gone."""
        sock = self._sock
        if sock is None:
            return False
        message = _GO.pack(_GO_TAG, revoked_pid, 0 if region is None else region.token)
        fds = [] if region is None or region.fd < 0 else [region.fd]
        try:
            return socket.send_fds(sock, [message], fds) == _GO.size
        except OSError:
            return False

    def receive(self) -> None:
        """Take every message that arrived (non-blocking); the caller holds the fork lock,
        since a received descriptor is briefly open in this process."""
        sock = self._sock
        while sock is not None and not self.eof:
            try:
                data, fds = recv_fds(sock, _MAX_MESSAGE, _MAX_FDS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.eof = True
                return
            try:
                if not data:
                    self.eof = True
                elif data == _REGION and len(fds) == 1 and self._revocation is None:
                    with contextlib.suppress(OSError, ValueError):
                        self._revocation = Revocation(fds[0])
                        # Kept for the successor (closed in every forked child, see close()).
                        self._region_fd = fds.pop()
                    with contextlib.suppress(OSError):
                        sock.send(_MAPPED)
            finally:
                for fd in fds:
                    os.close(fd)

    def revoke(self) -> bool:
        """The store exited: revoke the region it handed over (read last messages first), and
        hold it for :meth:`take_region`."""
        self.receive()
        revocation, self._revocation = self._revocation, None
        fd, self._region_fd = self._region_fd, None
        token = None if revocation is None else revocation.revoke()
        if token is not None:
            self.revoked = True
        if fd is not None:
            if token is None:
                os.close(fd)
            else:
                self._held = HeldRegion(fd, token)
        return self.revoked

    def take_region(self) -> HeldRegion | None:
        """The region :meth:`revoke` revoked, now the caller's to hand on and close."""
        held, self._held = self._held, None
        return held

    def close(self, *, in_child: bool = False) -> None:
        """Close this end and the region's descriptor. The store's region is let go unrevoked
        (revoke first where it must be); ``in_child``: this is a forked copy, which never had
        the region mapped."""
        revocation, self._revocation = self._revocation, None
        if revocation is not None:
            if in_child:
                revocation.drop_in_child()
            else:
                revocation.forget()
        fd, self._region_fd = self._region_fd, None
        if fd is not None:
            os.close(fd)
        held, self._held = self._held, None
        if held is not None:
            held.close()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def wait_for_go(sock: socket.socket, lifeline_fd: int) -> tuple[int, Inheritance | None] | None:
    """In the store: block until GO; return the revoked pid (0 for none) and the region to
    adopt (its descriptor is then ours to close), or None when the supervisor closed the
    channel or the lifeline (stop: never bind)."""
    while True:
        readable, _, _ = select.select([sock.fileno(), lifeline_fd], [], [])
        if lifeline_fd in readable:
            return None
        data, fds = recv_fds(sock, _MAX_MESSAGE, _MAX_FDS)
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        if len(data) == _GO.size and _GO.unpack(data)[0] == _GO_TAG:
            _tag, revoked_pid, token = _GO.unpack(data)
            for fd in fds[1:]:
                os.close(fd)
            return int(revoked_pid), Inheritance(fds[0], int(token)) if fds else None
        for fd in fds:
            os.close(fd)


def hand_over_region(sock: socket.socket, region_fd: int, timeout: float = 5.0) -> bool:
    """In the store: send the supervisor the region's writable descriptor and wait until it
    mapped what it needs; False if it did not answer within ``timeout`` seconds (OSError if
    the descriptor cannot be sent)."""
    socket.send_fds(sock, [_REGION], [region_fd])
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock.fileno()], [], [], left)
        if readable:
            data = sock.recv(_MAX_MESSAGE)
            if data == _MAPPED:
                return True
            if not data:
                return False
    return False
