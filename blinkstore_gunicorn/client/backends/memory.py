"""``memory://``: the store's own engine, in this process, behind a lock.

Same :class:`~blinkstore_gunicorn.engine.MemoryEngine` as the store, so TTLs, the memory
limit and eviction behave exactly as they do there. It is per process by nature: gunicorn
workers each get their own copy, so use it for tests and single-process development.
``memory://NAME`` shares one engine among every cache in the process that names it.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Final

from blinkstore_gunicorn.client.backends._resp import RawMessage
from blinkstore_gunicorn.client.errors import (
    CacheConfigError,
    CacheConnectionError,
    CacheResponseError,
    CacheValueTooLarge,
)
from blinkstore_gunicorn.client.url import CacheURL
from blinkstore_gunicorn.engine import (
    DEFAULT_MEMORY_LIMIT,
    EngineError,
    MemoryEngine,
    ValueTooLarge,
)
from blinkstore_gunicorn.engine.pattern import compile_pattern
from blinkstore_gunicorn.engine.ratelimit import Write, rate_limit_step, window_step

__all__ = ["AsyncMemoryBackend", "MemoryBackend", "memory_engine"]

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_NOT_INTEGER: Final = "ERR value is not an integer or out of range"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Shared:
    """An engine and the lock that guards it."""

    __slots__ = ("__weakref__", "engine", "lock")

    def __init__(self, memory_limit: int) -> None:
        self.engine = MemoryEngine(memory_limit=memory_limit, clock_ms=_now_ms)
        self.lock = threading.Lock()


_NAMED: dict[str, _Shared] = {}
_ALL: weakref.WeakSet[_Shared] = weakref.WeakSet()


def _reset_locks_in_child() -> None:
    # A lock held by another thread at fork time would stay locked forever in the child.
    for shared in list(_ALL):
        shared.lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_locks_in_child)


def memory_engine(url: CacheURL) -> _Shared:
    """The engine for a ``memory://`` URL: private, or shared by name within the process."""
    raw_limit = url.options.get("memory_limit")
    limit = DEFAULT_MEMORY_LIMIT
    if raw_limit is not None:
        from blinkstore_gunicorn.config import parse_size

        try:
            limit = parse_size(raw_limit)
        except ValueError as exc:
            raise CacheConfigError(f"{url.display}: memory_limit: {exc}") from None
    name = url.memory_name
    if name is None:
        shared = _Shared(limit)
    else:
        shared = _NAMED.get(name) or _NAMED.setdefault(name, _Shared(limit))
        if raw_limit is not None and shared.engine.memory_limit != limit:
            raise CacheConfigError(
                f"{url.display}: memory://{name} already exists with memory_limit="
                f"{shared.engine.memory_limit}"
            )
    _ALL.add(shared)
    return shared


