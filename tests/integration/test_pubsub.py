"""Pub/sub against a real ``blinkstore serve`` and, as the reference, a real redis-server.

redis-py's own PubSub usage (sync and asyncio, RESP2 and RESP3), the ``broadcaster`` package's
redis backend, Redis's exact bytes for the same request sequence, and the store's bound on a
subscriber that does not read.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from broadcaster import Broadcast
from broadcaster._backends.redis import RedisBackend

from harness.gunicorn import wait_until
from harness.processes import RedisProcess, StoreProcess, resp_command
from tests.conftest import StoreFactory
from tests.support.processes import resp_server_process
from tests.support.sockets import recv_until

TIMEOUT = 10.0


@pytest.fixture(scope="module", params=["store", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[StoreProcess | RedisProcess]:
    with resp_server_process(request.param) as server_process:
        yield server_process


def next_message(pubsub: redis.client.PubSub) -> dict[str, Any]:
    """The next message (subscription confirmations included), waiting up to ``TIMEOUT``."""
    message = pubsub.get_message(timeout=TIMEOUT)
    assert message is not None, "no message within the timeout"
    return message


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_subscribe_publish_unsubscribe(
    server: StoreProcess | RedisProcess, protocol: int
) -> None:
    with redis.Redis.from_url(server.url, protocol=protocol) as client:
        pubsub = client.pubsub()
        try:
            pubsub.subscribe("news", "sports")
            assert next_message(pubsub) == {
                "type": "subscribe",
                "pattern": None,
                "channel": b"news",
                "data": 1,
            }
            assert next_message(pubsub)["data"] == 2
            assert client.publish("news", "hello") == 1
            assert client.publish("weather", "rain") == 0
            assert next_message(pubsub) == {
                "type": "message",
                "pattern": None,
                "channel": b"news",
                "data": b"hello",
            }
            assert sorted(client.pubsub_channels()) == [b"news", b"sports"]
            assert client.pubsub_numsub("news", "nobody") == [(b"news", 1), (b"nobody", 0)]
            pubsub.unsubscribe("news")
            assert next_message(pubsub) == {
                "type": "unsubscribe",
                "pattern": None,
                "channel": b"news",
                "data": 1,
            }
            assert client.publish("news", "unheard") == 0
            pubsub.unsubscribe()
            assert next_message(pubsub)["channel"] == b"sports"
            assert pubsub.get_message(timeout=0.05) is None
            assert not pubsub.subscribed
        finally:
            pubsub.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_psubscribe_listen_and_ping(
    server: StoreProcess | RedisProcess, protocol: int
) -> None:
    with redis.Redis.from_url(server.url, protocol=protocol, decode_responses=True) as client:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.psubscribe("room.*")
            pubsub.subscribe("room.1")
            # The confirmations must have arrived before publishing, or a message could race.
            assert wait_until(lambda: client.pubsub_numpat() == 1, TIMEOUT)
            assert wait_until(lambda: client.pubsub_numsub("room.1") == [("room.1", 1)], TIMEOUT)
            assert client.publish("room.1", "a") == 2
            assert client.publish("room.2", "b") == 1
            received = []
            for message in pubsub.listen():
                if message is not None:
                    received.append((message["type"], message["pattern"], message["data"]))
                if len(received) == 3:
                    break
            assert sorted(received, key=str) == sorted(
                [("message", None, "a"), ("pmessage", "room.*", "a"), ("pmessage", "room.*", "b")],
                key=str,
            )
            if protocol == 2:
                # RESP2 subscribed mode answers PING with ["pong", message]; RESP3 as usual.
                pubsub.ping("still there")
                assert next_message(pubsub) == {
                    "type": "pong",
                    "pattern": None,
                    "channel": None,
                    "data": "still there",
                }
            pubsub.punsubscribe()
            pubsub.unsubscribe()
            assert wait_until(lambda: client.pubsub_numpat() == 0, TIMEOUT)
        finally:
            pubsub.close()


def test_closing_the_connection_ends_its_subscriptions(
    server: StoreProcess | RedisProcess,
) -> None:
    with redis.Redis.from_url(server.url) as client:
        pubsub = client.pubsub()
        pubsub.subscribe("gone")
        next_message(pubsub)
        assert client.publish("gone", "x") == 1
        pubsub.close()
        assert wait_until(lambda: client.publish("gone", "x") == 0, TIMEOUT)


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_asyncio_pubsub(server: StoreProcess | RedisProcess, protocol: int) -> None:
    async def scenario() -> list[tuple[str, bytes]]:
        client = redis.asyncio.Redis.from_url(server.url, protocol=protocol)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe("jobs")
            await pubsub.psubscribe("job*")
            deadline = time.monotonic() + TIMEOUT
            while await client.pubsub_numpat() != 1:
                assert time.monotonic() < deadline, "the pattern subscription never registered"
                await asyncio.sleep(0.01)
            assert await client.publish("jobs", "one") == 2
            assert await client.publish("jobless", "two") == 1
            received = []
            async for message in pubsub.listen():
                received.append((message["type"], message["data"]))
                if len(received) == 3:
                    break
            await pubsub.unsubscribe()
            await pubsub.punsubscribe()
            return sorted(received)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            await client.aclose()

    assert asyncio.run(asyncio.wait_for(scenario(), TIMEOUT)) == [
        ("message", b"one"),
        ("pmessage", b"one"),
        ("pmessage", b"two"),
    ]


async def broadcast_round_trip(broadcast: Broadcast) -> list[tuple[str, str]]:
    """broadcaster's own test of its backends: subscribe, publish, read from the subscriber.

    broadcaster 0.3.1's redis backend wakes its listener before redis-py has recorded the first
    subscription, and the listener then stops until the next subscribe (with redis-server just
    the same): the ``warm-up`` subscription, held throughout, is what an application does too.
    """
    async with (
        broadcast,
        broadcast.subscribe("warm-up"),
        broadcast.subscribe("chatroom") as subscriber,
    ):
        await broadcast.publish("chatroom", "hello")
        await broadcast.publish("chatroom", "world")
        first, second = await subscriber.get(), await subscriber.get()
        return [(first.channel, first.message), (second.channel, second.message)]


def test_broadcaster_redis_backend(server: StoreProcess | RedisProcess) -> None:
    broadcast = Broadcast(backend=RedisBackend(server.url))
    assert asyncio.run(asyncio.wait_for(broadcast_round_trip(broadcast), TIMEOUT)) == [
        ("chatroom", "hello"),
        ("chatroom", "world"),
    ]


def test_broadcaster_with_a_redis_url_to_the_store(blinkstore_tcp: StoreProcess) -> None:
    host, port = blinkstore_tcp.tcp_address or ("", 0)
    broadcast = Broadcast(f"redis://{host}:{port}")
    assert asyncio.run(asyncio.wait_for(broadcast_round_trip(broadcast), TIMEOUT))[0] == (
        "chatroom",
        "hello",
    )


# --- the same bytes as redis-server ----------------------------------------------------------

#: Requests sent one at a time, each reply read before the next (RESP2, then RESP3).
TRANSCRIPT: list[tuple[str, ...]] = [
    ("PUBSUB", "NUMPAT"),
    ("PUBSUB", "CHANNELS", "a", "b"),
    ("PUBSUB", "NUMSUB"),
    ("PUBSUB", "nosuch"),
    ("PUBSUB", "NUMPAT", "x"),
    ("PUBSUB",),
    ("UNSUBSCRIBE",),
    ("PUNSUBSCRIBE",),
    ("UNSUBSCRIBE", "x", "y"),
    ("SUBSCRIBE",),
    ("PUBLISH", "a"),
    ("SUBSCRIBE", "a", "b", "a"),
    ("PING",),
    ("PING", "hi"),
    ("PING", "a", "b"),
    ("GET", "x"),
    ("gEt", "x"),
    ("GET",),
    ("nosuch",),
    ("PUBLISH", "a", "m"),
    ("PUBSUB", "NUMSUB", "a"),
    ("CLIENT", "ID"),
    ("PSUBSCRIBE", "h*"),
    ("UNSUBSCRIBE", "b"),
    ("UNSUBSCRIBE", "a"),
    ("PUNSUBSCRIBE", "h*", "zz"),
    ("PING",),
    ("PUBSUB", "NUMSUB", "a", "b"),
    ("HELLO", "3"),
    ("SUBSCRIBE", "a"),
    ("PING",),
    ("GET", "x"),
    ("PUBLISH", "a", "to myself"),
    ("UNSUBSCRIBE",),
    ("UNSUBSCRIBE",),
    ("PUNSUBSCRIBE",),
]


#: Replies that differ by nature (client ids, server version).
UNLIKE = {("CLIENT", "ID"), ("HELLO", "3")}


def transcript(sock: socket.socket) -> list[bytes]:
    """Send :data:`TRANSCRIPT`, one request at a time; the raw reply to each."""
    replies = []
    for request in TRANSCRIPT:
        sock.sendall(resp_command(*request))
        replies.append(read_reply(sock))
    return replies


#: What the marker request (ECHO) gets: its echo, or in RESP2 subscribed mode Redis's refusal.
MARKERS = (
    b"$12\r\nend-of-reply\r\n",
    b"-ERR Can't execute 'echo': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET"
    b" are allowed in this context\r\n",
)


def read_reply(sock: socket.socket) -> bytes:
    """Read until the reply to the request just sent is complete (the marker's reply after
    it ends it)."""
    sock.sendall(resp_command("ECHO", "end-of-reply"))
    return recv_until(sock, MARKERS)


def test_replies_are_byte_for_byte_redis_servers(
    blinkstore_unix: StoreProcess, redis_server: RedisProcess
) -> None:
    with blinkstore_unix.connect() as store, redis_server.connect() as peer:
        ours, theirs = transcript(store), transcript(peer)
    for request, mine, reference in zip(TRANSCRIPT, ours, theirs, strict=True):
        if request in UNLIKE:
            continue
        assert (request, mine) == (request, reference)


# --- a subscriber that does not read --------------------------------------------------------


def test_a_subscriber_that_does_not_read_is_disconnected(blinkstore_factory: StoreFactory) -> None:
    store = blinkstore_factory("--pubsub-buffer-limit", "64KiB")
    message = b"x" * 32 * 1024
    with store.connect() as slow, redis.Redis.from_url(store.url) as client:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(resp_command("SUBSCRIBE", "firehose"))
        assert wait_until(lambda: client.pubsub_numsub("firehose")[0][1] == 1, TIMEOUT)
        fast = client.pubsub()
        fast.subscribe("firehose")
        next_message(fast)
        published = 0
        # The kernel's socket buffers take some first; then the store's own buffer grows.
        while client.pubsub_numsub("firehose")[0][1] == 2:
            client.publish("firehose", message)
            published += 1
            assert next_message(fast)["data"] == message
            assert published < 10_000, "the slow subscriber was never disconnected"
        assert client.publish("firehose", b"after") == 1
        assert next_message(fast)["data"] == b"after"
        fast.close()
        assert client.info("stats")["client_output_buffer_limit_disconnections"] == 1
        # The slow socket reads whatever was sent before the store aborted it, then its end.
        slow.settimeout(TIMEOUT)
        with pytest.raises(ConnectionError):
            while slow.recv(1 << 20):
                pass
            raise ConnectionResetError
    assert "subscriber(s) leaving more than 65536 bytes of messages unread" in store.log_text()
