"""Pub/sub across hosts: one upstream subscription per channel per host, fanned out locally.

Workers subscribe in the store's own hub as always; the first local subscriber of a channel
makes this host subscribe to it upstream, on one RESP3 connection, and every message that
arrives there is published into the hub. ``PUBLISH`` itself is forwarded, so a message from a
worker reaches the subscribers of every host, this one included, by the same path. A channel
nobody here listens to any more is unsubscribed upstream when its next message arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.pubsub import PubSubHub
from blinkstore_gunicorn.server.upstream.link import Link, UpstreamError
from blinkstore_gunicorn.server.upstream.wire import Push

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
        #: Messages received from upstream (INFO).
        self.received = 0
        hub.on_new_channel = self.add

    def add(self, channel: bytes) -> None:
        """A channel got its first local subscriber: subscribe upstream (once connected)."""
        if self._link is not None:
            self._link.send(resp.encode_command("SUBSCRIBE", channel), [])
        elif self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._connect())

    def close(self) -> None:
        """Drop the subscriptions' connection."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        if self._link is not None:
            self._link.on_lost = None
            self._link.close()

    def _on_push(self, push: Push) -> None:
        if len(push) != 3 or push[0] != b"message":
            return  # subscribe confirmations
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
        if not self._closed and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._connect())
