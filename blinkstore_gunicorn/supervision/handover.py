"""The control channel between the supervisor and one store process it started.

A ``SOCK_SEQPACKET`` socket pair per store process (messages keep their bounds; descriptors
travel as ``SCM_RIGHTS``, received close-on-exec). Two messages:

* supervisor -> store, **GO**: bind the socket now. Every store waits for it (a standby until
  it is promoted, any other store gets it at once); it names the pid of the store whose region
  the supervisor revoked (0: none), so the new store skips the wait for that one's heartbeat
  (``shm/generation.py``). Closing the supervisor's end instead lets a standby go.
* store -> supervisor, **REGION**, before the store serves: a writable descriptor of its
  region attached. The supervisor keeps only a :class:`~blinkstore_gunicorn.shm.generation.
  Revocation` from it (the header page, mapped out of reach of the processes it forks) and
  closes the descriptor, and revokes the region as soon as it reaps the store.
* supervisor -> store, **MAPPED**, the answer to REGION: the supervisor is done mapping the
  header page (or failed to). Only then does the store seal the region against writes
  (``RegionWriter.seal``): after the seal nobody can map it writable, the supervisor included.

Room to grow (warm restarts, where a successor adopts the data): the supervisor would keep the
REGION message's descriptors instead of closing them, and attach them to the next GO.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time

from blinkstore_gunicorn.shm.fds import recv_fds
from blinkstore_gunicorn.shm.generation import Revocation

__all__ = ["StoreChannel", "channel_pair", "hand_over_region", "wait_for_go"]

_GO = struct.Struct("<4sQ")
_GO_TAG = b"GO\0\0"
_REGION = b"RGN\0"
_MAPPED = b"MAPD"
_MAX_MESSAGE = 64
_MAX_FDS = 4


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """``(supervisor end, store end)``, both close-on-exec (``pass_fds`` hands on the second)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class StoreChannel:
    """The supervisor's end of one store process's channel, and what came through it."""

    __slots__ = ("_revocation", "_sock", "eof", "revoked")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock: socket.socket | None = sock
        self._revocation: Revocation | None = None
        #: The store closed its end (it exited): nothing more to read.
        self.eof = False
        #: Whether :meth:`revoke` revoked a region this store handed over.
        self.revoked = False

    def fileno(self) -> int | None:
        """The descriptor to wait on while messages may come, else None."""
        sock = self._sock
        return None if sock is None or self.eof else sock.fileno()

    def go(self, revoked_pid: int) -> bool:
        """Tell the store to bind; False when it is gone already."""
        sock = self._sock
        if sock is None:
            return False
        try:
            return sock.send(_GO.pack(_GO_TAG, revoked_pid)) == _GO.size
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
                    with contextlib.suppress(OSError):
                        sock.send(_MAPPED)
            finally:
                for fd in fds:
                    os.close(fd)

    def revoke(self) -> bool:
        """The store exited: revoke the region it handed over (read last messages first)."""
        self.receive()
        revocation, self._revocation = self._revocation, None
        if revocation is not None:
            self.revoked = revocation.revoke()
        return self.revoked

    def close(self, *, in_child: bool = False) -> None:
        """Close this end. The store's region is let go unrevoked (revoke first where it must
        be); ``in_child``: this is a forked copy, which never had the region mapped."""
        revocation, self._revocation = self._revocation, None
        if revocation is not None:
            if in_child:
                revocation.drop_in_child()
            else:
                revocation.forget()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def wait_for_go(sock: socket.socket, lifeline_fd: int) -> int | None:
    """In the store: block until GO (return the revoked pid, 0 for none), or None when the
    supervisor closed the channel or the lifeline (stop: never bind)."""
    while True:
        readable, _, _ = select.select([sock.fileno(), lifeline_fd], [], [])
        if lifeline_fd in readable:
            return None
        data = sock.recv(_MAX_MESSAGE)
        if not data:
            return None
        if len(data) == _GO.size:
            tag, revoked_pid = _GO.unpack(data)
            if tag == _GO_TAG:
                return int(revoked_pid)


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
