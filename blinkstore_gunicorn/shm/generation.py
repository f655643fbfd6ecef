"""The generation file: when a store that binds a socket may serve (store side only).

Readers never open this file (a ``truncate`` of it hurts nobody): they judge a region by its
own heartbeat word (:data:`~blinkstore_gunicorn.shm.layout.STALE_NS`). The file, next to the
socket and 0600, is how the next store learns how long ago the previous one last ticked: the
owner rewrites ``(MAGIC, pid, heartbeat ns)`` with ``pwrite`` at every tick, and a store that
binds the socket waits, *before it serves*, until that heartbeat is older than ``STALE_NS``
(at once when it is already, e.g. after a clean stop, which removes the file). Every store
waits, whether its own region is on, off or failed to start, so no reader can answer from a
dead region once a new store can acknowledge a write. What the file says is only trusted to
shorten that wait, never beyond ``STALE_NS``.

A supervisor (the gunicorn master, ``blinkstore run``) outlives its store and shortens that
wait to nothing: the store hands it a writable descriptor of its region before it serves, the
supervisor keeps a :class:`Revocation` (a writable mapping of the header page only), and when
it reaps the store it writes token 0 and heartbeat 0 there, which every reader checks on every
read anyway. It then names the revoked store's pid to the successor, which skips the wait when
the generation file names that pid (:meth:`Generation.wait_for_previous`): the file names the
last store that claimed the socket, and every earlier owner was dead to readers before that one
claimed it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
import struct
import time

from blinkstore_gunicorn.shm import layout as L
from blinkstore_gunicorn.shm.fds import map_unforked, unmap

__all__ = ["Generation", "Revocation", "generation_path"]

_MAGIC = 0x4E45474B4C42  # b"BLKGEN"
_RECORD = struct.Struct("<QQQ")


def generation_path(unix_path: str) -> str:
    """The generation file of the store listening on ``unix_path``: next to its socket."""
    return unix_path + ".shm"


class Generation:
    """One store's view of the generation file at ``path``."""

    __slots__ = ("_fd", "_path")

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None

    def wait_for_previous(self, revoked_pid: int = 0) -> float:
        """Seconds to wait before serving: until the last owner's heartbeat is stale, or none
        when that owner is ``revoked_pid``, whose region the supervisor revoked already."""
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0.0
        except OSError:
            return L.STALE_NS / 1e9
        try:
            data = os.pread(fd, _RECORD.size, 0) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        finally:
            os.close(fd)
        stale_at = L.STALE_NS + time.monotonic_ns()  # unreadable: a full period
        if len(data) == _RECORD.size:
            magic, pid, beat = _RECORD.unpack(data)
            if magic == _MAGIC:
                if revoked_pid and pid == revoked_pid:
                    return 0.0
                stale_at = min(stale_at, beat + L.STALE_NS)
        return max(0, stale_at - time.monotonic_ns()) / 1e9

    def claim(self, now_ns: int) -> None:
        """Become the owner (the caller has waited): our record, heartbeat ``now_ns``."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            os.close(fd)
            raise PermissionError(f"{self._path} is not a private (0600) file of this user")
        self._fd = fd
        self.beat(now_ns)

    def beat(self, now_ns: int) -> None:
        """Record a heartbeat (before the region's own, so the file is never older)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(self._fd, _RECORD.pack(_MAGIC, os.getpid(), now_ns), 0)

    def release(self) -> None:
        """A clean stop: the region is closed, the next store need not wait. Removes the file
        if it is still ours (it is gone, or names another pid, once a newer store took over)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            data = os.pread(fd, _RECORD.size, 0)
            if len(data) == _RECORD.size and _RECORD.unpack(data)[1] == os.getpid():
                os.unlink(self._path)
        os.close(fd)

    def discard(self) -> None:
        """Remove a previous owner's file once waited for (this store publishes no region)."""
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(self._path).st_mode):
                os.unlink(self._path)


class Revocation:
    """The power to declare a store's region dead, held by the store's supervisor.

    Made from a writable descriptor of the region, which it does not keep (the caller closes
    it): only the header page is mapped, writable, and never into a forked child (a gunicorn
    worker forked from the master gets no write access to the region). :meth:`revoke` writes
    what readers check on every read: token 0 (closed) and heartbeat 0 (stale).
    """

    __slots__ = ("_address",)

    def __init__(self, region_fd: int) -> None:
        if os.fstat(region_fd).st_size < L.HEADER_BYTES:
            raise ValueError("not a blinkstore shared-memory region")
        self._address: int | None = map_unforked(region_fd, L.HEADER_BYTES)
        if self._word(L.H_MAGIC).value != L.MAGIC or self._word(L.H_VERSION).value != L.VERSION:
            self.forget()
            raise ValueError("not a blinkstore shared-memory region of this version")

    def _word(self, index: int) -> ctypes.c_uint64:
        assert self._address is not None
        return ctypes.c_uint64.from_address(self._address + 8 * index)

    def revoke(self) -> int | None:
        """Make every reader of the region stop trusting it, at once; return the token it held
        until then (what a successor checks before it adopts the region), None if done before."""
        if self._address is None:
            return None
        token = self._word(L.H_TOKEN).value
        self._word(L.H_TOKEN).value = 0
        self._word(L.H_HEARTBEAT).value = 0
        self.forget()
        return int(token)

    def forget(self) -> None:
        """Let the mapping go without revoking (the store stopped cleanly)."""
        address, self._address = self._address, None
        if address is not None:
            unmap(address, L.HEADER_BYTES)

    def drop_in_child(self) -> None:
        """In a forked child: forget the address; the mapping was never copied here, so
        there is nothing to unmap (and unmapping could hit whatever is mapped there now)."""
        self._address = None
