"""Process plumbing shared by the gunicorn plugin and ``blinkstore run``.

Private runtime directories, the readiness probe, exit watching that does not depend on being
the one who reaps a child, and the Linux parent-death signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time

from blinkstore_gunicorn.protocol import resp

__all__ = [
    "SOCKET_NAME",
    "ExitWatch",
    "create_runtime_dir",
    "describe_status",
    "ping",
    "remove_runtime_dir",
    "set_parent_death_signal",
    "socket_is_live",
]

#: File name of the store's socket inside its runtime directory.
SOCKET_NAME = "store.sock"

_PR_SET_PDEATHSIG = 1
# sun_path is 108 bytes on Linux and 104 on the BSDs; stay under the smaller one.
_MAX_SOCKET_PATH = 100


def create_runtime_dir(parent: str | None = None) -> str:
    """Create a private (0700) directory for one store's socket and return its path.

    ``parent`` defaults to ``$XDG_RUNTIME_DIR`` (a per-user tmpfs) when it exists, else the
    system temporary directory. Every call makes a new directory, so two masters (a USR2
    upgrade, two services) never share a socket.
    """
    if parent is None:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        parent = xdg if xdg and os.path.isdir(xdg) else tempfile.gettempdir()
    path = tempfile.mkdtemp(prefix="blinkstore-", dir=parent)
    os.chmod(path, 0o700)
    if len(os.path.join(path, SOCKET_NAME).encode()) > _MAX_SOCKET_PATH:
        remove_runtime_dir(path)
        raise OSError(
            errno.ENAMETOOLONG,
            f"runtime directory {path!r} is too long for a Unix socket path; "
            "choose a shorter parent directory",
        )
    return path


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


def socket_is_live(path: str) -> bool:
    """Whether some process accepts connections on the Unix socket ``path``.

    A socket file left behind by a killed store refuses connections; that one is stale and may
    be removed. A live one must never be removed or bound over.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            # A full backlog or a slow store: somebody is there.
            return True
        return True


def set_parent_death_signal(sig: int) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
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

    def reap(self) -> int | None:
        """Collect the exit status if nobody else did yet; ``None`` when it is gone elsewhere."""
        if self._status is not None:
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
