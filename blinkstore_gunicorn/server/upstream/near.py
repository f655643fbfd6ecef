"""The near cache: this host's copy of upstream keys, kept coherent by server-assisted
invalidation (Redis's client-side caching, RESP3 ``CLIENT TRACKING`` in the default mode).

Why these choices (Redis's client-side caching documentation names the races):

- **One RESP3 connection** both reads the keys it caches and receives their invalidations.
  The server sends an invalidation on the connection that read the key, after that read's
  reply, so a reply can never overtake the invalidation of its own value, and there is no
  separate redirect connection that could die first: losing the one link loses both.
- **Default mode, not BCAST:** the server only tells this host about keys this host read,
  so a host's invalidation traffic follows its own reads, not every write of the fleet.
- **Values this store writes are never cached on the way out** (write-around): a write is
  forwarded, its keys are dropped here before the worker hears the reply, and the next read
  fetches (and so tracks) them. A value written but never read is therefore never held
  untracked, which the default mode would not invalidate.
- **A fetch that crosses a write** (an invalidation of the key, or a local write of it,
  arriving while the reply is on its way) still answers the readers that asked before, but is
  not kept, and later readers start a new fetch.
- **A lost link** flushes the copy (the engine's flush revokes the shared region's table
  first, so no reader trusts it any more) before anything else runs; until tracking is back,
  reads are forwarded and nothing is kept.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine import Engine, EngineError
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import DEFERRED
from blinkstore_gunicorn.server.upstream.link import LOST, Link, UpstreamError
from blinkstore_gunicorn.server.upstream.wire import Err, Push, Value

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client

__all__ = ["NearCache", "NearStats"]

log = logging.getLogger("blinkstore.upstream")

#: Keys remembered as absent upstream (a miss then costs no upstream round trip).
ABSENT_MAX = 65536
#: Seconds between two PINGs on the tracking link, and how long one may stay unanswered
#: before the link counts as dead (a silent network drop has no EOF).
PING_INTERVAL = 0.5
PING_TIMEOUT = 2.0
#: Reconnection backoff, seconds.
RETRY_FIRST = 0.05
RETRY_MAX = 2.0

_GET_PTTL = b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n*2\r\n$4\r\nPTTL\r\n$%d\r\n%b\r\n"


class NearStats:
    """What ``INFO``'s upstream section reports about the near cache."""

    __slots__ = ("absent_hits", "fetch_bytes", "fetches", "invalidations", "link_losses")

    def __init__(self) -> None:
        #: Reads answered "absent" here (those of present keys are the engine's hits).
        self.absent_hits = 0
        self.fetches = 0
        self.fetch_bytes = 0
        self.invalidations = 0
        self.link_losses = 0


Waiter = Callable[[bytes, Value], None]
#: What :meth:`NearCache._local` returns for a key this host does not know about.
_UNKNOWN = object()


class _Fetch:
    """One key on its way from upstream, and the readers waiting for it."""

    __slots__ = ("key", "raw", "sent_ms", "stale", "value", "waiters")

    def __init__(self, key: bytes, sent_ms: int) -> None:
        self.key = key
        #: When the fetch was sent: the TTL counts from there, so that the copy here never
        #: outlives the key upstream.
        self.sent_ms = sent_ms
        self.waiters: list[Waiter] = []
        self.stale = False
        self.raw = b""
        self.value: Value = None


class _Gather:
    """An MGET waiting for its fetches: answered when the last one arrives."""

    __slots__ = ("client", "left", "values")

    def __init__(self, client: Client, values: list[object], left: int) -> None:
        self.client = client
        self.values = values
        self.left = left

    def fill(self, position: int, raw: bytes, value: Value) -> None:
        if self.left <= 0:
            return
        if raw == LOST[0]:
            self.left = 0  # an outage: the worker's client reads it as one
            self.client.deliver(raw)
            return
        # As MGET answers: a key that holds another type reads as absent.
        self.values[position] = value if isinstance(value, bytes) else None
        self.left -= 1
        if not self.left:
            self.client.deliver(self.client.bulk_array(self.values))  # type: ignore[arg-type]


