"""``Outbox``: a connection's pub/sub messages of one event-loop iteration, written together.

A subscriber receives each message the moment it is published, but a pipeline of a thousand
PUBLISH commands would otherwise cost it a thousand writes (system calls). Like Redis, which
writes a client's output buffer once per event-loop iteration, the messages handed to a
connection during one iteration are joined and written at its end (``call_soon``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Outbox"]


class Outbox:
    """Frames waiting for the end of this event-loop iteration; true while there are some."""

    __slots__ = ("_base", "_frames", "_on_flush", "_transport", "size")

    def __init__(self, transport: asyncio.WriteTransport, on_flush: Callable[[], None]) -> None:
        self._transport = transport
        #: Called after each write (the connection may take its hot path again).
        self._on_flush = on_flush
        self._frames: list[bytes] = []
        #: Bytes of the frames waiting.
        self.size = 0
        #: The transport's own unsent bytes when the first frame came.
        self._base = 0

    def __bool__(self) -> bool:
        return bool(self._frames)

    def push(self, frame: bytes) -> int:
        """Queue ``frame``; the bytes the connection now holds unsent."""
        frames = self._frames
        if not frames:
            # Sampled once per iteration: a reply flushes the outbox before it is written.
            self._base = self._transport.get_write_buffer_size()
            asyncio.get_running_loop().call_soon(self.flush)
        frames.append(frame)
        self.size += len(frame)
        return self._base + self.size

    def flush(self) -> None:
        """Write what is waiting (nothing once the transport is closing)."""
        frames = self._frames
        if not frames:
            return
        self._frames = []
        self.size = 0
        if not self._transport.is_closing():
            self._transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        self._on_flush()
