"""The pub/sub command family through the dispatcher (no sockets): subscribed mode, what a
connection receives, and what closing it ends. Byte-for-byte replies against redis-server are
in ``tests/integration/test_pubsub.py``."""

from __future__ import annotations

from blinkstore_gunicorn.engine import MemoryEngine
from blinkstore_gunicorn.server.commands.replies import MAX_PATTERN
from blinkstore_gunicorn.server.dispatch import Client, Dispatcher
from blinkstore_gunicorn.server.pubsub_outbox import Outbox
from tests.support.outbox import RecordingTransport

NOT_IN_CONTEXT = (
    b"-ERR Can't execute '%b': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET"
    b" are allowed in this context\r\n"
)


def make() -> tuple[Dispatcher, Client, RecordingTransport]:
    """A dispatcher and a client whose messages are written to the returned transport."""
    d = Dispatcher(MemoryEngine(memory_limit=0, clock_ms=lambda: 0), clock_ms=lambda: 0)
    client = d.new_client()
    transport = RecordingTransport()
    client.push = Outbox(transport, lambda: None).push
    return d, client, transport


def run(d: Dispatcher, client: Client, *args: bytes) -> bytes:
    return d.execute(client, list(args))


def test_subscribed_mode_refuses_other_commands_in_any_spelling() -> None:
    d, client, _ = make()
    run(d, client, b"SUBSCRIBE", b"c")
    for name in (b"GET", b"get", b"gEt"):
        assert run(d, client, name, b"k") == NOT_IN_CONTEXT % b"get"
    assert run(d, client, b"config", b"get", b"x") == NOT_IN_CONTEXT % b"config|get"
    assert run(d, client, b"GET") == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert run(d, client, b"PING") == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    run(d, client, b"UNSUBSCRIBE")
    assert run(d, client, b"gEt", b"k") == b"$-1\r\n"
    assert run(d, client, b"PING") == b"+PONG\r\n"


def test_resp3_connections_may_send_anything_and_get_their_own_messages_in_order() -> None:
    d, client, sent = make()
    run(d, client, b"HELLO", b"3")
    run(d, client, b"SUBSCRIBE", b"c")
    assert run(d, client, b"GET", b"k") == b"_\r\n"
    # Its own message comes before the reply to PUBLISH, not through push().
    assert run(d, client, b"PUBLISH", b"c", b"m") == (
        b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n:1\r\n"
    )
    assert sent.writes == []


def test_messages_go_to_other_connections_through_push() -> None:
    d, subscriber, sent = make()
    publisher = d.new_client()
    run(d, subscriber, b"PSUBSCRIBE", b"news.*")
    assert run(d, publisher, b"PUBLISH", b"news.tech", b"hi") == b":1\r\n"
    assert sent.writes == [
        b"*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$9\r\nnews.tech\r\n$2\r\nhi\r\n"
    ]


def test_closing_the_connection_ends_its_subscriptions() -> None:
    d, client, _ = make()
    before = len(client.on_close)
    run(d, client, b"SUBSCRIBE", b"a", b"b")
    run(d, client, b"UNSUBSCRIBE", b"a")
    run(d, client, b"SUBSCRIBE", b"a")
    assert len(client.on_close) == before + 1  # registered once, however often it subscribes
    for callback in client.on_close:
        callback()
    assert d.pubsub.channels() == []
    assert run(d, d.new_client(), b"PUBLISH", b"a", b"m") == b":0\r\n"


def test_patterns_are_bounded_like_keys_patterns() -> None:
    d, client, _ = make()
    too_long = b"*" * (MAX_PATTERN + 1)
    expected = b"-ERR pattern too long (max 4096 bytes)\r\n"
    assert run(d, client, b"PSUBSCRIBE", b"ok*", too_long) == expected
    assert run(d, client, b"PUBSUB", b"CHANNELS", too_long) == expected
    assert d.pubsub.numpat() == 0


def test_info_reports_channels_patterns_and_dropped_subscribers() -> None:
    d, client, _ = make()
    subscriber = d.new_client()
    run(d, subscriber, b"SUBSCRIBE", b"a", b"b")
    run(d, subscriber, b"PSUBSCRIBE", b"p*")
    stats = run(d, client, b"INFO", b"stats").decode()
    assert "pubsub_channels:2\r\n" in stats
    assert "pubsub_patterns:1\r\n" in stats
    assert "client_output_buffer_limit_disconnections:0\r\n" in stats
