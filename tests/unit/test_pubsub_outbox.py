"""``Batch`` and ``Outbox``: one write per connection per batch, in publishing order, each frame
once, and none once the transport is closing."""

from __future__ import annotations

import pytest

from blinkstore_gunicorn.server.pubsub_outbox import Batch, Outbox, close, push_frame
from tests.support.outbox import RecordingTransport


def frame(text: bytes) -> bytes:
    """A RESP2 ``message`` frame on channel ``c``."""
    return b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$%d\r\n%b\r\n" % (len(text), text)


def outbox() -> tuple[Outbox, RecordingTransport]:
    transport = RecordingTransport()
    return Outbox(transport, lambda: None), transport


def taking(text: bytes, *, caught_up: bool = False) -> tuple[Batch, Outbox, RecordingTransport]:
    """A batch holding one frame, and an outbox told of it."""
    batch = Batch()
    box, sent = outbox()
    batch.add(1, frame(text))
    box.push(batch, False, caught_up)
    return batch, box, sent


def test_a_batch_is_joined_once_per_protocol_and_written_once_per_connection() -> None:
    batch = Batch()
    (one, one_sent), (two, two_sent), (three, three_sent) = outbox(), outbox(), outbox()
    batch.add(1, frame(b"a"))
    for box, resp3 in ((one, False), (two, False), (three, True)):
        box.push(batch, resp3, False)
    batch.add(2, frame(b"b"))
    assert one and one_sent.writes == []
    close([batch])
    assert not one
    assert one_sent.writes == [frame(b"a") + frame(b"b")]
    assert two_sent.writes == one_sent.writes
    assert three_sent.writes == [push_frame(frame(b"a")) + push_frame(frame(b"b"))]
    assert three_sent.writes[0].startswith(b">3\r\n")


def test_several_batches_merge_in_publishing_order() -> None:
    channel, pattern = Batch(), Batch()
    box, sent = outbox()
    channel.add(1, frame(b"1"))
    box.push(channel, False, False)
    pattern.add(2, frame(b"2"))
    box.push(pattern, False, False)
    channel.add(3, frame(b"3"))
    pattern.add(4, frame(b"4"))
    close([channel, pattern])
    assert sent.writes == [frame(b"1") + frame(b"2") + frame(b"3") + frame(b"4")]


def test_a_flush_before_a_reply_keeps_the_open_batch_and_writes_each_frame_once() -> None:
    batch, box, sent = taking(b"before")
    box.flush()  # the connection is about to write a reply
    assert sent.writes == [frame(b"before")]
    assert box, "the batch is still open: it may grow"
    batch.add(2, frame(b"after"))
    close([batch])
    assert sent.writes == [frame(b"before"), frame(b"after")]
    assert not box


def test_the_publishers_own_frame_is_skipped_and_the_others_come() -> None:
    batch, _, sent = taking(b"own", caught_up=True)
    batch.add(2, frame(b"theirs"))
    close([batch])
    assert sent.writes == [frame(b"theirs")]


def test_pending_counts_the_transport_and_what_waits() -> None:
    batch = Batch()
    box, sent = outbox()
    sent.unsent = 100
    batch.add(1, frame(b"x"))
    assert box.push(batch, False, False) == 100 + len(frame(b"x"))
    batch.add(2, frame(b"yy"))
    assert box.size == len(frame(b"x")) + len(frame(b"yy"))
    assert box.push(batch, False, False) == 100 + box.size


def test_nothing_is_written_once_the_transport_is_closing() -> None:
    batch, box, sent = taking(b"late")
    sent.closing = True
    close([batch])
    assert sent.writes == []
    assert not box


def test_a_last_flush_forgets_the_open_batches() -> None:
    """A closing connection shuts its write side after this flush: writing later would fail."""
    batch, box, sent = taking(b"before")
    box.flush(last=True)
    assert not box
    batch.add(2, frame(b"after the close"))
    close([batch])
    assert sent.writes == [frame(b"before")]


class BrokenTransport(RecordingTransport):
    """A transport whose every write fails."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        raise RuntimeError("broken")


def test_a_failing_connection_does_not_keep_the_others_messages_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batch = Batch()
    broken = Outbox(BrokenTransport(), lambda: None)
    box, sent = outbox()
    batch.add(1, frame(b"m"))
    broken.push(batch, False, False)
    box.push(batch, False, False)
    close([batch])
    assert sent.writes == [frame(b"m")]
    assert "writing a subscriber's messages failed" in caplog.text