class MemoryBackend:
    """Blocking in-process backend."""

    name = "memory"

    def __init__(self, url: CacheURL) -> None:
        self._shared = memory_engine(url)

    @property
    def engine(self) -> MemoryEngine:
        """The engine (for tests and introspection)."""
        return self._shared.engine

    def get(self, key: bytes) -> bytes | None:
        """Read one value."""
        with self._shared.lock:
            return self._shared.engine.get(key)

    def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Read many values."""
        with self._shared.lock:
            get = self._shared.engine.get
            return [get(key) for key in keys]

    def _set(self, key: bytes, value: bytes, px: int | None) -> None:
        expire_at = _now_ms() + px if px is not None else None
        try:
            self._shared.engine.set(key, value, expire_at_ms=expire_at)
        except ValueTooLarge as exc:
            raise CacheValueTooLarge(f"ERR value too large: {exc}") from None  # the store's words
        except EngineError as exc:
            raise CacheResponseError(f"ERR {exc}") from None

    def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool:
        """Write one value, honouring NX/XX."""
        with self._shared.lock:
            if nx or xx:
                present = self._shared.engine.contains(key)
                if (nx and present) or (xx and not present):
                    return False
            self._set(key, value, px)
            return True

    def mset(self, items: Sequence[tuple[bytes, bytes]], px: int | None) -> None:
        """Write many values."""
        with self._shared.lock:
            for key, value in items:
                self._set(key, value, px)

    def delete(self, keys: Sequence[bytes]) -> int:
        """Delete keys; how many existed."""
        with self._shared.lock:
            delete = self._shared.engine.delete
            return sum(delete(key) for key in keys)

    def exists(self, key: bytes) -> bool:
        """Whether the key exists."""
        with self._shared.lock:
            return self._shared.engine.contains(key)

    def incrby(self, key: bytes, delta: int) -> int:
        """Redis INCRBY: 64-bit signed, a missing key counts as 0, the TTL is kept."""
        with self._shared.lock:
            engine = self._shared.engine
            raw = engine.peek(key)
            current = 0
            if raw is not None:
                # Plain decimal only (int() would also take " 1", "1_0" and "+1").
                if not (raw.isdigit() or (raw[:1] == b"-" and raw[1:].isdigit())):
                    raise CacheResponseError(_NOT_INTEGER)
                current = int(raw)
                if not _INT64_MIN <= current <= _INT64_MAX:
                    raise CacheResponseError(_NOT_INTEGER)
            result = current + delta
            if not _INT64_MIN <= result <= _INT64_MAX:
                raise CacheResponseError("ERR increment or decrement would overflow")
            try:
                engine.set(key, b"%d" % result, keep_ttl=True)
            except EngineError as exc:
                raise CacheResponseError(f"ERR {exc}") from None
            return result

    def pexpire(self, key: bytes, px: int | None) -> bool:
        """Set or remove the TTL; a TTL <= 0 deletes the key."""
        with self._shared.lock:
            when = _now_ms() + px if px is not None else None
            return self._shared.engine.set_expire_at(key, when)

    def pttl(self, key: bytes) -> int:
        """Remaining ms, -1 without TTL, -2 when missing."""
        with self._shared.lock:
            engine = self._shared.engine
            if not engine.contains(key):
                return -2
            deadline = engine.expire_at(key)
            if deadline is None:
                return -1
            return max(0, deadline - _now_ms())

    def scan_iter(self, match: bytes, count: int) -> Iterator[bytes]:
        """Cursor scan, taking the lock per batch as the store would per SCAN call."""
        cursor = 0
        while True:
            with self._shared.lock:
                cursor, keys = self._shared.engine.scan(cursor, count, match)
            yield from keys
            if cursor == 0:
                return

    def flushdb(self) -> None:
        """Remove every key."""
        with self._shared.lock:
            self._shared.engine.flush()

    def ping(self) -> None:
        """Always reachable."""

    def info(self) -> dict[str, Any]:
        """Engine stats under the names Redis's INFO uses."""
        with self._shared.lock:
            stats = self._shared.engine.stats()
        return {
            "used_memory": stats.used_bytes,
            "maxmemory": stats.memory_limit,
            "keyspace_hits": stats.hits,
            "keyspace_misses": stats.misses,
            "evicted_keys": stats.evictions,
            "expired_keys": stats.expirations,
            "db0": {"keys": stats.keys, "expires": stats.expires},
        }

    def close(self) -> None:
        """Nothing to release (the data stays for other caches naming the same store)."""

    # -- locks (see docs/locks.md) ----------------------------------------------------------

    def delete_if_equal(self, key: bytes, expected: bytes) -> bool:
        """Delete ``key`` only while it holds ``expected``: a lock is released by its holder."""
        with self._shared.lock:
            engine = self._shared.engine
            return engine.peek(key) == expected and engine.delete(key)

    def extend_if_equal(self, key: bytes, expected: bytes, ms: int, replace: bool) -> bool:
        """Give ``key`` ``ms`` more (``replace``: from now) only while it holds ``expected``."""
        with self._shared.lock:
            engine = self._shared.engine
            if engine.peek(key) != expected:
                return False
            deadline = engine.expire_at(key)
            if replace:
                deadline = _now_ms() + ms
            elif deadline is not None:
                deadline += ms
            return engine.set_expire_at(key, deadline)

    # -- pub/sub --

    def publish(self, channel: bytes, message: bytes) -> int:
        """Hand ``message`` to this process's subscriptions on the same engine."""
        return _hub(self._shared).publish(channel, message)

    def subscribe(self, channels: Sequence[bytes], patterns: Sequence[bytes]) -> _MemoryFeed:
        """A subscription in this process."""
        return _MemoryFeed(_hub(self._shared), channels, patterns)

    # -- rate limits (docs/rate-limits.md) ---------------------------------------------------

    def rate_limit(
        self, key: bytes, limit: int, period_ms: int, cost: int
    ) -> tuple[bool, int, int, int]:
        """GCRA, the store's own step function."""
        with self._shared.lock:
            engine = self._shared.engine
            try:
                decision, write = rate_limit_step(
                    engine.peek(key), _now_ms(), limit, period_ms, cost
                )
            except ValueError:
                raise CacheResponseError("ERR value is not a rate limit state") from None
            if write is not None:
                self._write(key, write)
            return decision.reply()

    def incr_window(self, key: bytes, period_ms: int, delta: int) -> int:
        """Fixed-window counter, the store's own step function."""
        with self._shared.lock:
            engine = self._shared.engine
            raw = engine.peek(key)
            deadline = None if raw is None else engine.expire_at(key)
            try:
                count, write = window_step(raw, deadline, _now_ms(), period_ms, delta)
            except ValueError:
                raise CacheResponseError(_NOT_INTEGER) from None
            except OverflowError:
                raise CacheResponseError("ERR increment or decrement would overflow") from None
            self._write(key, write)
            return count

    def _write(self, key: bytes, write: Write) -> None:
        try:
            self._shared.engine.set(key, write.value, expire_at_ms=write.expire_at_ms)
        except EngineError as exc:
            raise CacheResponseError(f"ERR {exc}") from None


