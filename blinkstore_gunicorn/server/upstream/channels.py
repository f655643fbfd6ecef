"""Pub/sub across hosts: one upstream subscription per channel (and per pattern) per host,
fanned out locally.

Workers subscribe in the store's own hub as always; the first local subscriber of a channel or
pattern makes this host subscribe to it upstream, on one RESP3 connection, and every message
that arrives there is handed to that channel's (or pattern's) local subscribers. ``PUBLISH``
itself is forwarded, so a message from a worker reaches the subscribers of every host, this one
included, by the same path. A channel or pattern nobody here listens to any more is
unsubscribed upstream when its next message arrives.

A worker's ``SUBSCRIBE``/``PSUBSCRIBE`` that needed a new upstream subscription is answered
once the upstream confirmed it (:meth:`Channels.hold`), so that, as with Redis, every message
published after the reply reaches it. During an outage the reply is not held back (one failed
connection attempt releases it), and the subscriptions are made when the link is back. (A
RESP2 connection already in subscribed mode subscribes through the hub's own handlers and is
answered at once.)
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import DEFERRED
from blinkstore_gunicorn.server.pubsub import PubSubHub
from blinkstore_gunicorn.server.upstream.link import Link, UpstreamError
from blinkstore_gunicorn.server.upstream.wire import Push

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client

__all__ = ["CHANNEL", "PATTERN", "Channels"]

log = logging.getLogger("blinkstore.upstream")

RETRY = 0.2
#: The two kinds of subscription, named by the command that makes them.
CHANNEL = b"SUBSCRIBE"
PATTERN = b"PSUBSCRIBE"
_CONFIRMATIONS = {b"subscribe": CHANNEL, b"psubscribe": PATTERN}
_UNSUBSCRIBE = {CHANNEL: b"UNSUBSCRIBE", PATTERN: b"PUNSUBSCRIBE"}

Subscription = tuple[bytes, bytes]  # (kind, channel or pattern)


class Channels:
    """The host's upstream subscriptions."""

    def __init__(self, hub: PubSubHub, opener: Callable[..., Awaitable[Link]], display: str):
        self._hub = hub
        self._opener = opener
        self._display = display
        self._link: Link | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Subscriptions sent upstream whose confirmation has not arrived, and the replies
        #: waiting for them.
        self._unconfirmed: set[Subscription] = set()
        self._held: list[tuple[set[Subscription], Callable[[], None]]] = []
        #: Messages received from upstream (INFO).
        self.received = 0
        hub.on_new_channel = functools.partial(self.add, CHANNEL)
        hub.on_new_pattern = functools.partial(self.add, PATTERN)

    def add(self, kind: bytes, name: bytes) -> None:
        """A channel or pattern got its first local subscriber: subscribe upstream."""
        self._unconfirmed.add((kind, name))
        if self._link is not None:
            self._link.send(resp.encode_command(kind, name), [])
        elif self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._connect())

    def hold(self, client: Client, kind: bytes, names: Iterable[bytes], reply: bytes) -> bytes:
        """``reply`` to a (P)SUBSCRIBE, or ``DEFERRED`` until the upstream confirmed it."""
        waiting = self._unconfirmed.intersection((kind, name) for name in names)
        if not waiting:
            return reply
        self._held.append((waiting, functools.partial(client.deliver, reply)))
        return DEFERRED

    def _confirmed(self, subscription: Subscription | None) -> None:
        """Release the replies waiting for ``subscription`` (all of them for None)."""
        if subscription is None:
            self._unconfirmed.clear()
        else:
            self._unconfirmed.discard(subscription)
        still = []
        for waiting, deliver in self._held:
            if subscription is None:
                waiting.clear()
            else:
                waiting.discard(subscription)
            if waiting:
                still.append((waiting, deliver))
            else:
                deliver()
        self._held = still

    def close(self) -> None:
        """Drop the subscriptions' connection."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        if self._link is not None:
            self._link.on_lost = None
            self._link.close()

    def _on_push(self, push: Push) -> None:
        kind, names = (push[0], push[1:]) if push else (None, [])
        if kind in _CONFIRMATIONS and names and isinstance(names[0], bytes):
            self._confirmed((_CONFIRMATIONS[kind], names[0]))  # names[1] is a count
        elif not all(isinstance(item, bytes) for item in names):
            return
        elif kind == b"message" and len(names) == 2:
            self._deliver(CHANNEL, names[0], names[0], names[1])
        elif kind == b"pmessage" and len(names) == 3:
            self._deliver(PATTERN, names[0], names[1], names[2])

    def _deliver(self, kind: bytes, name: bytes, channel: bytes, message: bytes) -> None:
        self.received += 1
        hub = self._hub
        pattern = name if kind == PATTERN else None
        if hub.relay(channel, message, pattern) or self._link is None:
            return
        listened = hub.numsub(name) if pattern is None else name in hub.patterns()
        if not listened:
            self._link.send(resp.encode_command(_UNSUBSCRIBE[kind], name), [])

    async def _connect(self) -> None:
        while not self._closed:
            try:
                link = await self._opener(3, on_push=self._on_push, name="blinkstore-pubsub")
            except (OSError, UpstreamError, asyncio.TimeoutError) as exc:
                log.warning("upstream %s: cannot subscribe (%s); retrying", self._display, exc)
                self._confirmed(None)  # do not keep subscribers waiting through an outage
                await asyncio.sleep(RETRY)
                continue
            for kind, names in ((CHANNEL, self._hub.channels()), (PATTERN, self._hub.patterns())):
                if names:
                    link.send(resp.encode_command(kind, *names), [])
            link.on_lost = self._lost
            self._link = link
            self._task = None
            return

    def _lost(self) -> None:
        self._link = None
        self._confirmed(None)
        if not self._closed and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._connect())
