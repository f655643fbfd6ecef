"""``Outbox``: one write per event-loop iteration, and none once the transport is closing."""

from __future__ import annotations

import asyncio

from blinkstore_gunicorn.server.pubsub_outbox import Outbox


class FakeTransport(asyncio.WriteTransport):
    """Records writes; ``unsent`` is what it reports as its write buffer."""

    def __init__(self, unsent: int = 0) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.unsent = unsent
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return self.closing


def test_frames_of_one_iteration_go_out_in_one_write() -> None:
    async def scenario() -> tuple[list[bytes], list[int], int]:
        transport = FakeTransport(unsent=100)
        flushed: list[int] = []
        outbox = Outbox(transport, lambda: flushed.append(len(transport.writes)))
        pending = [outbox.push(b"one"), outbox.push(b"two!")]
        assert outbox and transport.writes == []
        await asyncio.sleep(0)
        assert not outbox
        pending.append(outbox.push(b"three"))
        await asyncio.sleep(0)
        return transport.writes, pending, len(flushed)

    writes, pending, flushes = asyncio.run(scenario())
    assert writes == [b"onetwo!", b"three"]
    assert pending == [103, 107, 105]
    assert flushes == 2


def test_nothing_is_written_once_the_transport_is_closing() -> None:
    async def scenario() -> list[bytes]:
        transport = FakeTransport()
        outbox = Outbox(transport, lambda: None)
        outbox.push(b"late")
        transport.closing = True
        await asyncio.sleep(0)
        return transport.writes

    assert asyncio.run(scenario()) == []
