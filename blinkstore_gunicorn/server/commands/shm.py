"""``BS.SHM``: hand the shared-memory region to a client (ours; RESP on the Unix socket only).

``BS.SHM``
    ``*2 :<layout version> :<counter slot>``, with a read-only descriptor of the region and the
    marks' memfd attached to the reply (``SCM_RIGHTS``): the client maps them and reads
    without the socket from then on (``blinkstore_gunicorn/shm/``). The request must be the
    only one in flight on its connection: the descriptors travel with the reply's first byte,
    so no earlier reply may still be queued. Errors: ``ERR shared memory is off`` (the ``shm``
    setting, the platform, a TCP-only store) and ``ERR BS.SHM needs a Unix socket
    connection``; ``TRYAGAIN`` while the store adopts a dead predecessor's entries (its
    region does not hold them all yet, and a reader takes a miss there for an answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import DEFERRED, command
from blinkstore_gunicorn.shm import handout
from blinkstore_gunicorn.shm.writer import RegionWriter

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__ = ["seen_at_once"]

ERR_OFF = resp.error("ERR shared memory is off")
ERR_NOT_UNIX = resp.error("ERR BS.SHM needs a Unix socket connection")
ERR_NOT_ALONE = resp.error("ERR BS.SHM must be the only request in flight")
ERR_NOT_READY = resp.error(f"{handout.NOT_READY} the store is adopting its predecessor's entries")


@command("bs.shm", 1, "fast no_multi")
def cmd_bs_shm(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    engine = d.engine
    region = engine.region if isinstance(engine, MemoryEngine) else None
    if region is None:
        return ERR_OFF
    if isinstance(engine, MemoryEngine) and engine.inheriting:
        return ERR_NOT_READY
    transport = c.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if transport is None or sock is None or sock.family != socket.AF_UNIX:
        return ERR_NOT_UNIX
    # After the connection has written the replies before this one (DEFERRED holds the rest).
    asyncio.get_running_loop().call_soon(_hand_out, c, transport, sock.fileno(), region)
    return DEFERRED


def _hand_out(c: Client, transport: asyncio.Transport, fileno: int, region: RegionWriter) -> None:
    if transport.is_closing():
        return
    if transport.get_write_buffer_size():
        c.deliver(ERR_NOT_ALONE)
        return
    # A socket object of our own on a duplicate descriptor: the transport's stays untouched.
    with socket.socket(fileno=os.dup(fileno)) as raw:
        try:
            handout.send_reply(raw, handout.region_reply(region), region)
        except OSError as exc:
            c.deliver(resp.error(f"ERR cannot hand out the region: {exc}"))
            return
    c.deliver(b"")


@contextlib.contextmanager
def seen_at_once(d: Dispatcher) -> Iterator[None]:
    """Publish a multi-key write (MSET, EXEC) so that a region reader of several keys
    (``get_many``) sees all of it or none: the region's write epoch is odd meanwhile."""
    engine = d.engine
    region = engine.region if isinstance(engine, MemoryEngine) else None
    if region is None:
        yield
        return
    region.begin_batch()
    try:
        yield
    finally:
        region.end_batch()
