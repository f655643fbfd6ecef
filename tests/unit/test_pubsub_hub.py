"""The pub/sub hub alone: subscriptions, Redis's frames byte for byte, bounded delivery."""

from __future__ import annotations

import asyncio

import pytest

from blinkstore_gunicorn.server.pubsub import PubSubHub
from tests.support.outbox import FakeSubscriber


def test_subscribe_confirms_each_channel_with_the_running_count() -> None:
    hub = PubSubHub()
    sub = FakeSubscriber()
    assert hub.subscribe(sub, [b"a", b"b", b"a"]) == (
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:2\r\n"
    )
    assert hub.psubscribe(sub, [b"h*"]) == b"*3\r\n$10\r\npsubscribe\r\n$2\r\nh*\r\n:3\r\n"
    assert hub.subscriptions(sub) == 3


def test_resp3_subscribers_get_push_frames() -> None:
    hub = PubSubHub()
    sub = FakeSubscriber(resp3=True)
    assert hub.subscribe(sub, [b"a"]) == b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
    assert hub.publish(b"a", b"m") == (1, b"")
    assert sub.read() == b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nm\r\n"
    assert hub.unsubscribe(sub, []) == b">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n"
    assert hub.unsubscribe(sub, []) == b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"


def test_unsubscribe_without_names_leaves_every_channel_and_names_each() -> None:
    hub = PubSubHub()
    sub = FakeSubscriber()
    hub.subscribe(sub, [b"a", b"b"])
    hub.psubscribe(sub, [b"p*"])
    assert hub.unsubscribe(sub, []) == (
        b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n"
        b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n"
    )
    assert hub.punsubscribe(sub, [b"p*", b"zz"]) == (
        b"*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n"
        b"*3\r\n$12\r\npunsubscribe\r\n$2\r\nzz\r\n:0\r\n"
    )
    assert hub.subscriptions(sub) == 0
    assert hub.channels() == [] and hub.numpat() == 0


def test_unsubscribe_when_subscribed_to_nothing_sends_a_null_channel() -> None:
    hub = PubSubHub()
    sub = FakeSubscriber()
    assert hub.unsubscribe(sub, []) == b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
    assert hub.punsubscribe(sub, []) == b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"
    assert hub.unsubscribe(sub, [b"x"]) == b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nx\r\n:0\r\n"


def test_publish_reaches_channel_and_pattern_subscribers_once_per_subscription() -> None:
    hub = PubSubHub()
    both, channel_only, pattern_only, other = (FakeSubscriber(i) for i in range(4))
    hub.subscribe(both, [b"news.tech"])
    hub.psubscribe(both, [b"news.*"])
    hub.subscribe(channel_only, [b"news.tech"])
    hub.psubscribe(pattern_only, [b"news.[st]*"])
    hub.subscribe(other, [b"sports"])
    assert hub.publish(b"news.tech", b"hi") == (4, b"")
    message = b"*3\r\n$7\r\nmessage\r\n$9\r\nnews.tech\r\n$2\r\nhi\r\n"
    assert both.read() == (
        message + b"*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$9\r\nnews.tech\r\n$2\r\nhi\r\n"
    )
    assert channel_only.read() == message
    assert pattern_only.read() == (
        b"*4\r\n$8\r\npmessage\r\n$10\r\nnews.[st]*\r\n$9\r\nnews.tech\r\n$2\r\nhi\r\n"
    )
    assert other.read() == b""
    assert hub.publish(b"nobody", b"x") == (0, b"")


