"""Connections that carry forwarded commands to the upstream, opened on demand.

A :class:`Lane` is one connection, usable as soon as it is made: requests sent while it
connects wait in order and go out once it is up (or get the error if it cannot connect).
:class:`Forwarder` keeps a small pool of lanes per protocol version (a worker that said
``HELLO 3`` gets RESP3 replies relayed byte for byte, the others RESP2) and hands out
dedicated lanes for what holds a connection: blocking commands, MULTI/EXEC and WATCH.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.upstream.link import (
    UPSTREAM_DOWN,
    Link,
    ReplyCallback,
    UpstreamError,
)
from blinkstore_gunicorn.server.upstream.wire import Err

__all__ = ["POOL_SIZE", "Forwarder", "Lane"]

log = logging.getLogger("blinkstore.upstream")

#: Shared connections per protocol version: forwarded commands are short, and each worker
#: connection waits for its reply before the next one is sent.
POOL_SIZE = 4
#: A shared lane with this many requests waiting makes the pool open another one.
BUSY = 8

Opener = Callable[[int], Awaitable[Link]]


class Lane:
    """One upstream connection and the requests waiting for it to open."""

    __slots__ = ("_queue", "dead", "link", "task", "unreachable")

    def __init__(self, opener: Opener, protocol: int, unreachable: str) -> None:
        self.link: Link | None = None
        self.dead = False
        #: The error reply's text when the connection cannot be made.
        self.unreachable = unreachable
        self._queue: list[tuple[bytes, list[ReplyCallback]]] = []
        self.task = asyncio.get_running_loop().create_task(self._open(opener, protocol))

    @property
    def pending(self) -> int:
        """Requests waiting for a reply (or for the connection)."""
        return self.link.pending if self.link is not None else len(self._queue)

    def send(self, payload: bytes, callbacks: list[ReplyCallback]) -> None:
        """Send now, or once connected; a dead lane answers with the error at once."""
        if self.link is not None:
            self.link.send(payload, callbacks)
        elif self.dead:
            _refuse(callbacks, self.unreachable)
        else:
            self._queue.append((payload, callbacks))

    def close(self) -> None:
        """Drop the connection (replies still waiting get the lost-connection error)."""
        self.dead = True
        self.task.cancel()
        if self.link is not None:
            self.link.close()

    async def _open(self, opener: Opener, protocol: int) -> None:
        try:
            link = await opener(protocol)
        except (OSError, UpstreamError, asyncio.TimeoutError) as exc:
            self.dead = True
            self.unreachable = f"{self.unreachable} ({exc})"
            queue, self._queue = self._queue, []
            for _, callbacks in queue:
                _refuse(callbacks, self.unreachable)
            return
        if self.dead:
            link.close()
            return
        self.link = link
        link.on_lost = self._lost
        queue, self._queue = self._queue, []
        for payload, callbacks in queue:
            link.send(payload, callbacks)

    def _lost(self) -> None:
        self.dead = True


def _refuse(callbacks: list[ReplyCallback], message: str) -> None:
    text = UPSTREAM_DOWN + message
    for callback in callbacks:
        callback(resp.error(text), Err(text))


class Forwarder:
    """The shared lanes (per protocol version) and the dedicated ones."""

    def __init__(self, opener: Opener, display: str) -> None:
        self._opener = opener
        self._unreachable = f"upstream {display} is unreachable"
        self._pools: dict[int, list[Lane]] = {2: [], 3: []}

    def shared(self, protocol: int) -> Lane:
        """The least busy shared lane, opening one while the pool is small or busy."""
        pool = self._pools[protocol]
        pool[:] = [lane for lane in pool if not lane.dead]
        best = min(pool, key=lambda lane: lane.pending, default=None)
        if best is None or (best.pending >= BUSY and len(pool) < POOL_SIZE):
            best = Lane(self._opener, protocol, self._unreachable)
            pool.append(best)
        return best

    def dedicated(self, protocol: int) -> Lane:
        """A lane of its own (the caller closes it)."""
        return Lane(self._opener, protocol, self._unreachable)

    def close(self) -> None:
        """Close every shared lane."""
        for pool in self._pools.values():
            for lane in pool:
                lane.close()
            pool.clear()
