"""The in-process engine: SIEVE eviction over two ordered dicts, TTLs in a side table.

Layout, chosen so that a hit costs a few C calls and no per-entry Python object exists beyond
the key and the value themselves:

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

import ctypes
import heapq
import sys
import time
from collections import OrderedDict
from collections.abc import Callable

from blinkstore_gunicorn.engine.base import (
    EngineError,
    EngineStats,
    EntryTooLarge,
    KeyTooLarge,
    ValueTooLarge,
)
from blinkstore_gunicorn.engine.pattern import compile_pattern

__all__ = [
    "DEFAULT_MAX_KEY_SIZE",
    "DEFAULT_MAX_VALUE_SIZE",
    "DEFAULT_MEMORY_LIMIT",
    "ENTRY_OVERHEAD",
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
# Extra cost of an entry with a TTL, measured the same way (observed up to ~400 on top of the
# above): its _deadlines slot (a second oversized table), the deadline int, the heap's
# (deadline, key) tuple and list slot, and up to one stale heap tuple per two live ones.
TTL_OVERHEAD = 400

# glibc's mallopt parameter number and its documented default value (128 KiB).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 128 * 1024

# Live SCAN snapshots kept at once. Each costs 8 bytes per key (and keeps keys deleted since
# alive), so this is small; a cursor whose snapshot was dropped restarts its scan.
MAX_SCAN_SNAPSHOTS = 4
# A snapshot unused this long (ms) is presumed abandoned and is the first to go when full.
SCAN_IDLE_MS = 60_000
# Cursor = generation << 32 | position; generations wrap below 2**31 so cursors fit in a
# signed 64-bit integer as Redis clients expect.
_CURSOR_SHIFT = 32
_POSITION_MASK = (1 << _CURSOR_SHIFT) - 1
_MAX_GENERATION = 1 << 31

# Rebuild the expiry heap when its stale entries exceed half the live ones plus this slack.
_HEAP_SLACK = 1024
# ...or when stale entries pin more key bytes than this (or a quarter of used_bytes).
_HEAP_STALE_BYTES = 4 * 2**20


def tune_allocator() -> bool:
    """Make glibc return freed large blocks (the store's hash tables) to the OS at once.

    glibc raises its mmap threshold after the first large free, after which every resized
    dict table lands on the heap and its freed predecessor stays in the process: a store held
    at its limit then uses up to ~200 bytes per small entry more than it counts. A fixed
    threshold keeps large blocks mmap'ed, so RSS follows ``used_bytes``. Process-wide: the
    store process calls it at startup; a library embedding the engine should not. Returns
    whether the setting was applied (False off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class _Snapshot:
    """Keys of the store at the start of a scan, shared by scans started before any insert."""

    __slots__ = ("inserts", "keys", "used_ms", "users")

    def __init__(self, keys: list[bytes], inserts: int, now_ms: int) -> None:
        self.keys = keys
        self.inserts = inserts
        self.used_ms = now_ms
        self.users = 1


class MemoryEngine:
    """Bytes-to-bytes store with a memory limit, SIEVE eviction and millisecond TTLs.

    ``memory_limit`` counts key + value + :data:`ENTRY_OVERHEAD` per entry (+
    :data:`TTL_OVERHEAD` when it has a TTL); 0 means unlimited. ``clock_ms`` returns wall-clock
    milliseconds (injectable for tests). Not thread-safe.
    """

    __slots__ = (
        "_ahead",
        "_behind",
        "_clock_ms",
        "_deadlines",
        "_evictions",
        "_expirations",
        "_generation",
        "_heap",
        "_heap_stale_bytes",
        "_hits",
        "_inserts",
        "_max_key_size",
        "_max_value_size",
        "_memory_limit",
        "_misses",
        "_snapshots",
        "_used",
        "_visited",
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
        self._ahead: OrderedDict[bytes, bytes] = OrderedDict()
        self._behind: OrderedDict[bytes, bytes] = OrderedDict()
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
        self._generation = 0
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """Return the value (a hit, and the key is marked recently used) or None (a miss)."""
        value = self._ahead.get(key)
        if value is None:
            value = self._behind.get(key)
            if value is None:
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
        return value

    def peek(self, key: bytes) -> bytes | None:
        """Return the value without counting a hit/miss or marking the key used."""
        value = self._ahead.get(key)
        if value is None:
            value = self._behind.get(key)
            if value is None:
                return None
        if self._deadlines and self._expired(key):
            self._expire(key)
            return None
        return value

    def contains(self, key: bytes) -> bool:
        """Whether the key is present and not expired (no stats, no recency change)."""
        return self.peek(key) is not None

    def expire_at(self, key: bytes) -> int | None:
        """The key's deadline in absolute ms, or None if it has no TTL.

        Raises ``KeyError`` when the key is absent (or expired).
        """
        if self.peek(key) is None:
            raise KeyError(key)
        return self._deadlines.get(key)

    def __len__(self) -> int:
        """Keys held, counting expired keys that neither access nor expire_due removed yet."""
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
        """A snapshot of the counters."""
        return EngineStats(
            keys=len(self),
            used_bytes=self._used,
            memory_limit=self._memory_limit,
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            expirations=self._expirations,
            expires=len(self._deadlines),
        )

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
        changes nothing) when a limit is broken; evicts other keys as needed.
        """
        if expire_at_ms is not None and keep_ttl:
            raise ValueError("expire_at_ms and keep_ttl are mutually exclusive")
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
        if deadline is not None:
            size += TTL_OVERHEAD
        if self._memory_limit and size > self._memory_limit:
            raise EntryTooLarge(size, self._memory_limit)
        if expire_at_ms is not None and expire_at_ms <= self._clock_ms():
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
            self._ahead[key] = value
            self._inserts += 1
        else:
            holder[key] = value
            self._visited.add(key)
            self._used -= len(key) + len(old) + ENTRY_OVERHEAD
            if old_deadline is not None:
                self._used -= TTL_OVERHEAD
        self._used += size
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
        value = self._unlink(key)
        if value is None:
            return False
        self._used -= len(key) + len(value) + ENTRY_OVERHEAD
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
        if self.peek(key) is None:
            return False
        deadlines = self._deadlines
        old = deadlines.get(key)
        if when_ms is None:
            if old is not None:
                del deadlines[key]
                self._used -= TTL_OVERHEAD
                self._heap_went_stale(key)
            return True
        if when_ms <= self._clock_ms():
            self.delete(key)
            return True
        self._visited.add(key)
        if when_ms == old:
            return True
        deadlines[key] = when_ms
        heapq.heappush(self._heap, (when_ms, key))
        if old is None:
            self._used += TTL_OVERHEAD
        else:
            self._heap_went_stale(key)
        if self._memory_limit and self._used > self._memory_limit:
            self._evict(key)
        return True

    def flush(self) -> None:
        """Remove every key; hit/miss/eviction/expiration counters are kept."""
        self._ahead = OrderedDict()
        self._behind = OrderedDict()
        self._visited = set()
        self._deadlines = {}
        self._heap = []
        self._heap_stale_bytes = 0
        self._snapshots.clear()
        self._used = 0

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
                value = self._unlink(key)
                assert value is not None  # a key with a deadline is always held
                self._used -= len(key) + len(value) + ENTRY_OVERHEAD + TTL_OVERHEAD
                self._expirations += 1
                removed += 1
            elif self._heap_stale_bytes:
                self._heap_stale_bytes = max(0, self._heap_stale_bytes - len(key))
        return removed

    def _unlink(self, key: bytes) -> bytes | None:
        """Take the key out of the queue and its visited bit; return its value if held."""
        value = self._ahead.pop(key, None)
        if value is None:
            value = self._behind.pop(key, None)
            if value is None:
                return None
        elif not self._ahead:
            self._wrap()
        self._visited.discard(key)
        return value

    def _wrap(self) -> None:
        """The hand passed the head: it restarts at the tail, so everything is ahead of it."""
        self._ahead = self._behind
        self._behind = OrderedDict()

    def _expired(self, key: bytes) -> bool:
        deadline = self._deadlines.get(key)
        return deadline is not None and deadline <= self._clock_ms()

    def _expire(self, key: bytes) -> None:
        """Remove a key found past its deadline."""
        value = self._unlink(key)
        assert value is not None
        del self._deadlines[key]
        self._used -= len(key) + len(value) + ENTRY_OVERHEAD + TTL_OVERHEAD
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
        while self._used > limit and len(self._ahead) + len(self._behind) > spare:
            key, value = self._ahead.popitem(last=False)
            if key in visited or key == keep:
                visited.discard(key)
                self._behind[key] = value
                if not self._ahead:
                    self._wrap()
                continue
            if not self._ahead:
                self._wrap()
            self._used -= len(key) + len(value) + ENTRY_OVERHEAD
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

    # -- scan --------------------------------------------------------------------------------

    def scan(
        self, cursor: int, count: int = 10, match: bytes | None = None
    ) -> tuple[int, list[bytes]]:
        """One step of a SCAN: examine up to ``count`` keys from ``cursor``.

        Cursor 0 starts a scan over a snapshot of the key set (shared with other scans started
        since the last insert); a returned cursor of 0 means the scan is done. Every key
        present for the whole scan is returned exactly once by that scan; keys added during it
        are not returned, keys deleted or expired during it are skipped. ``match`` filters with
        a Redis glob after counting, so a step may return fewer keys (even none) while the
        cursor is not 0. A cursor whose snapshot was dropped (more than
        :data:`MAX_SCAN_SNAPSHOTS` scans in flight, or a flush) restarts the scan from the
        beginning: keys may then repeat, but none is missed. When all snapshots are in use the
        newest is dropped, so the oldest scans always finish and round-robin scans progress.
        """
        if count < 1:
            raise EngineError("count must be >= 1")
        if cursor < 0:
            raise EngineError("invalid cursor")
        now = self._clock_ms()
        generation, position = cursor >> _CURSOR_SHIFT, cursor & _POSITION_MASK
        snapshot = self._snapshots.get(generation) if cursor else None
        if snapshot is None or position > len(snapshot.keys):
            generation, snapshot = self._start_scan(now)
            position = 0
        snapshot.used_ms = now
        keys = snapshot.keys
        end = min(position + count, len(keys))
        ahead, behind = self._ahead, self._behind
        found = [key for key in keys[position:end] if key in ahead or key in behind]
        if self._deadlines and found:
            deadlines = self._deadlines
            found = [key for key in found if deadlines.get(key, now + 1) > now]
        if match is not None and found:
            matches = compile_pattern(match)
            found = [key for key in found if matches(key)]
        if end < len(keys):
            return (generation << _CURSOR_SHIFT) | end, found
        snapshot.users -= 1
        if snapshot.users <= 0:
            self._snapshots.pop(generation, None)
        return 0, found

    def _start_scan(self, now: int) -> tuple[int, _Snapshot]:
        snapshots = self._snapshots
        # The newest snapshot still lists every key present now if no key was added since.
        latest = snapshots.get(self._generation)
        if latest is not None and latest.inserts == self._inserts:
            latest.users += 1
            return self._generation, latest
        if len(snapshots) >= MAX_SCAN_SNAPSHOTS:
            for generation in [g for g, s in snapshots.items() if now - s.used_ms > SCAN_IDLE_MS]:
                del snapshots[generation]
        if len(snapshots) >= MAX_SCAN_SNAPSHOTS:
            # Drop the newest, not the least recently used: round-robin scans then cannot
            # evict each other forever, since the oldest ones always run to completion.
            snapshots.popitem(last=True)
        self._generation = self._generation % (_MAX_GENERATION - 1) + 1
        # dict.keys reads the underlying dict's entry array (~5 ns a key); iterating the
        # OrderedDict itself walks its linked list, ~40x slower. The order is irrelevant.
        keys = list(dict.keys(self._behind))
        keys.extend(dict.keys(self._ahead))
        snapshot = _Snapshot(keys, self._inserts, now)
        snapshots[self._generation] = snapshot
        return self._generation, snapshot
