"""Pub/sub messages of one event-loop iteration: shared per channel, written once per connection.

A burst of ``PUBLISH`` commands (a pipeline, or many publishers read in one iteration) must not
cost each subscriber a step per message. The hub (``pubsub.py``) appends each message's frame,
encoded once, to the :class:`Batch` its channel has in this iteration (a ``pmessage`` frame to
its pattern's batch), and tells each subscriber of that channel once per iteration, when the
batch opens. A connection's :class:`Outbox` keeps a cursor into every batch it was told of.
At the end of the iteration (``call_soon``) the hub closes the batches (:func:`close`) and each
outbox writes what it has not written yet: one batch's frames joined once and shared by all
its subscribers (once per protocol: RESP2 arrays or RESP3 pushes), or the frames of several
batches merged in the order they were published. So, like
Redis, which writes a client's output buffer once per event-loop iteration, a subscriber costs
one write per iteration however many messages it receives, and a message costs the same
however many subscribers its channel has.

A reply flushes its connection's outbox first (``connection.py``), so no reply overtakes a
message published before its request; a batch may still grow after such a flush, so the outbox
keeps its cursor until the hub closes the batch at the end of the iteration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeAlias

__all__ = ["Batch", "Outbox", "close", "push_frame"]

log = logging.getLogger("blinkstore.server")


def push_frame(frame: bytes) -> bytes:
    """The RESP3 push (``>``) of a RESP2 message array (``*``): only the first byte differs."""
    return b">" + frame[1:]


class Batch:
    """The frames one channel (or pattern) received in this event-loop iteration."""

    __slots__ = ("_joined", "frames", "open", "seqs", "size", "takers", "top")

    def __init__(self) -> None:
        #: RESP2 frames, in the order they were published.
        self.frames: list[bytes] = []
        #: Each frame's place in the hub's order of all frames (to merge several batches).
        self.seqs: list[int] = []
        #: Bytes of the frames.
        self.size = 0
        #: False once the hub closed it: it gets no more frames.
        self.open = True
        #: The outboxes that take its frames (each flushed when it closes).
        self.takers: list[Outbox] = []
        #: The most a subscriber held unsent when the hub last looked, besides this batch.
        self.top = 0
        #: The whole batch joined, RESP2 then RESP3, once it is closed (shared by subscribers).
        self._joined: list[bytes | None] = [None, None]

    def add(self, seq: int, frame: bytes) -> None:
        """Append ``frame`` (RESP2), the hub's ``seq``-th frame."""
        self.frames.append(frame)
        self.seqs.append(seq)
        self.size += len(frame)

    def tail(self, start: int, resp3: bool) -> list[bytes]:
        """The frames from ``start`` on, in the protocol asked for."""
        frames = self.frames[start:] if start else self.frames
        return [push_frame(frame) for frame in frames] if resp3 else frames

    def data(self, start: int, resp3: bool) -> bytes:
        """The frames from ``start`` on, joined (computed once per protocol when closed)."""
        if start or self.open:
            return b"".join(self.tail(start, resp3))
        joined = self._joined[resp3]
        if joined is None:
            joined = self._joined[resp3] = b"".join(self.tail(0, resp3))
        return joined


def close(batches: list[Batch]) -> None:
    """Close ``batches``, then have each connection that takes any of them write its share
    (all of them closed first: a connection taking several writes once)."""
    for batch in batches:
        batch.open = False
    for batch in batches:
        for outbox in batch.takers:
            try:
                outbox.flush()
            except Exception:
                # One connection's failure must not keep the others' messages back.
                log.exception("pub/sub: writing a subscriber's messages failed")


#: How far a connection has written one batch: frames and bytes written (or skipped: the
#: publisher's own), and whether it takes them as RESP3 pushes.
_Cursor: TypeAlias = tuple[int, int, bool]


def _merged(cursors: dict[Batch, _Cursor]) -> bytes:
    """The unwritten frames of several batches, in the order the hub made them."""
    numbered: list[tuple[int, bytes]] = []
    for batch, (start, _, resp3) in cursors.items():
        numbered.extend(zip(batch.seqs[start:], batch.tail(start, resp3), strict=True))
    numbered.sort(key=_first)
    return b"".join([frame for _, frame in numbered])


def _first(item: tuple[int, bytes]) -> int:
    return item[0]


class Outbox:
    """A connection's cursors into this iteration's batches; true while it has some."""

    __slots__ = ("_base", "_cursors", "_on_flush", "_transport")

    def __init__(self, transport: asyncio.WriteTransport, on_flush: Callable[[], None]) -> None:
        self._transport = transport
        #: Called after each flush (the connection may take its hot path again).
        self._on_flush = on_flush
        self._cursors: dict[Batch, _Cursor] = {}
        #: The transport's own unsent bytes when the first batch came.
        self._base = 0

    def __bool__(self) -> bool:
        return bool(self._cursors)

    @property
    def size(self) -> int:
        """Bytes of messages waiting to be written."""
        size = 0
        for batch, (_, written, _) in self._cursors.items():
            size += batch.size - written
        return size

    def push(self, batch: Batch, resp3: bool, caught_up: bool) -> int:
        """Take ``batch``'s frames from now on (``caught_up``: from its next frame on, the
        publisher's own being answered in its reply); return the bytes held unsent.

        Telling it again of a batch it has changes nothing unless ``caught_up``.
        """
        cursors = self._cursors
        if not cursors:
            # Sampled once per iteration: a reply flushes the outbox before it is written.
            self._base = self._transport.get_write_buffer_size()
        cursor = cursors.get(batch)
        if cursor is None:
            batch.takers.append(self)
        if caught_up:
            cursor = cursors[batch] = (len(batch.frames), batch.size, resp3)
        elif cursor is None:
            cursor = cursors[batch] = (0, 0, resp3)
        return self._base + (batch.size - cursor[1] if len(cursors) == 1 else self.size)

    def flush(self, *, last: bool = False) -> None:
        """Write what is waiting (nothing once the transport is closing); forget closed
        batches. The hub calls it when it closes a batch; a connection before a reply, and
        with ``last`` before it stops writing (its batches still open are forgotten too)."""
        cursors = self._cursors
        if not cursors:
            return
        if last:
            data = _merged(cursors)
            cursors.clear()
        elif len(cursors) == 1:
            batch = next(iter(cursors))
            start, _, resp3 = cursors[batch]
            data = batch.data(start, resp3)
            if batch.open:
                cursors[batch] = (len(batch.frames), batch.size, resp3)
            else:
                cursors.clear()
        else:
            data = _merged(cursors)
            for batch, (_, _, resp3) in list(cursors.items()):
                if batch.open:
                    cursors[batch] = (len(batch.frames), batch.size, resp3)
                else:
                    del cursors[batch]
        if data and not self._transport.is_closing():
            self._transport.write(data)
        self._on_flush()
