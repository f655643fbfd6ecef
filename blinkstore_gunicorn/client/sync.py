# Generated from aio.py by scripts/unasync.py (make generate): do not edit.
"""The cache client, written once: :class:`AsyncCache` (asyncio) in ``aio.py`` is the source,
and :class:`Cache` (blocking) in ``sync.py`` is generated from it by ``scripts/unasync.py``
(``make generate``)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from blinkstore_gunicorn.client._core import (
    _UNSET,
    MISSING,
    SCAN_BATCH,
    TTL,
    CacheCore,
    K,
    Key,
    Message,
    OnError,
    _Unset,
    decode_message,
    expire_ms,
    key_builder,
    normalize_stats,
    seconds_left,
    ttl_ms,
)
from blinkstore_gunicorn.client._leases_sync import sync_leases
from blinkstore_gunicorn.client._locks_sync import Lock, sync_locks
from blinkstore_gunicorn.client._runtime_sync import check_decorated, give_up, load, spawn
from blinkstore_gunicorn.client.backends import SyncBackend, create_sync_backend
from blinkstore_gunicorn.client.backends.base_sync import SyncFeed
from blinkstore_gunicorn.client.errors import CacheConnectionError
from blinkstore_gunicorn.client.ratelimit import Period, RateLimit, rate_limit_args, window_args
from blinkstore_gunicorn.client.serializers import Serializer
from blinkstore_gunicorn.client.stampede import FlightPlan, LocalFlights, unwrap

__all__ = ["Cache", "Subscription"]

logger = logging.getLogger("blinkstore_gunicorn.client")
#: Callers in this process (threads, or coroutines) asking for the same key share one flight.
_FLIGHTS = LocalFlights()

P = ParamSpec("P")
R = TypeVar("R")


class Cache(CacheCore):
    """Cache client. ``AsyncCache``: every method is awaitable, coroutines share few
    connections by pipelining. ``Cache``: blocking, thread-safe, fork-safe, works under gevent.

    ``url`` picks the backend (``unix://``, ``tcp://``, ``redis://``, ``memory://``...; None
    reads ``BLINKSTORE_URL``). ``namespace`` prefixes every key with ``namespace:``.
    ``timeout``/``connect_timeout`` are seconds (None waits forever). ``on_error="miss"``
    turns an unreachable store into misses and skipped writes, logged once per outage.
    ``max_connections``: for ``Cache``, how many idle connections the pool keeps (default
    8); for ``AsyncCache`` on the store, the number of pipelined connections (default 1),
    with ``max_in_flight`` (``AsyncCache`` only) bounding the requests queued on each
    (default 1024).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        serializer: str | Serializer | None = "json",
        timeout: float | _Unset | None = _UNSET,
        connect_timeout: float | _Unset | None = _UNSET,
        on_error: OnError = "raise",
        max_connections: int | None = None,
    ) -> None:
        super().__init__(
            url,
            namespace=namespace,
            serializer=serializer,
            timeout=timeout,
            connect_timeout=connect_timeout,
            on_error=on_error,
            max_connections=max_connections,
        )
        self.backend: SyncBackend = create_sync_backend(self.url, self._options)
        self._leases = sync_leases(self.backend)

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: Key, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        name = self._key(key)
        shared = self._shared
        if shared is not None:
            # From the store's shared-memory region: no round trip on a hit or a miss.
            raw = shared.get(name)
            if raw is None:
                return default
            if isinstance(raw, bytes):
                return self._decode(raw, default)
            shared.fell_back()
        try:
            raw = self.backend.get(name)
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return default
        if self._down:
            self._back()
        if raw is None:
            return default
        return self._decode(raw, default)

    def get_many(self, keys: Iterable[K]) -> dict[K, Any]:
        """``{key: value}`` for the keys that exist (one round trip)."""
        keys = list(keys)
        if not keys:
            return {}
        names = [self._key(key) for key in keys]
        values, asked = self._shared_many(names)
        if asked:
            try:
                fetched = self.backend.mget([names[position] for position in asked])
            except CacheConnectionError as exc:
                self._unreachable(exc)
                return {}
            if self._down:
                self._back()
            for position, raw in zip(asked, fetched, strict=True):
                values[position] = raw
        return self._found(keys, values)

    def exists(self, key: Key) -> bool:
        """Whether ``key`` exists."""
        name = self._key(key)
        found = self._shared_exists(name)
        if found is not None:
            return found
        try:
            return self.backend.exists(name)
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return False

    def ttl(self, key: Key) -> float | None:
        """Seconds until ``key`` expires; ``math.inf`` if it never does; None if missing."""
        name = self._key(key)
        pttl = self._shared_pttl(name)
        if pttl is not None:
            return seconds_left(pttl)
        try:
            return seconds_left(self.backend.pttl(name))
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return None

    def keys(self, pattern: Key = "*") -> Iterator[str]:
        """Keys of this namespace matching the glob ``pattern``, without the namespace prefix;
        fetched with SCAN in batches (keys written meanwhile may or may not appear)."""
        try:
            for raw in self.backend.scan_iter(self._match(pattern), SCAN_BATCH):
                yield self._strip(raw)
        except CacheConnectionError as exc:
            self._unreachable(exc)

    # -- writes ------------------------------------------------------------------------------

    def set(
        self, key: Key, value: Any, ttl: TTL = None, *, nx: bool = False, xx: bool = False
    ) -> bool:
        """Store ``value``; ``ttl`` in seconds or a timedelta (None: no expiry). ``nx``: only
        if absent, ``xx``: only if present. True if written."""
        if nx and xx:
            raise ValueError("nx and xx are mutually exclusive")
        raw = self._dumps(value)
        try:
            written = self.backend.set(self._key(key), raw, ttl_ms(ttl), nx, xx)
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return False
        if self._down:
            self._back()
        return written

    def add(self, key: Key, value: Any, ttl: TTL = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True if written."""
        return self.set(key, value, ttl, nx=True)

    def set_many(self, mapping: Mapping[K, Any], ttl: TTL = None) -> None:
        """Store every pair (pipelined: one round trip)."""
        items = self._items(mapping)
        if not items:
            return
        try:
            self.backend.mset(items, ttl_ms(ttl))
        except CacheConnectionError as exc:
            self._unreachable(exc)

    def delete(self, key: Key) -> bool:
        """Remove ``key``; True if it existed."""
        try:
            return self.backend.delete([self._key(key)]) > 0
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return False

    def delete_many(self, keys: Iterable[K]) -> int:
        """Remove keys; how many existed."""
        raw = [self._key(key) for key in keys]
        if not raw:
            return 0
        try:
            return self.backend.delete(raw)
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return 0

    def incr(self, key: Key, delta: int = 1) -> int:
        """Add ``delta`` to the integer at ``key`` (created as 0) and return the result.

        Raises even with ``on_error="miss"``: there is no meaningful counter value to return.
        """
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"delta must be an int, not {delta!r}")
        return self.backend.incrby(self._key(key), delta)

    def decr(self, key: Key, delta: int = 1) -> int:
        """Subtract ``delta`` (see :meth:`incr`)."""
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"delta must be an int, not {delta!r}")
        return self.incr(key, -delta)

    def expire(self, key: Key, ttl: TTL) -> bool:
        """Make ``key`` expire in ``ttl`` (<= 0: now; None: never); False if it is missing."""
        try:
            return self.backend.pexpire(self._key(key), expire_ms(ttl))
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return False

    def touch(self, key: Key, ttl: TTL = None) -> bool:
        """Django's name for :meth:`expire`: refresh ``key``'s expiry (None: never expires)."""
        return self.expire(key, ttl)

    def clear(self) -> None:
        """Remove this namespace's keys (SCAN + DEL), or every key (FLUSHDB) without one."""
        try:
            if not self._prefix:
                self.backend.flushdb()
                return
            batch: list[bytes] = []
            for raw in self.backend.scan_iter(self._match("*"), SCAN_BATCH):
                batch.append(raw)
                if len(batch) >= SCAN_BATCH:
                    self.backend.delete(batch)
                    batch = []
            if batch:
                self.backend.delete(batch)
        except CacheConnectionError as exc:
            self._unreachable(exc)

    # -- compute-on-miss ---------------------------------------------------------------------

    def get_or_set(
        self,
        key: Key,
        default_or_loader: Any,
        ttl: TTL = None,
        *,
        lock_timeout: float = 10.0,
        wait_timeout: float = 10.0,
        stale_ttl: float | None = None,
        early_refresh: float | None = None,
        on_wait_timeout: str = "raise",
    ) -> Any:
        """The cached value; on a miss exactly one caller on the host runs the loader
        (``default_or_loader``: a value, or a function to call; with ``AsyncCache`` also a
        coroutine function) and stores its result, while the others wait for it. See
        docs/stampede.md for every option."""
        plan = FlightPlan.make(
            ttl_ms(ttl),
            lock_timeout=lock_timeout,
            wait_timeout=wait_timeout,
            stale_ttl=stale_ttl,
            early_refresh=early_refresh,
            on_wait_timeout=on_wait_timeout,
        )
        name = self._key(key)
        value = self._shared_fresh(name, plan)
        if value is not MISSING:
            return value
        return _FLIGHTS.run(
            (self.url.display, name),
            lambda: self._single_flight(name, default_or_loader, plan),
            plan.wait_ms / 1000,
            plan,
        )

    def _single_flight(self, name: bytes, default_or_loader: Any, plan: FlightPlan) -> Any:
        try:
            fetched = self._leases.fetch(name, plan.lease_ms, plan.wait_ms)
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return load(default_or_loader)
        if fetched.kind == "hit":
            payload, fresh_until, compute_ms = unwrap(fetched.value)
            if plan.needs_refresh(fresh_until, compute_ms):
                self._refresh_in_background(name, default_or_loader, plan)
            value = self._decode(payload, MISSING)
            if value is MISSING:  # undecodable, with on_error="miss": replace it
                return self._recompute(name, default_or_loader, plan)
            return value
        if fetched.kind == "lease":
            return self._compute(name, default_or_loader, plan, fetched.lease)
        if plan.compute_on_timeout:
            return load(default_or_loader)
        raise plan.timeout_error(self._strip(name))

    def _recompute(self, name: bytes, default_or_loader: Any, plan: FlightPlan) -> Any:
        """The loader's value, stored over the entry unless someone else holds its lease."""
        try:
            lease = self._leases.try_lease(name, plan.lease_ms)
        except CacheConnectionError:
            lease = None
        if lease is None:
            return load(default_or_loader)
        return self._compute(name, default_or_loader, plan, lease)

    def _compute(self, name: bytes, default_or_loader: Any, plan: FlightPlan, lease: Any) -> Any:
        """Run the loader under ``lease`` and store its result; a failure gives the lease up."""
        started = time.monotonic()
        try:
            value = load(default_or_loader)
            raw = plan.encode(self._dumps(value), round((time.monotonic() - started) * 1000))
        except BaseException:
            give_up(lease, name)
            raise
        try:
            lease.fill(raw, plan.store_px)
        except CacheConnectionError as exc:
            self._unreachable(exc)
        return value

    def _refresh_in_background(self, name: bytes, default_or_loader: Any, plan: FlightPlan) -> None:
        try:
            lease = self._leases.try_lease(name, plan.lease_ms)
        except CacheConnectionError:
            return  # the stale value was served; the next read tries again
        if lease is not None:
            spawn(self._refresh, name, default_or_loader, plan, lease)

    def _refresh(self, name: bytes, default_or_loader: Any, plan: FlightPlan, lease: Any) -> None:
        try:
            self._compute(name, default_or_loader, plan, lease)
        except Exception:
            logger.exception(
                "refreshing %r in the background failed; it is retried on a later read", name
            )

    def cached(
        self,
        ttl: TTL = None,
        key: str | Callable[..., str] | None = None,
        **flight: Any,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator caching a function's result (see :func:`key_builder` for ``key``),
        computed once host-wide on a miss (``flight`` takes :meth:`get_or_set`'s options).
        ``AsyncCache.cached`` takes coroutine functions, ``Cache.cached`` plain ones. The
        wrapper has ``invalidate(*args, **kwargs)`` (awaitable with ``AsyncCache``) to drop
        one call's entry."""

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            check_decorated(func)
            make_key = key_builder(func, key)

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                name = make_key(args, kwargs)
                return self.get_or_set(  # type: ignore[no-any-return]
                    name, lambda: func(*args, **kwargs), ttl, **flight
                )

            def invalidate(*args: Any, **kwargs: Any) -> bool:
                return self.delete(make_key(args, kwargs))

            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            return wrapper

        return decorate

    # -- server ------------------------------------------------------------------------------

    def ping(self) -> bool:
        """True if the store answers (False with ``on_error="miss"`` when it does not)."""
        try:
            self.backend.ping()
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return False
        if self._down:
            self._back()
        return True

    def stats(self) -> dict[str, Any]:
        """The server's INFO plus backend-independent keys (``keys``, ``used_memory``,
        ``memory_limit``, ``hits``, ``misses``, ``evictions``, ``expirations``)."""
        try:
            info = self.backend.info()
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return {}
        return normalize_stats(info, self.backend.name)

    def close(self) -> None:
        """Close connections (the cache reconnects if used again)."""
        if self._shared is not None:
            self._shared.close()
        self.backend.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- locks -------------------------------------------------------------------------------

    def lock(
        self,
        name: Key,
        timeout: float | None = None,
        *,
        blocking: bool = True,
        blocking_timeout: float | None = None,
    ) -> Lock:
        """A host-wide lock named ``name`` (in this cache's namespace), redis-py style:
        ``async with cache.lock("job", timeout=30):``. ``timeout``: seconds until the lock
        ends by itself (None: when released; on the store also when its holder's connection
        closes). ``blocking_timeout``: seconds ``acquire`` waits (None: without limit).
        Lock errors and connection errors are raised whatever ``on_error`` says. See
        docs/locks.md."""
        locks = sync_locks(self.backend)
        return Lock(
            locks,
            self._key(name),
            name,
            timeout=timeout,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
        )

    # -- pub/sub -----------------------------------------------------------------------------

    def publish(self, channel: Key, message: Any) -> int:
        """Send ``message`` (encoded like a value) to the subscribers of ``channel`` (named
        like a key, in the cache's namespace); how many subscriptions received it (0 with
        ``on_error="miss"`` when the store is unreachable)."""
        raw = self._dumps(message)
        try:
            return self.backend.publish(self._key(channel), raw)
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return 0

    def subscribe(self, *channels: Key, patterns: Iterable[Key] = ()) -> Subscription:
        """The messages published on ``channels`` and on the channels matching the glob
        ``patterns``: ``async with cache.subscribe("room") as room: async for message in
        room:`` with ``AsyncCache``, ``with``/``for`` with ``Cache`` (see docs/pubsub.md)."""
        names = [self._key(channel) for channel in channels]
        globs = [self._match(pattern) for pattern in patterns]
        if not names and not globs:
            raise ValueError("subscribe needs at least one channel or pattern")
        return Subscription(self, names, globs)

    # -- rate limits (docs/rate-limits.md) ---------------------------------------------------

    def rate_limit(self, key: Key, limit: int, period: Period, cost: int = 1) -> RateLimit:
        """Take ``cost`` from the limit of ``limit`` requests per ``period`` seconds kept at
        ``key``, host-wide and atomically (GCRA: a burst of ``limit``, then one request every
        ``period / limit``). ``cost=0`` only looks. With ``on_error="miss"`` an unreachable
        store lets the request pass (logged once per outage).
        """
        period_ms = rate_limit_args(limit, period, cost)
        try:
            reply = self.backend.rate_limit(self._key(key), limit, period_ms, cost)
        except CacheConnectionError as exc:
            self._unreachable(exc)
            return RateLimit.unchecked(limit)
        return RateLimit.from_reply(limit, reply)

    def incr_window(self, key: Key, period: Period, delta: int = 1) -> int:
        """Add ``delta`` to the fixed-window counter at ``key`` and return the count: the
        window opens when the counter is created and ends ``period`` seconds later (later
        calls never move it). Raises even with ``on_error="miss"``, like :meth:`incr`.
        """
        period_ms = window_args(period, delta)
        return self.backend.incr_window(self._key(key), period_ms, delta)


class Subscription:
    """Messages from ``AsyncCache.subscribe`` (``async with``, ``async for``) or
    ``Cache.subscribe`` (``with``, ``for``), in the order they were published.

    It subscribes on entering the ``with`` block (or at the first :meth:`get`) and receives
    what is published from then on, on a connection of its own. When that connection is lost
    (the store restarting), the next :meth:`get` subscribes again; what was published in
    between is lost, as with Redis.
    """

    def __init__(self, cache: Cache, channels: list[bytes], patterns: list[bytes]) -> None:
        self._cache = cache
        self._channels = channels
        self._patterns = patterns
        self._feed: SyncFeed | None = None

    def open(self) -> None:
        """Subscribe now (returns once the store has confirmed it); entering ``with`` does."""
        if self._feed is None:
            self._feed = self._cache.backend.subscribe(self._channels, self._patterns)

    def get(self, timeout: float | None = None) -> Message | None:
        """The next message, or None when ``timeout`` seconds pass first (None: no limit)."""
        if self._feed is None:
            self.open()
        assert self._feed is not None
        try:
            raw = self._feed.next(timeout)
        except CacheConnectionError:
            self.close()
            self.open()
            assert self._feed is not None
            raw = self._feed.next(timeout)
        return None if raw is None else decode_message(self._cache, raw)

    def close(self) -> None:
        """Unsubscribe (close the connection); :meth:`get` would subscribe again."""
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Message:
        message = self.get()
        assert message is not None  # no timeout: get() waits for one
        return message

    def __enter__(self) -> Subscription:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
