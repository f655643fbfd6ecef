"""One pipelined asyncio connection to the store: the I/O half of ``store_async.py``.

A request appends a future to the connection's FIFO and its bytes to an output buffer that is
written once per event-loop turn, so 100 coroutines asking at once cost one ``write`` and the
store answers them in one read. ``data_received`` (the connection's only reader) resolves the
futures in order. A cancelled waiter's future stays in the FIFO: its reply is still parsed and
dropped, so the next reply goes to the right coroutine. At most ``limit`` requests are in
flight; more wait for room. Each request is due ``timeout`` after it is queued, or sooner when
its call's deadline says so (a call that first waited for a restarting store). One watchdog
timer fires at the soonest due time: if a request is overdue the store is stuck (replies come
in order), every waiter gets :class:`CacheTimeoutError` and the connection is dropped.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any, Final, cast

from blinkstore_gunicorn.client.backends import _resp
from blinkstore_gunicorn.client.errors import (
    CacheConnectionError,
    CacheError,
    CacheResponseError,
)
from blinkstore_gunicorn.protocol import ProtocolError, resp

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "Pipeline"]

_NEED_MORE: Final = resp.NEED_MORE
DEFAULT_MAX_IN_FLIGHT: Final = 1024


class Pipeline(asyncio.Protocol):
    """One pipelined connection."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, display: str, timeout: float | None, limit: int
    ) -> None:
        self._loop = loop
        self._display = display
        self._timeout = timeout
        self.limit = limit
        self._reader = resp.ReplyReader()
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._room: deque[asyncio.Future[None]] = deque()
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self.error: CacheError | None = None
        #: The pid of the store process this connection reaches (None: unknown).
        self.peer: int | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        self._transport = cast(asyncio.Transport, transport)
        self.peer = _resp.peer_pid(transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self.pending
        while True:
            reply = reader.next_reply()
            if reply is _NEED_MORE:
                break
            if isinstance(reply, ProtocolError):
                self.fail(CacheResponseError(f"malformed reply from the store: {reply.message}"))
                return
            if not pending:
                self.fail(CacheResponseError("the store sent a reply nobody asked for"))
                return
            future = pending.popleft()[0]
            # A cancelled waiter's reply is consumed and dropped right here.
            if not future.done():
                future.set_result(reply)
        room = self._room
        while room and len(pending) < self.limit:
            waiter = room.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self.error is None:
            self.fail(CacheConnectionError(f"lost the connection to the store at {self._display}"))

    # -- requests --------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open and not failed."""
        return self.error is None and self._transport is not None

    async def wait_room(self) -> None:
        """Wait until fewer than ``limit`` requests are in flight."""
        while len(self.pending) >= self.limit and self.error is None:
            waiter = self._loop.create_future()
            self._room.append(waiter)
            await waiter

    def request(self, payload: bytes, until: float = math.inf) -> asyncio.Future[Any]:
        """Queue ``payload``; the future gets its reply, or fails when it is not there within
        the timeout or by ``until`` (the call's deadline, a ``time.monotonic()``)."""
        if self.error is not None:
            raise type(self.error)(str(self.error))
        loop = self._loop
        future: asyncio.Future[Any] = loop.create_future()
        timeout = self._timeout
        deadline = 0.0
        if timeout is not None:
            # What is left of the call, on the loop's own clock (uvloop's is not monotonic()).
            left = until - time.monotonic()
            deadline = loop.time() + (timeout if left > timeout else left)
            watchdog = self._watchdog
            if watchdog is None or deadline < watchdog.when():
                if watchdog is not None:
                    watchdog.cancel()
                self._watchdog = loop.call_at(deadline, self._check_deadline)
        self.pending.append((future, deadline))
        self._out.append(payload)
        if self._flush_handle is None:
            self._flush_handle = loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_handle = None
        out = self._out
        if out and self._transport is not None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self.pending:
            return
        deadline = min(due for _, due in self.pending)
        if deadline <= self._loop.time():
            self.fail(_resp.no_reply(self._display, self._timeout))
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)

    def fail(self, error: CacheError) -> None:
        """Fail every waiter with (a copy of) ``error`` and close the connection."""
        self.error = error
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self.pending = self.pending, deque()
        for future, _ in pending:
            if not future.done():
                future.set_exception(type(error)(str(error)))
                # Mark it retrieved: a waiter that was cancelled will never look at it.
                future.exception()
        for waiter in self._room:
            if not waiter.done():
                waiter.set_result(None)
        self._room.clear()
        self._out.clear()
        transport = self._transport
        if transport is not None:
            self._transport = None
            transport.abort()

    def close(self) -> None:
        """Close the connection (failing whatever is still in flight)."""
        if self.error is None:
            self.fail(CacheConnectionError("the cache client was closed"))
