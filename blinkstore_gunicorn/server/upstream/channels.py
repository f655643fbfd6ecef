"""Pub/sub across hosts: one upstream subscription per channel per host, fanned out locally.

Workers subscribe in the store's own hub as always; the first local subscriber of a channel
makes this host subscribe to it upstream, on one RESP3 connection, and every message that
arrives there is published into the hub. ``PUBLISH`` itself is forwarded, so a message from a
worker reaches the subscribers of every host, this one included, by the same path. A channel
nobody here listens to any more is unsubscribed upstream when its next message arrives.

A worker's ``SUBSCRIBE`` that needed a new upstream subscription is answered once the upstream
confirmed it (:meth:`Channels.hold`), so that, as with Redis, every message published after the
reply reaches it. Only while the link is up: during an outage the reply is not held back, and
the subscription is made when the link is back. (A RESP2 connection already in subscribed mode
subscribes through the hub's own handler and is answered at once.)
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

__all__ = ["Channels"]

log = logging.getLogger("blinkstore.upstream")

RETRY = 0.2


class Channels:
    """The host's upstream subscriptions."""

    def __init__(self, hub: PubSubHub, opener: Callable[..., Awaitable[Link]], display: str):
        self._hub = hub
        self._opener = opener
        self._display = display
        self._link: Link | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Channels subscribed upstream whose confirmation has not arrived, and the replies
        #: waiting for them.
        self._unconfirmed: set[bytes] = set()
        self._held: list[tuple[set[bytes], Callable[[], None]]] = []
        #: Messages received from upstream (INFO).
        self.received = 0
        hub.on_new_channel = self.add

    def add(self, channel: bytes) -> None:
        """A channel got its first local subscriber: subscribe upstream (once connected)."""
        self._unconfirmed.add(channel)
        if self._link is not None:
            self._link.send(resp.encode_command("SUBSCRIBE", channel), [])
        elif self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._connect())

    def hold(self, client: Client, channels: Iterable[bytes], reply: bytes) -> bytes:
        """``reply`` to a SUBSCRIBE, or ``DEFERRED`` until the upstream confirmed its channels."""
        waiting = self._unconfirmed.intersection(channels)
        if not waiting:
            return reply
        self._held.append((waiting, functools.partial(client.deliver, reply)))
        return DEFERRED

    def _confirmed(self, channel: bytes | None) -> None:
        """Release the replies waiting for ``channel`` (all of them for None)."""
        if channel is None:
            self._unconfirmed.clear()
        else:
            self._unconfirmed.discard(channel)
        still = []
        for waiting, deliver in self._held:
            if channel is None:
                waiting.clear()
            else:
                waiting.discard(channel)
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
        if len(push) == 3 and push[0] == b"subscribe":
            self._confirmed(push[1] if isinstance(push[1], bytes) else None)
            return
        if len(push) != 3 or push[0] != b"message":
            return
        channel, message = push[1], push[2]
        if not isinstance(channel, bytes) or not isinstance(message, bytes):
            return
        self.received += 1
        delivered, _ = self._hub.publish(channel, message)
        if not delivered and self._hub.numsub(channel) == 0 and self._link is not None:
            self._link.send(resp.encode_command("UNSUBSCRIBE", channel), [])

    async def _connect(self) -> None:
        while not self._closed:
            try:
                link = await self._opener(3, on_push=self._on_push, name="blinkstore-pubsub")
            except (OSError, UpstreamError, asyncio.TimeoutError) as exc:
                log.warning("upstream %s: cannot subscribe (%s); retrying", self._display, exc)
                self._confirmed(None)  # do not keep subscribers waiting through an outage
                await asyncio.sleep(RETRY)
                continue
            channels = self._hub.channels()
            if channels:
                link.send(resp.encode_command("SUBSCRIBE", *channels), [])
            link.on_lost = self._lost
            self._link = link
            self._task = None
            return

    def _lost(self) -> None:
        self._link = None
        self._confirmed(None)
        if not self._closed and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._connect())