class AsyncMemoryBackend:
    """The in-process backend with awaitable methods (no I/O, so no waiting)."""

    name = "memory"

    def __init__(self, url: CacheURL) -> None:
        self.sync = MemoryBackend(url)

    @property
    def engine(self) -> MemoryEngine:
        """The engine (for tests and introspection)."""
        return self.sync.engine

    async def get(self, key: bytes) -> bytes | None:
        """Read one value."""
        return self.sync.get(key)

    async def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Read many values."""
        return self.sync.mget(keys)

    async def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool:
        """Write one value."""
        return self.sync.set(key, value, px, nx, xx)

    async def mset(self, items: Sequence[tuple[bytes, bytes]], px: int | None) -> None:
        """Write many values."""
        self.sync.mset(items, px)

    async def delete(self, keys: Sequence[bytes]) -> int:
        """Delete keys."""
        return self.sync.delete(keys)

    async def exists(self, key: bytes) -> bool:
        """Whether the key exists."""
        return self.sync.exists(key)

    async def incrby(self, key: bytes, delta: int) -> int:
        """INCRBY."""
        return self.sync.incrby(key, delta)

    async def pexpire(self, key: bytes, px: int | None) -> bool:
        """Set or remove the TTL."""
        return self.sync.pexpire(key, px)

    async def pttl(self, key: bytes) -> int:
        """Remaining ms, -1, or -2."""
        return self.sync.pttl(key)

    async def scan_iter(self, match: bytes, count: int) -> AsyncIterator[bytes]:
        """Cursor scan."""
        for key in self.sync.scan_iter(match, count):
            yield key

    async def flushdb(self) -> None:
        """Remove every key."""
        self.sync.flushdb()

    async def ping(self) -> None:
        """Always reachable."""

    async def info(self) -> dict[str, Any]:
        """Engine stats."""
        return self.sync.info()

    async def close(self) -> None:
        """Nothing to release."""

    # -- locks (see docs/locks.md) ----------------------------------------------------------

    async def delete_if_equal(self, key: bytes, expected: bytes) -> bool:
        """Delete ``key`` only while it holds ``expected``."""
        return self.sync.delete_if_equal(key, expected)

    async def extend_if_equal(self, key: bytes, expected: bytes, ms: int, replace: bool) -> bool:
        """Give ``key`` ``ms`` more (``replace``: from now) only while it holds ``expected``."""
        return self.sync.extend_if_equal(key, expected, ms, replace)

    # -- pub/sub --

    async def publish(self, channel: bytes, message: bytes) -> int:
        """Hand ``message`` to this process's subscriptions on the same engine."""
        return self.sync.publish(channel, message)

    async def subscribe(
        self, channels: Sequence[bytes], patterns: Sequence[bytes]
    ) -> _AsyncMemoryFeed:
        """A subscription in this process, read by this event loop."""
        return _AsyncMemoryFeed(_hub(self.sync._shared), channels, patterns)

    # -- rate limits (docs/rate-limits.md) ---------------------------------------------------

    async def rate_limit(
        self, key: bytes, limit: int, period_ms: int, cost: int
    ) -> tuple[bool, int, int, int]:
        """GCRA."""
        return self.sync.rate_limit(key, limit, period_ms, cost)

    async def incr_window(self, key: bytes, period_ms: int, delta: int) -> int:
        """Fixed-window counter."""
        return self.sync.incr_window(key, period_ms, delta)


