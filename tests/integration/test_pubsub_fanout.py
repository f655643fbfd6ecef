"""Fan-out of a burst of messages, byte for byte as redis-server sends it.

The store gathers the messages of one event-loop iteration per channel and pattern and writes
each subscriber its share once (``server/pubsub_outbox.py``). A burst pipelined in one write
is one iteration, so these tests check that batching changes nothing a client sees: the same
frames in the same order on RESP2 and RESP3 connections, a subscriber of a channel and of a
pattern matching it receiving both, a publisher that is a subscriber answered in order, and
subscriptions that change in the middle of the burst.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack

from harness.processes import RedisProcess, StoreProcess, resp_command
from tests.support.sockets import recv_until

TIMEOUT = 10.0
#: The reply to PING that ends a read: RESP2 in subscribed mode, else ``+PONG``.
PONGS = (b"*2\r\n$4\r\npong\r\n$0\r\n\r\n", b"+PONG\r\n")

#: Each subscriber: whether it speaks RESP3, then the requests that set it up.
SUBSCRIBERS: list[tuple[bool, list[tuple[str, ...]]]] = [
    (False, [("SUBSCRIBE", "news.tech"), ("PSUBSCRIBE", "news.*")]),
    (True, [("SUBSCRIBE", "news.tech"), ("PSUBSCRIBE", "news.*")]),
    (False, [("PSUBSCRIBE", "news.*")]),
    (True, [("SUBSCRIBE", "news.tech", "news.sport"), ("PSUBSCRIBE", "*.tech")]),
    (False, [("SUBSCRIBE", "news.sport", "weather")]),
]

#: The last subscriber, ``own``: it publishes too (:data:`OWN_BURST`).
OWN: tuple[bool, list[tuple[str, ...]]] = (True, [("SUBSCRIBE", "news.tech")])

#: One pipelined write from a plain connection.
BURST = [
    ("PUBLISH", channel, f"{n}-{channel}")
    for n in range(40)
    for channel in ("news.tech", "news.sport", "other.tech", "weather", "nobody")
]

#: One pipelined write from a RESP3 connection that is itself a subscriber of news.tech and
#: changes its subscriptions as it publishes.
OWN_BURST = [
    ("PUBLISH", "news.tech", "mine"),
    ("SUBSCRIBE", "news.sport"),
    ("PUBLISH", "news.sport", "mine too"),
    ("PUBLISH", "news.tech", "again"),
    ("UNSUBSCRIBE", "news.tech"),
    ("PUBLISH", "news.tech", "not for me"),
    ("PSUBSCRIBE", "news.*"),
    ("PUBLISH", "news.tech", "through my pattern"),
    ("PING",),
]


def until_pong(sock: socket.socket) -> bytes:
    """Everything received up to the reply to a PING sent after it (that reply left out)."""
    return recv_until(sock, PONGS)


def send(sock: socket.socket, requests: list[tuple[str, ...]]) -> None:
    sock.sendall(b"".join(resp_command(*request) for request in requests))


def session(server: StoreProcess | RedisProcess) -> list[bytes]:
    """Set up the subscribers, publish both bursts; what each connection received."""
    with ExitStack() as stack:
        publisher = stack.enter_context(server.connect(timeout=TIMEOUT))
        subscribers = []
        for resp3, setup in [*SUBSCRIBERS, OWN]:
            sock = stack.enter_context(server.connect(timeout=TIMEOUT))
            hello: list[tuple[str, ...]] = [("HELLO", "3")] if resp3 else []
            send(sock, [*hello, *setup, ("PING",)])
            until_pong(sock)  # the setup's replies (HELLO's differ by nature)
            subscribers.append(sock)
        *others, own = subscribers
        send(publisher, [*BURST, ("PING",)])
        received = [until_pong(publisher)]
        send(own, OWN_BURST)
        received.append(until_pong(own))
        # Then once more each: whatever came after the replies above (nothing, in Redis).
        for sock in [*others, publisher, own]:
            send(sock, [("PING",)])
            received.append(until_pong(sock))
        return received


def test_a_pipelined_burst_reaches_every_subscriber_as_redis_sends_it(
    blinkstore_unix: StoreProcess, redis_server: RedisProcess
) -> None:
    ours, theirs = session(blinkstore_unix), session(redis_server)
    names = [
        "publisher",
        "own",
        *(f"subscriber {n}" for n in range(len(SUBSCRIBERS))),
        "publisher, later",
        "own, later",
    ]
    for name, mine, reference in zip(names, ours, theirs, strict=True):
        assert (name, mine) == (name, reference)
    # Not vacuous: the burst reached them, in both protocols, through channels and patterns.
    # (news.tech: 40 from the burst, 4 from ``own``; news.*: those and 41 on news.sport)
    assert ours[2].count(b"*3\r\n$7\r\nmessage") == 44
    assert ours[2].count(b"*4\r\n$8\r\npmessage") == 85
    assert ours[3].count(b">4\r\n$8\r\npmessage") == 85
    assert b"through my pattern" in ours[1]
    assert ours[-2:] == [b"", b""]