class NearCache:
    """The tracking link, the single-flight fetches and the invalidations."""

    def __init__(
        self,
        engine: Engine,
        opener: Callable[..., Awaitable[Link]],
        forward: Callable[[Client, list[bytes]], bytes],
        display: str,
        clock_ms: Callable[[], int],
    ) -> None:
        self.engine = engine
        self.stats = NearStats()
        self.link: Link | None = None
        self.state = "connecting"
        self._opener = opener
        self._forward = forward
        self._display = display
        self._clock_ms = clock_ms
        self._inflight: dict[bytes, _Fetch] = {}
        self._absent: OrderedDict[bytes, None] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._ping_sent = 0.0
        self._ping_answered = True

    # -- reads -------------------------------------------------------------------------

    def get(self, client: Client, key: bytes) -> bytes:
        """A GET a worker sent (its region had no answer): local copy, or one fetch."""
        found = self._local(key)
        if found is not _UNKNOWN:
            return client.nil if found is None else resp.bulk(found)  # type: ignore[arg-type]
        if self.link is None:
            return self._forward(client, [b"GET", key])
        self._fetch(key, functools.partial(self._answer, client, key))
        return DEFERRED

    def mget(self, client: Client, keys: list[bytes]) -> bytes:
        """An MGET (the keys of a ``get_many`` the region had no answer for)."""
        values = [self._local(key) for key in keys]
        missing = [position for position, value in enumerate(values) if value is _UNKNOWN]
        if not missing:
            return client.bulk_array(values)  # type: ignore[arg-type]
        if self.link is None:
            return self._forward(client, [b"MGET", *keys])
        gather = _Gather(client, values, len(missing))
        for position in missing:
            self._fetch(keys[position], functools.partial(gather.fill, position))
        return DEFERRED

    def _local(self, key: bytes) -> object:
        """The value kept here, None when known to be absent upstream, else ``_UNKNOWN``."""
        value = self.engine.get(key)
        if value is not None:
            return value
        if key in self._absent:
            self.stats.absent_hits += 1
            return None
        return _UNKNOWN

    def _answer(self, client: Client, key: bytes, raw: bytes, value: Value) -> None:
        if raw == LOST[0]:
            # The link died first: ask again on a forwarding connection, keep nothing.
            self._forward(client, [b"GET", key])
        elif isinstance(value, bytes):
            client.deliver(resp.bulk(value))
        else:
            client.deliver(client.nil if value is None else raw)

    def _fetch(self, key: bytes, waiter: Waiter) -> None:
        """Fetch ``key`` once for everyone who asks before the reply (single-flight)."""
        fetch = self._inflight.get(key)
        if fetch is None:
            assert self.link is not None
            fetch = self._inflight[key] = _Fetch(key, self._clock_ms())
            self.stats.fetches += 1
            request = _GET_PTTL % (len(key), key, len(key), key)
            self.link.send(request, [_fetched(fetch), self._done(fetch)])
        fetch.waiters.append(waiter)

    def _done(self, fetch: _Fetch) -> Waiter:
        def on_pttl(raw: bytes, pttl: Value) -> None:
            if self._inflight.get(fetch.key) is fetch:
                del self._inflight[fetch.key]
            value = fetch.value
            if not fetch.stale and isinstance(pttl, int) and not isinstance(value, Err):
                self._keep(fetch, pttl)
            for waiter in fetch.waiters:
                waiter(fetch.raw, value)

        return on_pttl

    def _keep(self, fetch: _Fetch, pttl: int) -> None:
        key, value = fetch.key, fetch.value
        if value is None:
            absent = self._absent
            absent[key] = None
            if len(absent) > ABSENT_MAX:
                absent.popitem(last=False)
            return
        if not isinstance(value, bytes) or pttl == -2:
            return
        self.stats.fetch_bytes += len(key) + len(value)
        expire_at = fetch.sent_ms + pttl if pttl > 0 else None
        try:
            self.engine.set(key, value, expire_at_ms=expire_at)
        except EngineError:
            pass  # too large to keep: it is served, not cached

    # -- invalidation --------------------------------------------------------------------

    def drop(self, keys: list[bytes]) -> None:
        """Forget ``keys`` here (written upstream, or invalidated by the server)."""
        engine, absent, inflight = self.engine, self._absent, self._inflight
        for key in keys:
            engine.delete(key)
            absent.pop(key, None)
            fetch = inflight.pop(key, None)
            if fetch is not None:
                fetch.stale = True

    def flush(self) -> None:
        """Forget everything (FLUSHDB upstream, a lost link): the region is revoked first."""
        self.engine.flush()
        self._absent.clear()
        for fetch in self._inflight.values():
            fetch.stale = True
        self._inflight.clear()

    def _on_push(self, push: Push) -> None:
        if not push or push[0] != b"invalidate":
            return
        keys = push[1] if len(push) > 1 else None
        if isinstance(keys, list):
            self.stats.invalidations += len(keys)
            self.drop([key for key in keys if isinstance(key, bytes)])
        else:
            self.stats.invalidations += 1
            self.flush()

    # -- the link's life -------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background, and keep reconnecting."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        """Stop reconnecting and drop the link."""
        if self._task is not None:
            self._task.cancel()
        link, self.link = self.link, None
        if link is not None:
            link.on_lost = None
            link.close()

    def tick(self) -> None:
        """Every :data:`PING_INTERVAL`: a link whose PING stays unanswered is closed."""
        link = self.link
        if link is None:
            return
        now = time.monotonic()
        if not self._ping_answered:
            if now - self._ping_sent > PING_TIMEOUT:
                log.warning(
                    "upstream %s: no answer for %.1f s; reconnecting", self._display, PING_TIMEOUT
                )
                link.close()
            return
        self._ping_answered = False
        self._ping_sent = now
        link.send(b"*1\r\n$4\r\nPING\r\n", [self._pong])

    def _pong(self, raw: bytes, value: Value) -> None:
        self._ping_answered = True

    def _lost(self) -> None:
        # Before anything else can run: nothing kept may be read once invalidations can
        # no longer arrive.
        self.link = None
        self.flush()
        self.state = "down"
        self.stats.link_losses += 1
        log.warning(
            "upstream %s: tracking connection lost; the near cache is flushed and reads go"
            " upstream until it is back",
            self._display,
        )
        self.start()

    async def _run(self) -> None:
        delay = RETRY_FIRST
        reported = False
        while True:
            try:
                link = await self._opener(3, on_push=self._on_push, name="blinkstore-tracking")
                reply = await link.call("CLIENT", "TRACKING", "ON")
                if isinstance(reply, Err):
                    link.close()
                    raise UpstreamError(f"{self._display}: CLIENT TRACKING refused: {reply}")
            except (OSError, UpstreamError, asyncio.TimeoutError) as exc:
                if not reported:
                    reported = True
                    self.state = "down"
                    log.warning(
                        "upstream %s unreachable (%s); reads go upstream or miss until it answers",
                        self._display,
                        exc,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            # Anything kept before this link was flushed when the last one was lost; the
            # flush again covers a value forwarded while no link was up (never kept anyway).
            self.flush()
            self._ping_answered = True
            link.on_lost = self._lost
            self.link = link
            self.state = "up"
            log.info("upstream %s: connected, tracking keys read", self._display)
            return


def _fetched(fetch: _Fetch) -> Waiter:
    """The GET reply of a fetch: held until its PTTL reply completes it."""

    def on_get(raw: bytes, value: Value) -> None:
        fetch.raw = raw
        fetch.value = value

    return on_get
