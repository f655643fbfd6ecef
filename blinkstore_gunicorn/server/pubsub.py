"""The pub/sub hub: channels, patterns and who listens to each, without any I/O.

``PUBLISH`` hands a message to every subscriber of its channel and of every pattern matching it
(Redis glob patterns, :mod:`~blinkstore_gunicorn.engine.pattern`), in Redis's reply shapes:
``message`` and ``pmessage`` arrays in RESP2, the same as push frames (``>``) for a connection
that switched to RESP3.

Fan-out costs a step per message per channel (or pattern), not per subscriber: the message's
frame is encoded once and appended to the channel's :class:`~.pubsub_outbox.Batch` of this
event-loop iteration, and the channel's subscribers are told of that batch once per iteration,
when it opens (``pubsub_outbox.py`` writes it to each of them, joined once per protocol). The
batches close at the end of the iteration (``call_soon``; at the end of each publish when no
event loop runs), and whenever a channel's subscribers change, so that a subscriber receives
exactly the messages published while it listens.

Delivery is bounded the way Redis bounds it with ``client-output-buffer-limit pubsub``: a
subscriber that does not read its messages cannot make the store buffer them without end. When
it is told of a batch it reports the bytes it holds unsent, and the batch remembers the most
any of its subscribers held; once that plus the batch passes :attr:`PubSubHub.pending_limit`
every subscriber of the batch reports again, and those past the limit lose their subscriptions
at once and are told to disconnect (:meth:`Subscriber.drop`). The limit is per subscriber; all
connections together stay within the store's client budget as well (``server/budget.py``).

The hub writes nothing itself: a subscriber is anything with :meth:`Subscriber.push` and
:meth:`Subscriber.drop` (the store's connections, each with its ``Outbox``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from blinkstore_gunicorn.engine.pattern import compile_pattern
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.pubsub_outbox import Batch, close, push_frame
from blinkstore_gunicorn.server.throttle import LogThrottle

__all__ = ["DEFAULT_PENDING_LIMIT", "PubSubHub", "Subscriber"]

log = logging.getLogger("blinkstore.server")

#: Bytes of messages a subscriber may leave unread before it is disconnected: Redis's soft
#: ``client-output-buffer-limit pubsub`` (8mb), applied at once as our only limit.
DEFAULT_PENDING_LIMIT: Final = 8 * 1024 * 1024
#: Bytes one subscription takes besides its name (an entry in the subscriber's table and one in
#: the channel's): what :meth:`PubSubHub.held` counts for the store's client budget.
SUBSCRIPTION_OVERHEAD: Final = 200
#: Seconds between two "closed slow subscribers" log lines.
DROP_LOG_INTERVAL: Final = 10.0

_SUBSCRIBE: Final = resp.bulk(b"subscribe")
_UNSUBSCRIBE: Final = resp.bulk(b"unsubscribe")
_PSUBSCRIBE: Final = resp.bulk(b"psubscribe")
_PUNSUBSCRIBE: Final = resp.bulk(b"punsubscribe")
#: The start of a ``message`` and of a ``pmessage`` frame (RESP2; see ``push_frame``).
_MESSAGE: Final = b"*3\r\n" + resp.bulk(b"message")
_PMESSAGE: Final = b"*4\r\n" + resp.bulk(b"pmessage")


class Subscriber(Protocol):
    """What the hub needs from a subscribed connection."""

    #: Shown in the log line when the subscriber is dropped.
    id: int
    #: Whether frames go out as RESP3 pushes (``>``) instead of RESP2 arrays (``*``).
    resp3: bool

    def push(self, batch: Batch, resp3: bool, caught_up: bool) -> int:
        """Take the messages of ``batch`` (see ``Outbox.push``); return the bytes it holds
        unsent."""

    def drop(self) -> None:
        """Disconnect: the subscriber left more than the limit unread."""


def _frame(resp3: bool, count: int, body: bytes) -> bytes:
    return b"%b%d\r\n%b" % (b">" if resp3 else b"*", count, body)


def _forget(
    table: dict[bytes, dict[Subscriber, None]], name: bytes, subscriber: Subscriber
) -> bool:
    """Take ``subscriber`` off ``name``; forget the name (and return True) when it was the last."""
    subscribers = table[name]
    del subscribers[subscriber]
    if subscribers:
        return False
    del table[name]
    return True


class _Listeners:
    """One subscriber's channels and patterns, in the order they were subscribed."""

    __slots__ = ("channels", "patterns", "size")

    def __init__(self) -> None:
        self.channels: dict[bytes, None] = {}
        self.patterns: dict[bytes, None] = {}
        #: Bytes these subscriptions take, roughly (names plus dict entries, in two tables).
        self.size = 0

    def __len__(self) -> int:
        return len(self.channels) + len(self.patterns)

    def add(self, names: dict[bytes, None], name: bytes) -> bool:
        """Add ``name`` to ``names`` (its channels or its patterns); False if already there."""
        if name in names:
            return False
        names[name] = None
        self.size += len(name) + SUBSCRIPTION_OVERHEAD
        return True

    def discard(self, names: dict[bytes, None], name: bytes) -> bool:
        """Remove ``name`` from ``names``; False if it was not there."""
        if names.pop(name, 0) is not None:
            return False
        self.size -= len(name) + SUBSCRIPTION_OVERHEAD
        return True


