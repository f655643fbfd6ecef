"""The in-process engine: SIEVE eviction over two ordered dicts, TTLs in a side table.

Layout, chosen so that a hit costs a few C calls and no per-entry Python object exists beyond
the key and the value themselves:

* A string's value is its ``bytes``; a hash, list or set is a
  :class:`~blinkstore_gunicorn.engine.typed.Container` that keeps its own cost (``typed.py``):
  every type shares the queue, the TTL table and the memory account.
* Entries sit in one queue, oldest (tail) to newest (head), split at the SIEVE hand into two
  ``OrderedDict[bytes, bytes]``: ``_behind`` (tail up to the hand, already swept) and
  ``_ahead`` (the hand up to the head). A new key joins ``_ahead``'s end (the head).
* ``_visited: set[bytes]`` holds SIEVE's visited bits: a hit adds the key (``set.add``, C).
* Eviction looks at the hand (``_ahead``'s first entry): visited -> clear the bit and move it to
  ``_behind``'s end (it stays in place in the queue, the hand advances); not visited -> evict
  it. When ``_ahead`` runs empty the hand wraps to the tail: the two dicts swap roles. Every
  step either evicts or clears a bit a hit set, so a write costs O(1) amortized.
* ``_deadlines: dict[bytes, int]`` holds only keys with a TTL (absolute wall-clock ms), so a
  store without TTLs never pays for them; a hit checks it only while it is non-empty.
* With a shared-memory region attached (:meth:`MemoryEngine.attach_region`), a value the
  region holds is not kept in the dicts: the entry's dict value is its block offset (an int)
  and every mutation is published into the region before the engine returns, so the store's
  reply follows it. Values the region does not take (too large, or no block free) stay bytes.
* ``server/_fastcmd.c`` answers plain GET/MGET from these attributes (``_ahead``, ``_behind``,
  ``_deadlines``, ``_visited``, ``_hits``, ``_misses``, ``_region``, ``_inherited``), plain
  SET, INCR (keep_ttl) and MSET as :meth:`MemoryEngine.set`, EXPIRE as ``set_expire_at``, when
  nothing is evicted (also ``_used``, ``_inserts``, ``_heap``, ``watched.changes``, the limits,
  the ``*_OVERHEAD`` costs, ``_HEAP_*`` and ``block_size``): a change to
  :meth:`MemoryEngine.get`, ``set`` or ``set_expire_at`` changes it too
  (``tests/unit/test_fastcmd.py`` compares them).
* ``_heap: list[(deadline, key)]`` for active expiry. Entries are never removed in place: one
  whose deadline no longer matches ``_deadlines`` is stale and skipped when popped; the heap is
  rebuilt from ``_deadlines`` when stale entries exceed half the live ones (amortized O(1)) or
  pin too many key bytes, so it cannot grow without bound.

Why SIEVE (Zhang et al., NSDI'24) rather than LRU: on a Zipf(0.99) trace it misses 15-18 %
less often than exact LRU, which itself beats Redis's sampled LRU (``bench/eviction.py``,
``docs/engine.md``); a read-mostly key is kept without being moved on every hit; and a hit
costs about what an LRU hit does (one ``set.add`` instead of one ``move_to_end``).
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable

from blinkstore_gunicorn.engine.allocator import tune_allocator
from blinkstore_gunicorn.engine.base import (
    EngineError,
    EngineStats,
    EntryTooLarge,
    KeyTooLarge,
    ValueTooLarge,
    WatchedKeys,
)
from blinkstore_gunicorn.engine.inspection import Inspection
from blinkstore_gunicorn.engine.keyspace import TTL_OVERHEAD, Keyspace, Stored
from blinkstore_gunicorn.engine.scan import MAX_SCAN_SNAPSHOTS, ScanCursors
from blinkstore_gunicorn.engine.typed import Container, WrongType
from blinkstore_gunicorn.shm.layout import BLOCK_HEADER, block_size
from blinkstore_gunicorn.shm.writer import RegionFull, RegionWriter

__all__ = [
    "DEFAULT_MAX_KEY_SIZE",
    "DEFAULT_MAX_VALUE_SIZE",
    "DEFAULT_MEMORY_LIMIT",
    "ENTRY_OVERHEAD",
    "MAX_SCAN_SNAPSHOTS",
    "REGION_OVERHEAD",
    "TTL_OVERHEAD",
    "EngineError",
    "EngineStats",
    "EntryTooLarge",
    "KeyTooLarge",
    "MemoryEngine",
    "ValueTooLarge",
    "tune_allocator",
]

DEFAULT_MEMORY_LIMIT = 64 * 2**20
DEFAULT_MAX_KEY_SIZE = 64 * 2**10
DEFAULT_MAX_VALUE_SIZE = 16 * 2**20

# Bytes of real process memory one entry costs beyond len(key) + len(value). Measured on
# CPython 3.11/x86-64 as RSS growth per entry of a store held at its limit by a write flood
# (the steady state, resize peaks included, not a fresh build), after tune_allocator();
# docs/engine.md has the method and the figures:
#   key and value bytes objects: 2 x 33-byte header + allocator rounding        ~ 82-100
#   OrderedDict list node (32) and the table: dict entry (24) + index (4) +
#   fast-node slot (8), with 3x..6x as many slots as keys after a resize       ~ 115-200
#   its visited bit once read: a set slot (16 B) at <= 60 % load                ~ 30-55
# Observed 163..289 (peaks); rounded up so that the limit bounds the real memory.
ENTRY_OVERHEAD = 304
# Extra cost of an entry whose value the shared region holds: its table slot (32 bytes at a
# load of at most 1/2 after a rebuild), on top of the block (which holds a copy of the key).
REGION_OVERHEAD = 64

# Rebuild the expiry heap when its stale entries exceed half the live ones plus this slack.
_HEAP_SLACK = 1024
# ...or when stale entries pin more key bytes than this (or a quarter of used_bytes).
_HEAP_STALE_BYTES = 4 * 2**20


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class MemoryEngine(Keyspace, Inspection):
    """Bytes-to-bytes store with a memory limit, SIEVE eviction and millisecond TTLs.

    ``memory_limit`` counts key + value + :data:`ENTRY_OVERHEAD` per entry (+
    :data:`TTL_OVERHEAD` when it has a TTL); 0 means unlimited. ``clock_ms`` returns wall-clock
    milliseconds (injectable for tests). Not thread-safe.
    """

    __slots__ = (
        "_evictions",
        "_expirations",
        "_heap_stale_bytes",
        "_max_value_size",
        "watched",
    )

    def __init__(
        self,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        max_key_size: int = DEFAULT_MAX_KEY_SIZE,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        clock_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        for name, limit in (
            ("memory_limit", memory_limit),
            ("max_key_size", max_key_size),
            ("max_value_size", max_value_size),
        ):
            if limit < 0:
                raise ValueError(f"{name} must be >= 0, got {limit}")
        self._memory_limit = memory_limit
        self._max_key_size = max_key_size
        self._max_value_size = max_value_size
        self._clock_ms = clock_ms
        self._ahead: OrderedDict[bytes, Stored] = OrderedDict()
        self._behind: OrderedDict[bytes, Stored] = OrderedDict()
        self._visited: set[bytes] = set()
        self._deadlines: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []
        self._heap_stale_bytes = 0
        self._used = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._inserts = 0
        self._scans = ScanCursors()
        self._region: RegionWriter | None = None
        self._inherited = None
        # Published for a key of another type: too long to be held inline, so the region's
        # entry says "ask the store" and a GET from it gets WRONGTYPE from the store.
        self._elsewhere = b""
        self.watched = WatchedKeys()

    def attach_region(self, region: RegionWriter) -> None:
        """Publish every key into ``region`` from now on (the engine must still be empty)."""
        if len(self):
            raise ValueError("attach the region before the first write")
        self._region = region
        self._elsewhere = bytes(region.max_value + 1)

    @property
    def region(self) -> RegionWriter | None:
        """The shared-memory region the engine publishes into, if any."""
        return self._region

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """Return the value (a hit, and the key is marked recently used) or None (a miss)."""
        value = self._ahead.get(key)
        if value is None:
            value = self._behind.get(key)
            if value is None and (self._inherited is None or (value := self._inherit(key)) is None):
                self._misses += 1
                return None
        if self._deadlines:
            deadline = self._deadlines.get(key)
            if deadline is not None and deadline <= self._clock_ms():
                self._expire(key)
                self._misses += 1
                return None
        self._visited.add(key)
        self._hits += 1
        if value.__class__ is bytes:
            return value
        if value.__class__ is int and self._region is not None:
            return self._region.read(value)  # _string(value) without the call
        return self._string(value)

    def peek(self, key: bytes) -> bytes | None:
        """Return the value without counting a hit/miss or marking the key used."""
        value = self._live(key)
        if value is None or value.__class__ is bytes:
            return value
        return self._string(value)

    def _live(self, key: bytes) -> Stored | None:
        """What the dicts hold for ``key`` (None when absent), expiring it when due."""
        value = self._ahead.get(key)
        if value is None:
            value = self._behind.get(key)
            if value is None and (self._inherited is None or (value := self._inherit(key)) is None):
                return None
        if self._deadlines and self._expired(key):
            self._expire(key)
            return None
        return value

    def _string(self, value: Stored) -> bytes:
        """A string held in the region; :class:`WrongType` for any other type."""
        region = self._region
        if value.__class__ is not int or region is None:
            raise WrongType
        return region.read(value)  # the region's own (C) read: GET and INCR, no call between

    def _read(self, handle: Stored) -> bytes:
        assert self._region is not None and isinstance(handle, int)
        return self._region.read(handle)

    def _cost(self, key: bytes, value: Stored) -> int:
        """Bytes an entry counts against the limit (without its TTL)."""
        if isinstance(value, bytes):
            return len(key) + len(value) + ENTRY_OVERHEAD
        if isinstance(value, Container):
            return len(key) + ENTRY_OVERHEAD + value.cost
        assert self._region is not None
        return len(key) + ENTRY_OVERHEAD + REGION_OVERHEAD + self._region.block_bytes(value)

    def contains(self, key: bytes) -> bool:
        """Whether the key is present and not expired (no stats, no recency change)."""
        return self._live(key) is not None

    def expire_at(self, key: bytes) -> int | None:
        """The key's deadline in absolute ms, or None if it has no TTL.

        Raises ``KeyError`` when the key is absent (or expired).
        """
        if self._live(key) is None:
            raise KeyError(key)
        return self._deadlines.get(key)

    def __len__(self) -> int:
        """Keys held, counting expired keys that neither access nor expire_due removed yet
        (an inheritance is adopted whole first)."""
        if self._inherited is not None:
            self._finish_inheritance()
        return len(self._ahead) + len(self._behind)

    @property
    def used_bytes(self) -> int:
        """Bytes counted against the memory limit."""
        return self._used

    @property
    def memory_limit(self) -> int:
        """The memory limit in bytes; 0 means unlimited."""
        return self._memory_limit

    @property
    def max_key_size(self) -> int:
        """Longest key accepted, in bytes."""
        return self._max_key_size

    @property
    def max_value_size(self) -> int:
        """Longest value accepted, in bytes."""
        return self._max_value_size

    def stats(self) -> EngineStats:
        """A snapshot of the counters (reads answered from the region included)."""
        hits, misses = self._region.reader_counts() if self._region else (0, 0)
        return EngineStats(
            # Not len(self): the store's tick reads these, and must not finish an inheritance.
            keys=len(self._ahead) + len(self._behind),
            used_bytes=self._used,
            memory_limit=self._memory_limit,
            hits=self._hits + hits,
            misses=self._misses + misses,
            evictions=self._evictions,
            expirations=self._expirations,
            expires=len(self._deadlines),
        )

    def reset_stats(self) -> None:
        """Zero the counters :meth:`stats` reports, the region's readers' too (CONFIG RESETSTAT)."""
        self._hits = self._misses = self._evictions = self._expirations = 0
        if self._region is not None:
            self._region.reader_counts(reset=True)

    # -- writes ------------------------------------------------------------------------------

    def set(
        self,
        key: bytes,
        value: bytes,
        *,
        expire_at_ms: int | None = None,
        keep_ttl: bool = False,
    ) -> None:
        """Store ``value`` under ``key``; overwriting counts as a use of the key.

        ``expire_at_ms`` sets an absolute deadline (one not in the future deletes the key, as
        Redis does); otherwise the key has no TTL, unless ``keep_ttl`` keeps the one it had.
        Raises :class:`KeyTooLarge`, :class:`ValueTooLarge` or :class:`EntryTooLarge` (and
        changes nothing) when a limit is broken, :class:`EngineError` (and changes nothing
        but a lazy expiry) when the shared-memory table is full for a new key; evicts other
        keys as needed.
        """
        if expire_at_ms is not None and keep_ttl:
            raise ValueError("expire_at_ms and keep_ttl are mutually exclusive")
        if self._inherited is not None and key not in self._ahead and key not in self._behind:
            self._inherit(key)  # first its old entry: then this write replaces it for good
        if len(key) > self._max_key_size:
            raise KeyTooLarge(len(key), self._max_key_size)
        if len(value) > self._max_value_size:
            raise ValueTooLarge(len(value), self._max_value_size)
        deadlines = self._deadlines
        old_deadline = deadlines.get(key) if deadlines else None
        if old_deadline is not None and old_deadline <= self._clock_ms():
            self._expire(key)
            old_deadline = None
        deadline = old_deadline if keep_ttl else expire_at_ms
        size = len(key) + len(value) + ENTRY_OVERHEAD
        region = self._region
        if region is not None and len(value) <= region.max_value:
            size = len(key) + ENTRY_OVERHEAD + REGION_OVERHEAD
            n = BLOCK_HEADER + len(key) + len(value)
            size += (n + 15) & ~15 if n <= 256 else block_size(n)  # block_size(n), inlined
        if deadline is not None:
            size += TTL_OVERHEAD
        if self._memory_limit and size > self._memory_limit:
            raise EntryTooLarge(size, self._memory_limit)
        if expire_at_ms is not None and expire_at_ms <= self._clock_ms():
            self.watched.changed(key)
            self.delete(key)
            return

        # Assigning to an existing key keeps its place in the queue (SIEVE updates in place).
        holder = self._ahead
        old = holder.get(key)
        if old is None:
            holder = self._behind
            old = holder.get(key)
        if old is None:
            # As in SIEVE, make room before the new key joins the head: inserting first would
            # leave the hand pointing at it after evicting the old head.
            if self._memory_limit and self._used + size > self._memory_limit:
                self._evict(None, size)
            holder = self._ahead
            old_cost = 0
        elif old.__class__ is int and region is not None:  # _cost(key, old), without a call
            old_cost = len(key) + ENTRY_OVERHEAD + REGION_OVERHEAD + region.block_bytes(old)
        else:
            old_cost = self._cost(key, old)
        # Published first: a write the region refuses (RegionFull) changes nothing here.
        stored = holder[key] = value if region is None else self._publish(key, value, deadline, old)
        self.watched.changed(key)
        if old is None:
            self._inserts += 1
        else:
            self._visited.add(key)
            if old_deadline is not None:
                self._used -= TTL_OVERHEAD
        if region is not None and stored.__class__ is bytes:
            # The region did not take the value (no free block of its size): heap cost.
            size = len(key) + len(value) + ENTRY_OVERHEAD
            if deadline is not None:
                size += TTL_OVERHEAD
        self._used += size - old_cost
        if deadline != old_deadline:
            if deadline is None:
                del deadlines[key]
            else:
                deadlines[key] = deadline
                heapq.heappush(self._heap, (deadline, key))
            if old_deadline is not None:
                self._heap_went_stale(key)
        if self._memory_limit and self._used > self._memory_limit:
            self._evict(key)

    def delete(self, key: bytes) -> bool:
        """Remove the key; False if it was absent (or had already expired)."""
        cost = self._unlink(key)
        if cost is None:
            return False
        self._used -= cost
        if self._deadlines:
            deadline = self._deadlines.pop(key, None)
            if deadline is not None:
                self._used -= TTL_OVERHEAD
                self._heap_went_stale(key)
                if deadline <= self._clock_ms():
                    self._expirations += 1
                    return False
        return True

    def set_expire_at(self, key: bytes, when_ms: int | None) -> bool:
        """Give the key the absolute deadline ``when_ms`` (None removes its TTL).

        Returns False when the key is absent. A deadline not in the future deletes the key
        (Redis semantics). Setting a TTL counts as a use of the key.
        """
        if self._live(key) is None:
            return False
        self.watched.changed(key)
        deadlines = self._deadlines
        old = deadlines.get(key)
        if when_ms is None:
            if old is not None:
                del deadlines[key]
                self._used -= TTL_OVERHEAD
                self._heap_went_stale(key)
                self._publish_expire(key, 0)
            return True
        if when_ms <= self._clock_ms():
            self.delete(key)
            return True
        self._visited.add(key)
        if when_ms == old:
            return True
        deadlines[key] = when_ms
        heapq.heappush(self._heap, (when_ms, key))
        self._publish_expire(key, when_ms)
        if old is None:
            self._used += TTL_OVERHEAD
        else:
            self._heap_went_stale(key)
        if self._memory_limit and self._used > self._memory_limit:
            self._evict(key)
        return True

    def flush(self) -> None:
        """Remove every key; hit/miss/eviction/expiration counters are kept."""
        present = [key for key in self.watched if self.contains(key)]
        self._ahead = OrderedDict()
        self._behind = OrderedDict()
        self._visited = set()
        self._deadlines = {}
        self._heap = []
        self._heap_stale_bytes = 0
        self._scans.clear()
        self._used = 0
        if self._region is not None:
            self._region.flush()
        if self._inherited is not None:
            self._inherited.close()  # what was not adopted yet goes too
            self._inherited = None
        self.watched.flushed(present)

    # -- publishing into the region ----------------------------------------------------------

    def _publish(
        self, key: bytes, value: bytes, deadline: int | None, old: Stored | None
    ) -> Stored:
        """What the dicts hold for ``key`` -> ``value``: the value, or its region block."""
        region = self._region
        if region is None:
            return value
        try:
            handle = region.publish(key, value, deadline or 0, old if isinstance(old, int) else 0)
        except RegionFull as exc:
            raise EngineError(str(exc)) from None
        return handle or value

    def _publish_expire(self, key: bytes, when_ms: int) -> None:
        region = self._region
        if region is not None:
            handle = self._ahead.get(key) or self._behind.get(key)
            region.set_expire(key, handle if isinstance(handle, int) else 0, when_ms)

    # -- expiry and eviction -----------------------------------------------------------------

    def expire_due(self, max_keys: int = 10_000) -> int:
        """Remove keys whose deadline has passed; return how many were removed.

        Examines at most ``max_keys`` heap entries (stale ones included), so one call does
        bounded work; the earliest deadlines go first. The server calls it every 100 ms.
        """
        heap = self._heap
        if not heap:
            return 0
        deadlines = self._deadlines
        now = self._clock_ms()
        removed = 0
        for _ in range(max_keys):
            if not heap or heap[0][0] > now:
                break
            deadline, key = heapq.heappop(heap)
            if deadlines.get(key) == deadline:
                del deadlines[key]
                cost = self._unlink(key)
                assert cost is not None  # a key with a deadline is always held
                self._used -= cost + TTL_OVERHEAD
                self._expirations += 1
                removed += 1
            elif self._heap_stale_bytes:
                self._heap_stale_bytes = max(0, self._heap_stale_bytes - len(key))
        return removed

    def _unlink(self, key: bytes) -> int | None:
        """Take the key out of the queue, its visited bit and the region; return its cost
        (:meth:`_cost`) if it was held."""
        value = self._ahead.pop(key, None)
        if value is None:
            value = self._behind.pop(key, None)
            if value is None:
                if self._inherited is None or self._inherit(key) is None:
                    return None
                return self._unlink(key)  # deleted now, never adopted later
        elif not self._ahead:
            self._wrap()
        self._visited.discard(key)
        return self._drop(key, value)

    def _drop(self, key: bytes, value: Stored) -> int:
        """Unpublish an entry just taken out of the dicts; return its cost."""
        self.watched.changed(key)
        if self._region is None:
            if value.__class__ is bytes:  # the common case, without a call
                return len(key) + len(value) + ENTRY_OVERHEAD
            return self._cost(key, value)
        cost = self._cost(key, value)
        self._region.unpublish(key, value if isinstance(value, int) else 0)
        return cost

    def _wrap(self) -> None:
        """The hand passed the head: it restarts at the tail, so everything is ahead of it."""
        self._ahead = self._behind
        self._behind = OrderedDict()

    def _expired(self, key: bytes) -> bool:
        deadline = self._deadlines.get(key)
        return deadline is not None and deadline <= self._clock_ms()

    def _expire(self, key: bytes) -> None:
        """Remove a key found past its deadline."""
        cost = self._unlink(key)
        assert cost is not None
        del self._deadlines[key]
        self._used -= cost + TTL_OVERHEAD
        self._heap_went_stale(key)
        self._expirations += 1

    def _evict(self, keep: bytes | None, room: int = 0) -> None:
        """Run the SIEVE hand until ``room`` more bytes fit the limit, never evicting ``keep``.

        ``keep`` is a key just written; :class:`EntryTooLarge` guarantees it fits alone.
        """
        visited = self._visited
        deadlines = self._deadlines
        limit = self._memory_limit - room
        spare = 0 if keep is None else 1
        now: int | None = None
        region = self._region
        while self._used > limit and len(self._ahead) + len(self._behind) > spare:
            key, value = self._ahead.popitem(last=False)
            # A hit from the region sets the block's mark instead of the visited set.
            read = region is not None and isinstance(value, int) and region.take_visited(value)
            if key in visited or key == keep or read:
                visited.discard(key)
                self._behind[key] = value
                if not self._ahead:
                    self._wrap()
                continue
            if not self._ahead:
                self._wrap()
            self._used -= self._drop(key, value)
            deadline = deadlines.pop(key, None) if deadlines else None
            if deadline is None:
                self._evictions += 1
                continue
            self._used -= TTL_OVERHEAD
            self._heap_went_stale(key)
            if now is None:
                now = self._clock_ms()
            if deadline <= now:
                self._expirations += 1
            else:
                self._evictions += 1

    def _heap_went_stale(self, key: bytes) -> None:
        """Note that the heap entry for ``key``'s previous deadline is now stale."""
        self._heap_stale_bytes += len(key)
        live = len(self._deadlines)
        if len(self._heap) > live + live // 2 + _HEAP_SLACK or self._heap_stale_bytes > max(
            _HEAP_STALE_BYTES, self._used // 4
        ):
            self._heap = [(deadline, k) for k, deadline in self._deadlines.items()]
            heapq.heapify(self._heap)
            self._heap_stale_bytes = 0
