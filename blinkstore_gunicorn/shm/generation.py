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
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import time

from blinkstore_gunicorn.shm import layout as L

__all__ = ["Generation", "generation_path"]

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

    def wait_for_previous(self) -> float:
        """Seconds to wait before serving: until the last owner's heartbeat is stale."""
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
            magic, _pid, beat = _RECORD.unpack(data)
            if magic == _MAGIC:
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
