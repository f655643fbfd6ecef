"""One connection from the store to the upstream Redis/Valkey server.

A :class:`Link` pipelines requests: each request names a callback that receives its reply
(raw bytes and parsed value) in the order the server answers, which is the order of the
requests. RESP3 pushes (invalidations, pub/sub messages) go to ``on_push`` instead. When the
connection goes away every callback still waiting gets :data:`LOST`, then ``on_lost`` runs
once: the near cache relies on that order (nothing cached survives a lost tracking link).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.upstream.wire import Err, FrameReader, Push, Value
from blinkstore_gunicorn.upstream_url import UpstreamAddress

__all__ = ["LOST", "UPSTREAM_DOWN", "Link", "ReplyCallback", "UpstreamError", "open_link"]

ReplyCallback = Callable[[bytes, Value], None]

#: The error code of replies the upstream could not give (clients read it as an outage).
UPSTREAM_DOWN = "UPSTREAMDOWN "
#: The reply every request still waiting gets when its connection is lost.
LOST_TEXT = UPSTREAM_DOWN + "upstream connection lost before the reply (the command may have run)"
LOST = (resp.error(LOST_TEXT), Err(LOST_TEXT))


class UpstreamError(ConnectionError):
    """The upstream refused the connection or its handshake (the message has no password)."""


class Link(asyncio.Protocol):
    """A pipelined connection; use :func:`open_link` to make one."""

    def __init__(self, on_push: Callable[[Push], None] | None) -> None:
        self._reader = FrameReader()
        self._waiting: deque[ReplyCallback] = deque()
        self._transport: asyncio.Transport | None = None
        self._on_push = on_push
        self.on_lost: Callable[[], None] | None = None
        self.closed = False

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            frames = reader.frames()
        except ValueError:
            self.close()
            return
        for raw, value in frames:
            if value.__class__ is Push:
                # Never a reply: a connection without a push handler drops it rather than
                # hand it to the next request waiting.
                if self._on_push is not None:
                    self._on_push(value)
            elif self._waiting:
                self._waiting.popleft()(raw, value)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._transport = None
        waiting, self._waiting = self._waiting, deque()
        for callback in waiting:
            callback(*LOST)
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()

    # -- requests ----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._waiting)

    def send(self, payload: bytes, callbacks: list[ReplyCallback]) -> None:
        """Write ``payload`` (one or more commands); ``callbacks`` get their replies in order."""
        if self._transport is None:
            for callback in callbacks:
                callback(*LOST)
            return
        self._waiting.extend(callbacks)
        self._transport.write(payload)

    async def call(self, *args: bytes | str | int) -> Value:
        """One command, awaited (the handshake, pub/sub bookkeeping)."""
        future: asyncio.Future[Value] = asyncio.get_running_loop().create_future()

        def done(raw: bytes, value: Value) -> None:
            if not future.done():
                future.set_result(value)

        self.send(resp.encode_command(*args), [done])
        return await future

    def close(self) -> None:
        """Close the connection (``connection_lost`` follows)."""
        if self._transport is not None:
            self._transport.abort()


async def open_link(
    address: UpstreamAddress,
    *,
    protocol: int,
    timeout: float,
    on_push: Callable[[Push], None] | None = None,
    name: str = "blinkstore",
) -> Link:
    """Connect, authenticate, select the database; raise :class:`UpstreamError` or OSError."""
    loop = asyncio.get_running_loop()

    def factory() -> Link:
        return Link(on_push)

    context = ssl.create_default_context() if address.tls else None
    connect = (
        loop.create_unix_connection(factory, address.unix_path)
        if address.unix_path
        else loop.create_connection(factory, address.host, address.port, ssl=context)
    )
    _, link = await asyncio.wait_for(connect, timeout)
    try:
        hello: list[bytes | str | int] = ["HELLO", protocol]
        if address.password is not None:
            hello += ["AUTH", address.username or "default", address.password]
        hello += ["SETNAME", name]
        replies = [await asyncio.wait_for(link.call(*hello), timeout)]
        if address.db:
            replies.append(await asyncio.wait_for(link.call("SELECT", address.db), timeout))
    except BaseException:
        link.close()
        raise
    for reply in replies:
        if isinstance(reply, Err):
            link.close()
            raise UpstreamError(f"{address.display}: {reply}")
    return link
