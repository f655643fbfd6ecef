"""``Upstream``: the store as a coherent near cache in front of Redis/Valkey.

Installed into a :class:`~..dispatch.Dispatcher` by :meth:`Upstream.install`, it replaces the
command table: the commands in :data:`~.route.LOCAL` keep their handlers, ``GET`` and ``MGET``
are read through the near cache (:mod:`.near`), and every other command, known to the store or not,
is forwarded to the upstream and its reply relayed byte for byte, once the keys it may have
changed are dropped here. Workers, their URL and the shared region do not know an upstream
exists, except that the region tells its readers that a miss is not authoritative.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import COMMANDS, DEFERRED
from blinkstore_gunicorn.server.upstream import route
from blinkstore_gunicorn.server.upstream.channels import CHANNEL, PATTERN, Channels
from blinkstore_gunicorn.server.upstream.forward import Forwarder, Lane
from blinkstore_gunicorn.server.upstream.link import Link, open_link
from blinkstore_gunicorn.server.upstream.near import PING_INTERVAL, NearCache
from blinkstore_gunicorn.server.upstream.wire import Value
from blinkstore_gunicorn.upstream_url import parse_upstream

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__ = ["CONNECT_TIMEOUT", "Upstream"]

#: Seconds to connect and authenticate to the upstream.
CONNECT_TIMEOUT = 2.0


class _Pin:
    """A worker connection tied to one upstream connection (MULTI...EXEC, WATCH)."""

    __slots__ = ("keys", "lane", "release")

    def __init__(self, lane: Lane, release: Callable[[], None]) -> None:
        self.lane = lane
        #: On the worker connection's ``on_close`` while the pin lasts.
        self.release = release
        #: What the queued commands of a transaction may write (dropped when EXEC answers).
        self.keys: list[bytes] | None = []


class Upstream:
    """The upstream connections of one store and the near cache they keep coherent."""

    def __init__(self, url: str, dispatcher: Dispatcher) -> None:
        self.address = parse_upstream(url)
        self.display = self.address.display
        self._dispatcher = dispatcher
        self.forwarder = Forwarder(self._open, self.display)
        self.near = NearCache(
            dispatcher.engine, self._open, self.forward, self.display, dispatcher.clock_ms
        )
        self.channels = Channels(dispatcher.pubsub, self._open, self.display)
        self._pins: dict[int, _Pin] = {}
        self.forwarded = 0
        self._ticker: asyncio.TimerHandle | None = None

    async def _open(self, protocol: int, **kwargs: Any) -> Link:
        return await open_link(self.address, protocol=protocol, timeout=CONNECT_TIMEOUT, **kwargs)

    # -- lifecycle -------------------------------------------------------------------------

    def install(self) -> None:
        """Route the dispatcher's commands through this upstream (before serving)."""
        d = self._dispatcher
        table = d.full_table
        for name, spec in COMMANDS.items():
            if name in _SUBSCRIBING:
                handler = _subscribe
            elif name in route.LOCAL:
                continue
            else:
                handler = _NEAR.get(name, _forward)
            for spelling in (name.lower(), name.upper()):
                table[spelling.encode()] = (handler, spec.arity)
        d.upstream = self

    def start(self) -> None:
        """Connect the tracking link (in the background) and start its heartbeat."""
        self.near.start()
        self._tick()

    def _tick(self) -> None:
        self.near.tick()
        loop = asyncio.get_running_loop()
        self._ticker = loop.call_later(PING_INTERVAL, self._tick)

    def close(self) -> None:
        """Close every upstream connection."""
        if self._ticker is not None:
            self._ticker.cancel()
        self.near.close()
        self.channels.close()
        self.forwarder.close()
        for pin in self._pins.values():
            pin.lane.close()
        self._pins.clear()

    # -- forwarding --------------------------------------------------------------------

    def forward(self, client: Client, args: list[bytes]) -> bytes:
        """Send ``args`` upstream; its reply goes to ``client`` once the keys it may have
        written are dropped here."""
        name = args[0].lower()
        if name in route.REFUSED:
            return resp.error(
                f"ERR '{name.decode('ascii', 'replace')}' is not available through a near cache"
                " (connect to the upstream for it)"
            )
        self.forwarded += 1
        protocol = 3 if client.resp3 else 2
        pin = self._pins.get(client.id)
        if pin is None and name in route.PINNING:
            pin = self._pin(client, protocol)
        if pin is not None:
            lane = pin.lane
        elif name.decode("ascii", "replace") in route.BLOCKING:
            lane = self.forwarder.dedicated(protocol)
        else:
            lane = self.forwarder.shared(protocol)
        keys = route.written_keys(args)
        #: A lane to close once this reply arrived (closing before would lose the reply).
        done_with: Lane | None = None
        if pin is not None:
            if name == b"multi":
                pin.keys = []
            elif name in route.UNPINNING:
                keys, done_with = self._unpin(client, pin, name, keys)
            elif pin.keys is not None and keys:
                pin.keys += keys
                keys = []
            elif keys is route.ALL:
                pin.keys = route.ALL
        elif name.decode("ascii", "replace") in route.BLOCKING:
            done_with = lane
        if done_with is not None:
            # A worker that goes away while blocked must not leave its connection blocked.
            client.on_close.append(done_with.close)
        near = self.near

        def relay(raw: bytes, value: Value) -> None:
            if keys is route.ALL:
                near.flush()
            elif keys:
                near.drop(keys)
            if done_with is not None:
                client.on_close.remove(done_with.close)
                done_with.close()
            client.deliver(raw)

        lane.send(resp.encode_command(*args), [relay])
        return DEFERRED

    def pinned(self, client: Client) -> bool:
        """Whether ``client`` is tied to an upstream connection (MULTI, WATCH): its reads
        go there too, in order with its other commands."""
        return client.id in self._pins

    def _pin(self, client: Client, protocol: int) -> _Pin:
        release = functools.partial(self._release, client.id)
        pin = self._pins[client.id] = _Pin(self.forwarder.dedicated(protocol), release)
        pin.keys = None  # a WATCH without MULTI queues nothing
        client.on_close.append(release)
        return pin

    def _unpin(
        self, client: Client, pin: _Pin, name: bytes, keys: list[bytes] | None
    ) -> tuple[list[bytes] | None, Lane | None]:
        """EXEC, DISCARD, UNWATCH end the pin: what the reply invalidates (EXEC's queued
        writes too) and the lane to close once the reply is in."""
        if name == b"unwatch" and pin.keys is not None:
            return keys, None  # still inside MULTI
        queued = pin.keys if name == b"exec" else []
        del self._pins[client.id]
        client.on_close.remove(pin.release)
        if queued is route.ALL or keys is route.ALL:
            return route.ALL, pin.lane
        return [*(queued or ()), *(keys or ())], pin.lane

    def _release(self, client_id: int) -> None:
        pin = self._pins.pop(client_id, None)
        if pin is not None:
            pin.lane.close()

    # -- INFO ------------------------------------------------------------------------------

    def info(self) -> list[tuple[str, object]]:
        """The ``# Upstream`` section of INFO (no password, ever)."""
        near = self.near.stats
        return [
            ("upstream", self.display),
            ("upstream_link", self.near.state),
            ("upstream_link_losses", near.link_losses),
            # Reads this host answered itself (shared region, store, known absent keys), and
            # reads that went upstream.
            ("near_hits", self._dispatcher.engine.stats().hits + near.absent_hits),
            ("near_misses", near.fetches),
            ("near_fetched_bytes", near.fetch_bytes),
            ("near_invalidations", near.invalidations),
            ("upstream_forwarded", self.forwarded),
            ("upstream_pubsub_messages", self.channels.received),
        ]


def _near_get(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    upstream: Upstream = d.upstream  # type: ignore[assignment]
    if upstream.pinned(c):
        return upstream.forward(c, args)  # inside MULTI: queued upstream with the rest
    return upstream.near.get(c, args[1])


def _subscribe(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """SUBSCRIBE and PSUBSCRIBE: the hub's reply, once the upstream has the subscriptions."""
    name = args[0].lower().decode("ascii")
    reply = COMMANDS[name].handler(d, c, args)
    return d.upstream.channels.hold(c, _SUBSCRIBING[name], args[1:], reply)  # type: ignore[union-attr]


_SUBSCRIBING = {"subscribe": CHANNEL, "psubscribe": PATTERN}


def _near_mget(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    upstream: Upstream = d.upstream  # type: ignore[assignment]
    if upstream.pinned(c):
        return upstream.forward(c, args)
    return upstream.near.mget(c, args[1:])


def _forward(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    return d.upstream.forward(c, args)  # type: ignore[union-attr]


#: The reads served by the near cache; every other command not in ``route.LOCAL`` is forwarded.
_NEAR = {"get": _near_get, "mget": _near_mget}
