"""Process plumbing of supervision, shared by the supervisor and the store process.

Private runtime directories, the readiness probe, the store process's exit codes, exit watching
that does not depend on being the one who reaps a child, and the Linux parent-death signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Sequence

from blinkstore_gunicorn.protocol import resp

__all__ = [
    "EXIT_REFUSED",
    "EXIT_STORE_FAILED",
    "SOCKET_NAME",
    "ExitWatch",
    "RuntimeDirError",
    "check_reachable",
    "create_runtime_dir",
    "default_runtime_parent",
    "describe_status",
    "ping",
    "remove_runtime_dir",
    "set_parent_death_signal",
    "verify_runtime_dir",
]

#: File name of the store's socket inside its runtime directory.
SOCKET_NAME = "store.sock"
#: The store process's exit code when it could not start (a setting it rejects, a busy port).
EXIT_STORE_FAILED = 3
#: Its exit code when the runtime directory failed its check: a restart would fail the same way.
EXIT_REFUSED = 4

_PR_SET_PDEATHSIG = 1
# sun_path is 108 bytes on Linux and 104 on the BSDs; stay under the smaller one.
_MAX_SOCKET_PATH = 100


class RuntimeDirError(OSError):
    """A runtime directory is not (or no longer) the private one it must be; says why."""


def default_runtime_parent(owner_uid: int | None = None) -> str:
    """``$XDG_RUNTIME_DIR`` when it exists and belongs to ``owner_uid``, else the temp dir."""
    uid = os.geteuid() if owner_uid is None else owner_uid
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    with contextlib.suppress(OSError):
        if xdg and os.stat(xdg).st_uid == uid:
            return xdg
    return tempfile.gettempdir()


def create_runtime_dir(parent: str | None = None, *, owner: tuple[int, int] | None = None) -> str:
    """Create a private (0700) directory for one store's socket and return its path.

    ``parent`` defaults to :func:`default_runtime_parent`. Every call makes a new directory with
    an unpredictable name (``mkdtemp``), so two masters (a USR2 upgrade, two services) never
    share a socket. ``owner`` (uid, gid) hands the directory to the user the store runs as.
    """
    if parent is None:
        parent = default_runtime_parent(owner[0] if owner else None)
    path = tempfile.mkdtemp(prefix="blinkstore-", dir=parent)
    try:
        if len(os.path.join(path, SOCKET_NAME).encode()) > _MAX_SOCKET_PATH:
            raise RuntimeDirError(
                errno.ENAMETOOLONG,
                f"runtime directory {path!r} is too long for a Unix socket path; "
                "choose a shorter parent directory",
            )
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            # Through the descriptor: a chmod or chown by name would follow a symlink.
            os.fchmod(fd, 0o700)
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
        verify_runtime_dir(path, owner[0] if owner else os.geteuid())
    except BaseException:
        remove_runtime_dir(path)
        raise
    return path


def verify_runtime_dir(path: str, owner_uid: int) -> None:
    """Check that ``path`` is still the private directory created for the store.

    It must be a real directory (not a symlink) owned by ``owner_uid`` with mode 0700, in a
    parent that nobody else can rename it in. Raises :class:`RuntimeDirError` saying what is
    wrong; the caller refuses to bind, and never recreates the directory by name.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise RuntimeDirError(
            errno.ENOENT, f"runtime directory {path} was removed; not recreating it by name"
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RuntimeDirError(
                exc.errno, f"runtime directory {path} was replaced by a symlink or a file"
            ) from None
        raise RuntimeDirError(exc.errno, f"runtime directory {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    problems = []
    if st.st_uid != owner_uid:
        problems.append(f"owned by uid {st.st_uid}, expected {owner_uid}")
    if stat.S_IMODE(st.st_mode) != 0o700:
        problems.append(f"mode {stat.S_IMODE(st.st_mode):o}, expected 700")
    parent = os.lstat(os.path.dirname(os.path.abspath(path)))
    others_write = parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if others_write and not parent.st_mode & stat.S_ISVTX:
        problems.append("its parent is writable by other users and not sticky")
    if parent.st_uid not in (0, owner_uid, os.geteuid()):
        problems.append(f"its parent belongs to uid {parent.st_uid}")
    if problems:
        raise RuntimeDirError(
            errno.EPERM, f"runtime directory {path} is not private: " + "; ".join(problems)
        )


def check_reachable(path: str, uid: int, gids: Sequence[int]) -> None:
    """Raise :class:`RuntimeDirError` unless user ``uid`` may traverse every parent of ``path``.

    Root passes every permission check, so a root master cannot learn this by trying; a
    directory the workers' user cannot reach would leave every worker without its cache.
    """
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        st = os.stat(directory)
        if st.st_uid == uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed and uid != 0:
            raise RuntimeDirError(
                errno.EACCES,
                f"uid {uid} (the workers' user) cannot enter {directory}, so it could not "
                "reach the store's socket; choose another blinkstore_runtime_dir",
            )
        if directory == os.path.dirname(directory):
            return
        directory = os.path.dirname(directory)


def remove_runtime_dir(path: str) -> None:
    """Remove a runtime directory and everything in it; a missing directory is fine."""
    shutil.rmtree(path, ignore_errors=True)


def ping(path: str, timeout: float = 0.5, password: str | None = None) -> bool:
    """Whether a store answers PING on the Unix socket ``path`` within ``timeout`` seconds.

    With ``password``, AUTH is sent first and must succeed too.
    """
    deadline = time.monotonic() + timeout
    reader = resp.ReplyReader()
    expected: list[object] = ["PONG"]
    request = resp.encode_command("PING")
    if password is not None:
        request = resp.encode_command("AUTH", password) + request
        expected.insert(0, "OK")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(request)
            while True:
                reply = reader.next_reply()
                if reply is not resp.NEED_MORE:
                    if reply != expected.pop(0):
                        return False
                    if not expected:
                        return True
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                sock.settimeout(remaining)
                data = sock.recv(4096)
                if not data:
                    return False
                reader.feed(data)
    except OSError:
        return False


def set_parent_death_signal(sig: int) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        # The process's own symbols, libc's included: no library search, which would run
        # ldconfig in a subprocess (this also runs between fork and exec).
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def describe_status(status: int | None) -> str:
    """A wait status in words: ``exit code 1``, ``signal SIGKILL``."""
    if status is None:
        return "unknown status (reaped elsewhere)"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"signal {signal.Signals(sig).name}"
        except ValueError:
            return f"signal {sig}"
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    return f"status {status}"


class ExitWatch:
    """Notice that a child process exited, whoever reaps it.

    gunicorn's arbiter reaps every child with ``waitpid(-1)``, so the plugin cannot rely on
    getting a child's exit status. A pidfd (Linux >= 5.3) becomes readable when the process
    exits, stays valid after someone else reaps it, and cannot be confused with a later process
    that reuses the pid. Without pidfd support, :meth:`exited` polls with ``WNOWAIT`` so the
    status is left for the real reaper.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd: int | None = None
        self._status: int | None = None
        self._done = False
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            with contextlib.suppress(OSError):
                self._fd = pidfd_open(pid)

    def fileno(self) -> int | None:
        """A descriptor that polls readable once the process exited, if the platform has one."""
        return self._fd

    def exited(self) -> bool:
        """Whether the process has exited (never blocks)."""
        if self._done:
            return True
        if self._fd is not None:
            readable, _, _ = select.select([self._fd], [], [], 0)
            self._done = bool(readable)
            return self._done
        try:
            result = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            self._done = True
            return True
        self._done = result is not None
        return self._done

    def peek(self) -> None:
        """Record the exit status, if the process exited, without reaping it."""
        if self._status is not None or self._fd is None or not hasattr(os, "P_PIDFD"):
            return
        with contextlib.suppress(ChildProcessError, OSError):
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            result = os.waitid(os.P_PIDFD, self._fd, flags)
            if result is not None:
                self._status = _status_from_waitid(result)

    def reap(self) -> int | None:
        """Collect the exit status if nobody else did yet; ``None`` when it is gone elsewhere."""
        if self._status is not None:
            # Reap it too if it is still there (peek() left it), ignoring who else did.
            with contextlib.suppress(ChildProcessError, OSError):
                if self._fd is not None and hasattr(os, "P_PIDFD"):
                    os.waitid(os.P_PIDFD, self._fd, os.WEXITED | os.WNOHANG)
            return self._status
        try:
            if self._fd is not None and hasattr(os, "P_PIDFD"):
                result = os.waitid(os.P_PIDFD, self._fd, os.WEXITED | os.WNOHANG)
                if result is not None:
                    self._status = _status_from_waitid(result)
            else:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self._status = status
        except ChildProcessError:
            return None
        return self._status

    def close(self) -> None:
        """Release the pidfd."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _status_from_waitid(result: os.waitid_result) -> int:
    """Re-encode a ``waitid`` result as a ``waitpid``-style status for :func:`describe_status`."""
    if result.si_code == os.CLD_EXITED:
        return (result.si_status & 0xFF) << 8
    return result.si_status & 0x7F