class PubSubHub:
    """Every channel and pattern with its subscribers; delivers what is published."""

    __slots__ = (
        "_by_subscriber",
        "_channel_batches",
        "_channels",
        "_closed",
        "_closing",
        "_drops",
        "_matchers",
        "_pattern_batches",
        "_patterns",
        "_seq",
        "_tracked",
        "dropped",
        "on_new_channel",
        "on_new_pattern",
        "pending_limit",
    )

    def __init__(self, pending_limit: int = DEFAULT_PENDING_LIMIT) -> None:
        #: Bytes a subscriber may hold unsent before it is dropped.
        self.pending_limit = pending_limit
        #: Subscribers dropped for leaving too much unread (INFO's
        #: ``client_output_buffer_limit_disconnections``, Redis 7.2's name).
        self.dropped = 0
        self._channels: dict[bytes, dict[Subscriber, None]] = {}
        self._patterns: dict[bytes, dict[Subscriber, None]] = {}
        self._matchers: dict[bytes, Callable[[bytes], bool]] = {}
        self._by_subscriber: dict[Subscriber, _Listeners] = {}
        self._drops = LogThrottle(DROP_LOG_INTERVAL)
        self._tracked: set[Subscriber] = set()
        #: This iteration's batches, by channel and by pattern, and whether their closing is
        #: scheduled; frames are numbered in the order they are made (``Batch.seqs``).
        self._channel_batches: dict[bytes, Batch] = {}
        self._pattern_batches: dict[bytes, Batch] = {}
        self._closing = False
        #: Batches closed early (their subscribers changed), written with the others.
        self._closed: list[Batch] = []
        self._seq = 0
        #: Called with a channel that gets its first subscriber (the near cache subscribes
        #: to it upstream, see ``server/upstream/``).
        self.on_new_channel: Callable[[bytes], None] | None = None
        self.on_new_pattern: Callable[[bytes], None] | None = None

    # -- subscribing -----------------------------------------------------------------------

    def subscriptions(self, subscriber: Subscriber) -> int:
        """Channels plus patterns ``subscriber`` listens to (0: not in subscribed mode)."""
        listeners = self._by_subscriber.get(subscriber)
        return 0 if listeners is None else len(listeners)

    def counts(self, subscriber: Subscriber) -> tuple[int, int]:
        """The channels and the patterns ``subscriber`` listens to (``CLIENT LIST``)."""
        listeners = self._by_subscriber.get(subscriber)
        return (0, 0) if listeners is None else (len(listeners.channels), len(listeners.patterns))

    def track(self, subscriber: Subscriber) -> bool:
        """True the first time only: the caller then arranges :meth:`remove` on close."""
        if subscriber in self._tracked:
            return False
        self._tracked.add(subscriber)
        return True

    def held(self, subscriber: Subscriber) -> int:
        """Bytes ``subscriber``'s subscriptions take in the hub (counted as its buffers)."""
        listeners = self._by_subscriber.get(subscriber)
        return 0 if listeners is None else listeners.size

    def subscribe(self, subscriber: Subscriber, channels: Iterable[bytes]) -> bytes:
        """Add channels; one ``subscribe`` confirmation per channel named (repeats included)."""
        listeners = self._listeners(subscriber)
        frames = []
        for channel in channels:
            if listeners.add(listeners.channels, channel):
                if channel not in self._channels and self.on_new_channel is not None:
                    self.on_new_channel(channel)
                self._channels.setdefault(channel, {})[subscriber] = None
                self._close_batch(self._channel_batches, channel)
            frames.append(self._confirm(subscriber, _SUBSCRIBE, channel, len(listeners)))
        return b"".join(frames)

    def psubscribe(self, subscriber: Subscriber, patterns: Iterable[bytes]) -> bytes:
        """Add patterns; one ``psubscribe`` confirmation per pattern named."""
        listeners = self._listeners(subscriber)
        frames = []
        for pattern in patterns:
            if listeners.add(listeners.patterns, pattern):
                if pattern not in self._patterns:
                    self._matchers[pattern] = compile_pattern(pattern)
                    if self.on_new_pattern is not None:
                        self.on_new_pattern(pattern)
                self._patterns.setdefault(pattern, {})[subscriber] = None
                self._close_batch(self._pattern_batches, pattern)
            frames.append(self._confirm(subscriber, _PSUBSCRIBE, pattern, len(listeners)))
        return b"".join(frames)

    def unsubscribe(self, subscriber: Subscriber, channels: list[bytes]) -> bytes:
        """Remove the channels named (all when none is); one confirmation for each.

        With no channel named and none subscribed, one confirmation with a null channel, as
        Redis sends.
        """
        listeners = self._by_subscriber.get(subscriber, _Listeners())
        names = channels or list(listeners.channels)
        frames = []
        for channel in names:
            if listeners.discard(listeners.channels, channel):
                self._forget_channel(channel, subscriber)
            frames.append(self._confirm(subscriber, _UNSUBSCRIBE, channel, len(listeners)))
        self._release(subscriber, listeners)
        if not frames:
            frames.append(self._confirm(subscriber, _UNSUBSCRIBE, None, len(listeners)))
        return b"".join(frames)

    def punsubscribe(self, subscriber: Subscriber, patterns: list[bytes]) -> bytes:
        """Remove the patterns named (all when none is); one confirmation for each."""
        listeners = self._by_subscriber.get(subscriber, _Listeners())
        names = patterns or list(listeners.patterns)
        frames = []
        for pattern in names:
            if listeners.discard(listeners.patterns, pattern):
                self._forget_pattern(pattern, subscriber)
            frames.append(self._confirm(subscriber, _PUNSUBSCRIBE, pattern, len(listeners)))
        self._release(subscriber, listeners)
        if not frames:
            frames.append(self._confirm(subscriber, _PUNSUBSCRIBE, None, len(listeners)))
        return b"".join(frames)

    def remove(self, subscriber: Subscriber) -> None:
        """Forget every subscription of ``subscriber`` (its connection closed)."""
        self._tracked.discard(subscriber)
        listeners = self._by_subscriber.pop(subscriber, None)
        if listeners is None:
            return
        for channel in listeners.channels:
            self._forget_channel(channel, subscriber)
        for pattern in listeners.patterns:
            self._forget_pattern(pattern, subscriber)

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self, channel: bytes, message: bytes, publisher: Subscriber | None = None
    ) -> tuple[int, bytes]:
        """Deliver ``message``; return the number of deliveries and the publisher's own frames.

        A subscriber listening on the channel and on matching patterns receives one frame for
        each, as in Redis. Frames for ``publisher`` itself are returned rather than pushed, so
        that its connection sends them before the reply to ``PUBLISH``, in order with the
        replies to the requests it sent earlier.
        """
        receivers = 0
        own: list[bytes] = []
        overflowing: list[Subscriber] = []
        subscribers = self._channels.get(channel)
        if subscribers:
            frame = _MESSAGE + resp.bulk(channel) + resp.bulk(message)
            receivers += self._add(
                self._channel_batches,
                channel,
                subscribers,
                frame,
                publisher=publisher,
                own=own,
                overflowing=overflowing,
            )
        if self._patterns:
            tail = b""
            matchers = self._matchers
            for pattern, subscribers in self._patterns.items():
                if not matchers[pattern](channel):
                    continue
                if not tail:
                    tail = resp.bulk(channel) + resp.bulk(message)
                frame = _PMESSAGE + resp.bulk(pattern) + tail
                receivers += self._add(
                    self._pattern_batches,
                    pattern,
                    subscribers,
                    frame,
                    publisher=publisher,
                    own=own,
                    overflowing=overflowing,
                )
        self._published(overflowing)
        return receivers, b"".join(own)

    def relay(self, channel: bytes, message: bytes, pattern: bytes | None = None) -> int:
        """Deliver a message that arrived from elsewhere (an upstream subscription) to the
        subscribers of ``channel`` only, or of ``pattern`` only; return how many got it."""
        if pattern is None:
            batches, name = self._channel_batches, channel
            subscribers = self._channels.get(channel)
            frame = _MESSAGE + resp.bulk(channel) + resp.bulk(message)
        else:
            batches, name = self._pattern_batches, pattern
            subscribers = self._patterns.get(pattern)
            frame = _PMESSAGE + resp.bulk(pattern) + resp.bulk(channel) + resp.bulk(message)
        if not subscribers:
            return 0
        overflowing: list[Subscriber] = []
        delivered = self._add(
            batches, name, subscribers, frame, publisher=None, own=[], overflowing=overflowing
        )
        self._published(overflowing)
        return delivered

    def _add(
        self,
        batches: dict[bytes, Batch],
        name: bytes,
        subscribers: dict[Subscriber, None],
        frame: bytes,
        *,
        publisher: Subscriber | None,
        own: list[bytes],
        overflowing: list[Subscriber],
    ) -> int:
        """Append ``frame`` to the batch of ``name`` (a channel or a pattern) in this
        iteration; tell its subscribers of the batch when it opens, and check the limit."""
        batch = batches.get(name)
        opened = batch is None
        if batch is None:
            batch = batches[name] = Batch()
            self._close_later()
        self._seq += 1
        batch.add(self._seq, frame)
        if publisher is not None and publisher in subscribers:
            own.append(push_frame(frame) if publisher.resp3 else frame)
            publisher.push(batch, publisher.resp3, True)
        if opened or batch.top + batch.size > self.pending_limit:
            # Once per iteration, and again only when a subscriber may be over the limit.
            self._measure(batch, subscribers, publisher, overflowing)
        return len(subscribers)

    def _measure(
        self,
        batch: Batch,
        subscribers: dict[Subscriber, None],
        publisher: Subscriber | None,
        overflowing: list[Subscriber],
    ) -> None:
        """Hand ``batch`` to each subscriber (those that have it already just report) and
        note who holds more than the limit unsent."""
        limit = self.pending_limit
        top = 0
        for subscriber in subscribers:
            if subscriber is publisher:
                continue
            pending = subscriber.push(batch, subscriber.resp3, False)
            if pending > limit:
                overflowing.append(subscriber)
            elif pending > top:
                top = pending
        batch.top = max(0, top - batch.size)

    def _close_later(self) -> None:
        """Close the open batches at the end of this event-loop iteration (at the end of the
        publish without an event loop, as in the unit tests)."""
        if self._closing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._closing = True
        loop.call_soon(self._close_batches)

    def _close_batches(self) -> None:
        """The iteration ends: close every batch, and have their subscribers write them."""
        self._closing = False
        done, self._closed = self._closed, []
        for batches in (self._channel_batches, self._pattern_batches):
            done.extend(batches.values())
            batches.clear()
        close(done)

    def _close_batch(self, batches: dict[bytes, Batch], name: bytes) -> None:
        """Subscribers of ``name`` change: its next frame opens a batch that they are told of
        (this one is written at the end of the iteration)."""
        batch = batches.pop(name, None)
        if batch is not None:
            batch.open = False
            self._closed.append(batch)

    def _published(self, overflowing: list[Subscriber]) -> None:
        if not self._closing:
            self._close_batches()
        for subscriber in overflowing:
            self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        if subscriber not in self._by_subscriber:
            return  # listed twice: by its channel and by a pattern
        self.remove(subscriber)
        self.dropped += 1
        count = self._drops.event()
        if count:
            log.warning(
                "closed %d subscriber(s) leaving more than %d bytes of messages unread"
                " (last: client %d)",
                count,
                self.pending_limit,
                subscriber.id,
            )
        subscriber.drop()

    # -- introspection (PUBSUB) ------------------------------------------------------------

    def channels(self, pattern: bytes | None = None) -> list[bytes]:
        """Channels with at least one subscriber, those matching ``pattern`` if given."""
        if pattern is None:
            return list(self._channels)
        matches = compile_pattern(pattern)
        return [channel for channel in self._channels if matches(channel)]

    def channel_count(self) -> int:
        """Channels with at least one subscriber."""
        return len(self._channels)

    def numsub(self, channel: bytes) -> int:
        """Subscribers of ``channel`` (patterns not counted, as in Redis)."""
        return len(self._channels.get(channel, ()))

    def patterns(self) -> list[bytes]:
        """Patterns with at least one subscriber."""
        return list(self._patterns)

    def numpat(self) -> int:
        """Distinct patterns subscribed to by anyone."""
        return len(self._patterns)

    # -- internals -------------------------------------------------------------------------

    def _listeners(self, subscriber: Subscriber) -> _Listeners:
        listeners = self._by_subscriber.get(subscriber)
        if listeners is None:
            listeners = self._by_subscriber[subscriber] = _Listeners()
        return listeners

    def _release(self, subscriber: Subscriber, listeners: _Listeners) -> None:
        if not listeners:
            self._by_subscriber.pop(subscriber, None)

    def _forget_channel(self, channel: bytes, subscriber: Subscriber) -> None:
        _forget(self._channels, channel, subscriber)
        self._close_batch(self._channel_batches, channel)

    def _forget_pattern(self, pattern: bytes, subscriber: Subscriber) -> None:
        if _forget(self._patterns, pattern, subscriber):
            del self._matchers[pattern]
        self._close_batch(self._pattern_batches, pattern)

    @staticmethod
    def _confirm(subscriber: Subscriber, kind: bytes, name: bytes | None, count: int) -> bytes:
        named = (b"_\r\n" if subscriber.resp3 else resp.NIL) if name is None else resp.bulk(name)
        return _frame(subscriber.resp3, 3, kind + named + resp.integer(count))
