"""A pub/sub subscriber without a socket: the store's ``Outbox`` over a transport that records.

The hub and the command handlers are tested through it, so what they hand over is written by
the same code as in the store (batches, cursors, the merge of several batches).
"""

from __future__ import annotations

import asyncio

from blinkstore_gunicorn.server.pubsub_outbox import Outbox


class RecordingTransport(asyncio.WriteTransport):
    """Keeps what is written; what nobody has read yet counts as its write buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.unsent = 0
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.unsent += len(data)

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return self.closing

    def read(self) -> bytes:
        """Everything written since the last read (its write buffer is empty again)."""
        data = b"".join(self.writes)
        self.writes, self.unsent = [], 0
        return data


class FakeSubscriber:
    """What the hub needs of a connection, with a real ``Outbox``; counts its drops."""

    def __init__(self, client_id: int = 1, *, resp3: bool = False) -> None:
        self.id = client_id
        self.resp3 = resp3
        self.transport = RecordingTransport()
        self.outbox = Outbox(self.transport, lambda: None)
        self.push = self.outbox.push
        self.drops = 0

    def drop(self) -> None:
        self.drops += 1

    def read(self) -> bytes:
        """The messages written to it since the last read."""
        return self.transport.read()