def test_the_publishers_own_frames_are_returned_not_pushed() -> None:
    hub = PubSubHub()
    me = FakeSubscriber(resp3=True)
    hub.subscribe(me, [b"c"])
    count, own = hub.publish(b"c", b"x", publisher=me)
    assert (count, own) == (1, b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n")
    assert me.read() == b""


def test_pubsub_introspection() -> None:
    hub = PubSubHub()
    one, two = FakeSubscriber(1), FakeSubscriber(2)
    hub.subscribe(one, [b"a", b"b"])
    hub.subscribe(two, [b"a", b"abc"])
    hub.psubscribe(one, [b"x*"])
    hub.psubscribe(two, [b"x*", b"y*"])
    assert sorted(hub.channels()) == [b"a", b"abc", b"b"]
    assert sorted(hub.channels(b"a*")) == [b"a", b"abc"]
    assert [hub.numsub(c) for c in (b"a", b"b", b"x1", b"zz")] == [2, 1, 0, 0]
    assert hub.numpat() == 2
    hub.remove(two)
    assert sorted(hub.channels()) == [b"a", b"b"]
    assert hub.numpat() == 1
    assert hub.publish(b"abc", b"m") == (0, b"")


@pytest.mark.parametrize("via_pattern", [False, True])
def test_a_subscriber_over_the_limit_is_dropped_and_the_others_go_on(via_pattern: bool) -> None:
    hub = PubSubHub(pending_limit=100)
    slow, fast = FakeSubscriber(1), FakeSubscriber(2)
    hub.subscribe(slow, [b"c"])
    if via_pattern:
        hub.psubscribe(slow, [b"c*"])
    hub.subscribe(fast, [b"c"])
    message = b"m" * 20
    sent = 0
    while not slow.drops:
        count, _ = hub.publish(b"c", message)
        assert count >= 2
        sent += 1
        fast.read()
        assert sent < 100, "the slow subscriber was never dropped"
    assert slow.drops == 1
    assert slow.transport.unsent > 100
    assert hub.dropped == 1
    assert hub.subscriptions(slow) == 0
    assert hub.publish(b"c", message) == (1, b"")
    assert fast.read().count(b"message") == 1
    assert slow.drops == 1


def test_a_subscriber_that_reads_is_never_dropped() -> None:
    hub = PubSubHub(pending_limit=100)
    sub = FakeSubscriber()
    hub.subscribe(sub, [b"c"])
    for _ in range(50):
        hub.publish(b"c", b"m" * 40)
        sub.read()
    assert sub.drops == 0 and hub.dropped == 0


def message(channel: bytes, text: bytes) -> bytes:
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
        len(channel),
        channel,
        len(text),
        text,
    )


def test_one_iteration_of_publishes_is_one_write_per_subscriber() -> None:
    async def scenario() -> list[FakeSubscriber]:
        hub = PubSubHub()
        subscribers = [FakeSubscriber(n, resp3=n % 2 == 1) for n in range(4)]
        for sub in subscribers:
            hub.subscribe(sub, [b"c"])
        for n in range(50):
            assert hub.publish(b"c", b"%d" % n) == (4, b"")
        assert all(sub.transport.writes == [] for sub in subscribers)
        await asyncio.sleep(0)  # the iteration ends
        return subscribers

    expected = b"".join(message(b"c", b"%d" % n) for n in range(50))
    for sub in asyncio.run(scenario()):
        assert sub.transport.writes == [
            expected.replace(b"*3\r\n", b">3\r\n") if sub.resp3 else expected
        ]


def test_subscriptions_changed_within_an_iteration_get_exactly_their_messages() -> None:
    async def scenario() -> tuple[FakeSubscriber, FakeSubscriber]:
        hub = PubSubHub()
        early, late = FakeSubscriber(1), FakeSubscriber(2)
        hub.subscribe(early, [b"c"])
        hub.publish(b"c", b"1")
        hub.subscribe(late, [b"c"])
        hub.publish(b"c", b"2")
        hub.unsubscribe(early, [b"c"])
        hub.publish(b"c", b"3")
        await asyncio.sleep(0)
        return early, late

    early, late = asyncio.run(scenario())
    assert early.transport.writes == [message(b"c", b"1") + message(b"c", b"2")]
    assert late.transport.writes == [message(b"c", b"2") + message(b"c", b"3")]


def test_a_subscriber_passing_the_limit_within_an_iteration_is_dropped() -> None:
    async def scenario() -> tuple[PubSubHub, FakeSubscriber, FakeSubscriber, int]:
        hub = PubSubHub(pending_limit=1000)
        slow, fast = FakeSubscriber(1), FakeSubscriber(2)
        hub.subscribe(slow, [b"c"])
        hub.subscribe(fast, [b"c"])
        slow.transport.unsent = 900  # written earlier, still unread
        sent = 0
        while not slow.drops:
            hub.publish(b"c", b"m" * 20)
            sent += 1
            assert sent < 100, "the slow subscriber was never dropped"
        await asyncio.sleep(0)
        return hub, slow, fast, sent

    hub, slow, fast, sent = asyncio.run(scenario())
    size = len(message(b"c", b"m" * 20))
    assert 900 + (sent - 1) * size <= 1000 < 900 + sent * size  # at the first message over
    assert hub.dropped == 1 and hub.subscriptions(slow) == 0
    assert fast.drops == 0 and fast.read().count(b"message") == sent
