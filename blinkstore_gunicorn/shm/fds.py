"""The operating-system side of handing memory to other processes (Linux).

* :func:`sealed_memfd`: a memfd that nobody can shrink or grow once sized (``F_SEAL_SHRINK |
  F_SEAL_GROW``, then ``F_SEAL_SEAL``, at once or after :func:`seal_future_writes`), so a
  process that holds it cannot turn another's mapping into SIGBUS with ``ftruncate``.
* :func:`seal_future_writes`: ``F_SEAL_FUTURE_WRITE``: the mappings that exist keep writing,
  but nobody (root included) can map the memfd writable or ``write`` to it again, even after
  opening it afresh through ``/proc/<pid>/fd``. The price: its pages can no longer be given
  back (``MADV_REMOVE`` and hole punching are writes), only reused.
* :func:`read_only_copy`: a second, read-only open of a memfd (through ``/proc/self/fd``): a
  mapping made from it cannot be writable, whatever the receiver asks ``mmap`` for, and it
  cannot add seals either.
* :func:`recv_fds`: ``recvmsg`` with ``MSG_CMSG_CLOEXEC`` (``socket.recv_fds`` ignores its
  flags), so no descriptor received is inherited by a program a thread ``exec``\\ s meanwhile.
* :func:`map_unforked` / :func:`unmap`: a writable shared mapping that no forked child gets
  (``MADV_DONTFORK``) and that holds no descriptor (``mmap.mmap`` keeps a ``dup`` of the
  one it maps, which a fork would copy): how a supervisor keeps the power to revoke a region
  without handing it to the gunicorn workers it forks.
* :func:`make_undumpable`: ``prctl(PR_SET_DUMPABLE, 0)``, so that a process of the same user
  without the store's password cannot open the store's descriptors via ``/proc/<pid>/fd`` (or
  ptrace it). Root still can, as it can read any process's memory.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import functools
import mmap
import os
import socket
import sys

__all__ = [
    "make_undumpable",
    "map_unforked",
    "read_only_copy",
    "recv_fds",
    "seal_future_writes",
    "sealed_memfd",
    "unmap",
]

# Linux values, for Pythons whose fcntl module lacks them (the kernel ABI is fixed).
_F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
_F_SEAL_SEAL = getattr(fcntl, "F_SEAL_SEAL", 0x0001)
_F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)
_F_SEAL_GROW = getattr(fcntl, "F_SEAL_GROW", 0x0004)
_F_SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)
_MFD_ALLOW_SEALING = getattr(os, "MFD_ALLOW_SEALING", 0x0002)
_MSG_CMSG_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0x40000000)
_PR_SET_DUMPABLE = 4
_INT_SIZE = array.array("i").itemsize


def sealed_memfd(name: str, size: int, *, final: bool = True) -> int:
    """A close-on-exec memfd of ``size`` bytes whose size can never change; ``final=False``
    leaves room for one more seal (:func:`seal_future_writes`), which then closes it."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | _MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(
            fd, _F_ADD_SEALS, _F_SEAL_SHRINK | _F_SEAL_GROW | (_F_SEAL_SEAL if final else 0)
        )
    except BaseException:
        os.close(fd)
        raise
    return fd


def seal_future_writes(fd: int) -> None:
    """Refuse every new writable mapping or write of the memfd ``fd``, then every further
    seal. Where the kernel lacks the seal (Linux before 5.1) only the latter is added, and
    the OSError is raised for the caller to report."""
    try:
        fcntl.fcntl(fd, _F_ADD_SEALS, _F_SEAL_FUTURE_WRITE | _F_SEAL_SEAL)
    except OSError:
        fcntl.fcntl(fd, _F_ADD_SEALS, _F_SEAL_SEAL)
        raise


def read_only_copy(fd: int) -> int:
    """A new read-only, close-on-exec descriptor of the memfd ``fd`` (its own open file)."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


def recv_fds(sock: socket.socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """Receive up to ``bufsize`` bytes and ``maxfds`` descriptors, these close-on-exec."""
    data, ancdata, _flags, _addr = sock.recvmsg(
        bufsize, socket.CMSG_SPACE(maxfds * _INT_SIZE), _MSG_CMSG_CLOEXEC
    )
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _INT_SIZE
            fds.extend(array.array("i", payload[:usable]))
    return data, fds


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def map_unforked(fd: int, size: int) -> int:
    """Map the first ``size`` bytes of ``fd`` shared and writable, never into a forked child;
    return the address (the caller may close ``fd``). OSError if it cannot be done."""
    libc = _libc()
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    address = libc.mmap(None, size, prot, mmap.MAP_SHARED, fd, 0)
    if address is None or address == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    if libc.madvise(address, size, mmap.MADV_DONTFORK) != 0:
        err = ctypes.get_errno()
        libc.munmap(address, size)
        raise OSError(err, os.strerror(err))
    return int(address)


def unmap(address: int, size: int) -> None:
    """Undo :func:`map_unforked` (in the process that mapped it, not in a forked child)."""
    _libc().munmap(address, size)


def make_undumpable() -> bool:
    """Make this process not dumpable; False where that is not possible (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