# -- pub/sub -----------------------------------------------------------------------------------

#: Unread messages one ``memory://`` subscription may hold; past it the subscription is dropped,
#: as the store drops a subscriber that does not read.
FEED_LIMIT: Final = 10_000
_DROPPED: Final = "dropped"


class _Subscribed:
    """What a subscription listens to, and its queue: ``size()`` messages waiting, ``put``
    adds one (or the mark that the subscription was dropped)."""

    def __init__(
        self,
        hub: _LocalHub,
        channels: Sequence[bytes],
        patterns: Sequence[bytes],
        size: Callable[[], int],
        put: Callable[[RawMessage | str], None],
    ) -> None:
        self._hub = hub
        self._channels = frozenset(channels)
        self._patterns = [(pattern, compile_pattern(pattern)) for pattern in patterns]
        self._size = size
        self._put = put
        hub.add(self)

    def offer(self, channel: bytes, message: bytes) -> int:
        """Queue ``message`` once per matching subscription; how many."""
        delivered = 0
        if channel in self._channels:
            self._queue_item((channel, message, None))
            delivered += 1
        for pattern, matches in self._patterns:
            if matches(channel):
                self._queue_item((channel, message, pattern))
                delivered += 1
        return delivered

    def _queue_item(self, item: RawMessage) -> None:
        if self._size() >= FEED_LIMIT:
            self._hub.remove(self)
            self._put(_DROPPED)
        else:
            self._put(item)

    def _check(self, item: RawMessage | str) -> RawMessage:
        if item == _DROPPED:
            raise CacheConnectionError(
                f"memory:// subscription dropped: more than {FEED_LIMIT} messages unread"
            )
        assert not isinstance(item, str)
        return item


class _MemoryFeed(_Subscribed):
    """A blocking ``memory://`` subscription (messages may come from any thread)."""

    def __init__(self, hub: _LocalHub, channels: Sequence[bytes], patterns: Sequence[bytes]):
        self._queue: queue.SimpleQueue[RawMessage | str] = queue.SimpleQueue()
        super().__init__(hub, channels, patterns, self._queue.qsize, self._queue.put)

    def next(self, timeout: float | None) -> RawMessage | None:
        """The next message, or None after ``timeout`` seconds."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return self._check(item)

    def close(self) -> None:
        """Stop receiving."""
        self._hub.remove(self)


class _AsyncMemoryFeed(_Subscribed):
    """An asyncio ``memory://`` subscription, read by the loop that made it."""

    def __init__(self, hub: _LocalHub, channels: Sequence[bytes], patterns: Sequence[bytes]):
        loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[RawMessage | str] = asyncio.Queue()

        def put(item: RawMessage | str) -> None:
            # Publishers may be other threads: only the loop's own thread touches the queue.
            loop.call_soon_threadsafe(self._queue.put_nowait, item)

        super().__init__(hub, channels, patterns, self._queue.qsize, put)

    async def next(self, timeout: float | None) -> RawMessage | None:
        """The next message, or None after ``timeout`` seconds."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None
        return self._check(item)

    async def close(self) -> None:
        """Stop receiving."""
        self._hub.remove(self)


class _LocalHub:
    """The subscriptions to one ``memory://`` engine in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: set[_Subscribed] = set()

    def add(self, feed: _Subscribed) -> None:
        """Start delivering to ``feed``."""
        with self._lock:
            self._feeds.add(feed)

    def remove(self, feed: _Subscribed) -> None:
        """Stop delivering to ``feed``."""
        with self._lock:
            self._feeds.discard(feed)

    def publish(self, channel: bytes, message: bytes) -> int:
        """Offer ``message`` to every subscription; how many received it."""
        with self._lock:
            feeds = list(self._feeds)
        return sum(feed.offer(channel, message) for feed in feeds)


_HUBS: weakref.WeakKeyDictionary[_Shared, _LocalHub] = weakref.WeakKeyDictionary()
_HUBS_LOCK = threading.Lock()


def _hub(shared: _Shared) -> _LocalHub:
    with _HUBS_LOCK:
        hub = _HUBS.get(shared)
        if hub is None:
            hub = _HUBS[shared] = _LocalHub()
        return hub
