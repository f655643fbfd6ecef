"""A subscription's own connection to the store, for ``AsyncStoreBackend.subscribe``.

The store pushes messages whenever they are published; :class:`AsyncStoreFeed` parses them as
they come and queues them for ``next()``. Past :data:`FEED_BACKLOG` unread ones it stops
reading, so a subscriber that stops asking leaves its messages in the store, which disconnects
it past its pub/sub buffer limit: neither side buffers without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, cast

from blinkstore_gunicorn.client.backends import _resp
from blinkstore_gunicorn.client.errors import (
    CacheConnectionError,
    CacheError,
    CacheTimeoutError,
)
from blinkstore_gunicorn.protocol import resp

__all__ = ["FEED_BACKLOG", "AsyncStoreFeed"]

#: Messages a subscription queues before it stops reading its connection.
FEED_BACKLOG: Final = 1000


class AsyncStoreFeed(asyncio.Protocol):
    """A subscribed connection. Messages wait in a queue for :meth:`next`; past
    :data:`FEED_BACKLOG` of them the connection stops reading, so a subscriber that stops
    asking leaves them in the store, which disconnects it past its pub/sub buffer limit."""

    def __init__(self, loop: asyncio.AbstractEventLoop, display: str, confirmations: int):
        self._loop = loop
        self._display = display
        self._reader = resp.ReplyReader()
        self._messages: deque[_resp.RawMessage] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._paused = False
        #: Replies still expected before the subscription counts as made: the AUTH reply
        #: (``_auth_pending``), then one confirmation per channel and pattern.
        self._auth_pending = False
        self._unconfirmed = confirmations
        self._ready: asyncio.Future[None] = loop.create_future()
        # A failure nobody is waiting for any more (start() timed out) is not worth a warning.
        self._ready.add_done_callback(_consume_feed_outcome)
        self.error: CacheError | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            for reply in _resp.replies(self._reader, data):
                self._take(reply)
        except CacheError as exc:
            self._fail(exc)
            return
        if self._messages:
            self._wake()
            if len(self._messages) >= FEED_BACKLOG and not self._paused:
                self._paused = True
                if self._transport is not None:
                    self._transport.pause_reading()

    def _take(self, reply: resp.Reply) -> None:
        if self._auth_pending:
            self._auth_pending = False
            error = _resp.auth_error(self._display, reply)
            if error is not None:
                raise error
            return
        message = _resp.pubsub_message(reply)
        if message is not None:
            self._messages.append(message)
        elif self._unconfirmed:
            self._unconfirmed -= 1
            if not self._unconfirmed and not self._ready.done():
                self._ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(CacheConnectionError(f"lost the connection to the store at {self._display}"))

    def _fail(self, error: CacheError) -> None:
        if self.error is None:
            self.error = error
        if not self._ready.done():
            self._ready.set_exception(error)
        self._wake()
        self.close_now()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the feed --------------------------------------------------------------------------

    async def start(self, auth: bytes | None, payload: bytes, timeout: float | None) -> None:
        """Send AUTH (if any) and the subscriptions; return once every one is confirmed (or
        close the connection and raise)."""
        transport = self._transport
        if transport is None:
            raise CacheConnectionError(f"lost the connection to the store at {self._display}")
        self._auth_pending = auth is not None
        transport.write((auth or b"") + payload)
        try:
            await asyncio.wait_for(self._ready, timeout)
        except asyncio.TimeoutError:
            self.close_now()
            raise CacheTimeoutError(
                f"no reply from the store at {self._display} within {timeout}s"
            ) from None
        except BaseException:
            self.close_now()
            raise

    async def next(self, timeout: float | None) -> _resp.RawMessage | None:
        """The next message, or None after ``timeout`` seconds."""
        loop = self._loop
        deadline = None if timeout is None else loop.time() + timeout
        messages = self._messages
        while not messages:
            if self.error is not None:
                raise type(self.error)(str(self.error))
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return None
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, left)
            except asyncio.TimeoutError:
                return None
            finally:
                self._waiter = None
        message = messages.popleft()
        if self._paused and len(messages) <= FEED_BACKLOG // 2 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return message

    def close_now(self) -> None:
        """Close the connection (the store ends its subscriptions)."""
        if self._transport is not None:
            self._transport.close()

    async def close(self) -> None:
        """Close the connection (the store ends its subscriptions)."""
        self.close_now()


def _consume_feed_outcome(ready: asyncio.Future[None]) -> None:
    if not ready.cancelled():
        ready.exception()
