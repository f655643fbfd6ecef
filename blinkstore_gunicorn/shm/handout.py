"""Handing the region to a client: the ``BS.SHM`` exchange over the store's Unix socket.

The client sends ``BS.SHM`` alone on a connection (nothing else in flight); the store answers
``*2 :<layout version> :<counter slot>`` and attaches a read-only descriptor of the region and
the marks' memfd to the reply's bytes (``SCM_RIGHTS``; received close-on-exec). So only a
process that can connect to the 0600 socket (and pass AUTH, when the store has a password) can
map the region: it has no name in any file system. No asyncio here: the store sends from its
event loop with :func:`send_reply`, the clients receive with :func:`request_region` on a
blocking socket (a gevent-patched one included).
"""

from __future__ import annotations

import os
import socket
import sys

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.shm import layout
from blinkstore_gunicorn.shm.fds import recv_fds
from blinkstore_gunicorn.shm.reader import RegionError, RegionReader
from blinkstore_gunicorn.shm.writer import RegionWriter

__all__ = [
    "NOT_READY",
    "REQUEST",
    "RegionNotReady",
    "RegionUnavailable",
    "attach",
    "region_reply",
    "request_region",
    "send_reply",
    "supported",
]

#: The request, as the client sends it.
REQUEST = resp.encode_command("BS.SHM")
#: The error code of a store that will hand its region out soon (ask again shortly).
NOT_READY = "TRYAGAIN"
# A reply is two small integers: it never needs more than one read of this size.
_MAX_REPLY = 256


class RegionUnavailable(OSError):
    """The store did not hand out a region (turned off, not a Unix socket, an old store)."""


class RegionNotReady(RegionUnavailable):
    """The store did not hand out its region yet (it is adopting a dead store's entries)."""


def supported() -> bool:
    """Whether this platform has what the region needs (Linux: memfd and SCM_RIGHTS)."""
    return sys.platform.startswith("linux") and hasattr(os, "memfd_create")


def region_reply(region: RegionWriter) -> bytes:
    """The reply bytes for one client (assigns it a counter slot)."""
    return resp.array([resp.integer(layout.VERSION), resp.integer(region.assign_counter())])


def send_reply(sock: socket.socket, reply: bytes, region: RegionWriter) -> None:
    """Send ``reply`` with the region's descriptors attached; OSError if it did not all go.

    ``sock`` must have nothing queued before it (the caller checks its own write buffer).
    """
    sent = socket.send_fds(sock, [reply], list(region.fds))
    if sent != len(reply):
        raise BlockingIOError("the BS.SHM reply did not fit the socket buffer")


def request_region(sock: socket.socket) -> RegionReader:
    """Ask the store on ``sock`` for its region and map it.

    ``sock`` is connected to the store's Unix socket (and authenticated) with nothing in
    flight. Raises :class:`RegionUnavailable` when the store says no, OSError on I/O errors.
    """
    sock.sendall(REQUEST)
    data, fds = recv_fds(sock, _MAX_REPLY, 2)
    try:
        reader = resp.ReplyReader()
        reader.feed(data)
        reply = reader.next_reply()
        if isinstance(reply, resp.ErrorReply):
            if reply.message.startswith(NOT_READY):
                raise RegionNotReady(reply.message)
            raise RegionUnavailable(reply.message)
        if not isinstance(reply, list) or len(reply) != 2 or len(fds) != 2:
            raise RegionUnavailable(f"unexpected BS.SHM reply {data[:80]!r}")
        version, counter = reply
        if version != layout.VERSION or not isinstance(counter, int):
            raise RegionUnavailable(f"the store's region layout is version {version!r}")
        try:
            return RegionReader(fds[0], fds[1], counter)
        except (RegionError, ValueError) as exc:
            raise RegionUnavailable(str(exc)) from None
    finally:
        for fd in fds:
            os.close(fd)


def attach(unix_path: str, password: str | None, timeout: float) -> RegionReader:
    """Connect to the store on ``unix_path`` (AUTH with ``password``) and map its region.

    A connection of its own, closed at once: the region needs no socket once mapped. Raises
    :class:`RegionUnavailable` when the store says no, OSError when it cannot be reached.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(unix_path)
        if password is not None:
            sock.sendall(resp.encode_command("AUTH", password))
            answer = sock.recv(_MAX_REPLY)
            if not answer.startswith(b"+OK"):
                raise RegionUnavailable(f"AUTH failed: {answer[:80]!r}")
        return request_region(sock)
