"""The engine's keyspace-wide operations: values of every type, RENAME, SCAN.

:class:`Keyspace` is a base of :class:`~blinkstore_gunicorn.engine.memory.MemoryEngine` (which
holds the state these methods use: the SIEVE queue, the TTL table, the memory account and the
region), kept apart so that the string path in ``memory.py`` stays small. These are Redis's
``db.c`` lookups for the type modules (``engine/hashes.py``...): a command reads with
:meth:`Keyspace.lookup`, writes between :meth:`Keyspace.writable` and :meth:`Keyspace.resized`.

An engine that inherits a dead store's region (:meth:`Keyspace.inherit`) adopts its entries
where every access to a key goes through: the miss of ``get``/``_live`` and ``_unlink`` and the
start of ``set`` ask the inheritance for the key's old entry first, so Lua, MULTI, both
protocols and every type see it, and a key written or deleted since is never adopted again.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.base import EngineError, EntryTooLarge, KeyTooLarge, WatchedKeys
from blinkstore_gunicorn.engine.pattern import compile_pattern
from blinkstore_gunicorn.engine.scan import ScanCursors
from blinkstore_gunicorn.engine.typed import Container, ContainerT, WrongType

if TYPE_CHECKING:
    from blinkstore_gunicorn.shm.adoption import InheritedRegion
    from blinkstore_gunicorn.shm.writer import RegionWriter

__all__ = ["TTL_OVERHEAD", "Keyspace", "Stored"]

# Extra cost of an entry with a TTL, measured the same way as ENTRY_OVERHEAD (observed up to
# ~400 on top of it): its _deadlines slot (a second oversized table), the deadline int, the
# heap's (deadline, key) tuple and list slot, and up to one stale heap tuple per two live ones.
TTL_OVERHEAD = 400

# A string's value, or the offset of the region block that holds it, or another type's value.
Stored = bytes | int | Container

# Inherited slots one adopt_some() call goes over when a whole-keyspace read finishes an
# inheritance.
_ADOPT_SLOTS = 4096


class Keyspace:
    """Operations on keys of any type; the state and the primitives are the engine's."""

    __slots__ = (
        "_ahead",
        "_behind",
        "_clock_ms",
        "_deadlines",
        "_elsewhere",
        "_heap",
        "_hits",
        "_inherited",
        "_inserts",
        "_max_key_size",
        "_memory_limit",
        "_misses",
        "_region",
        "_scans",
        "_used",
        "_visited",
    )

    _ahead: OrderedDict[bytes, Stored]
    _behind: OrderedDict[bytes, Stored]
    _clock_ms: Callable[[], int]
    _deadlines: dict[bytes, int]
    _elsewhere: bytes
    _heap: list[tuple[int, bytes]]
    _hits: int
    _inherited: InheritedRegion | None
    _inserts: int
    _max_key_size: int
    _memory_limit: int
    _misses: int
    _region: RegionWriter | None
    _scans: ScanCursors
    _used: int
    _visited: set[bytes]

    if TYPE_CHECKING:
        watched: WatchedKeys

        def _live(self, key: bytes) -> Stored | None: ...
        def _cost(self, key: bytes, value: Stored) -> int: ...
        def _read(self, handle: Stored) -> bytes: ...
        def _evict(self, keep: bytes | None, room: int = 0) -> None: ...
        def _publish(
            self, key: bytes, value: bytes, deadline: int | None, old: Stored | None
        ) -> Stored: ...
        def delete(self, key: bytes) -> bool: ...
        def set(
            self,
            key: bytes,
            value: bytes,
            *,
            expire_at_ms: int | None = None,
            keep_ttl: bool = False,
        ) -> None: ...

    def kind(self, key: bytes) -> bytes | None:
        """The Redis type of the key's value (``b"string"``, ``b"hash"``...), None if absent."""
        value = self._live(key)
        if value is None:
            return None
        return value.kind if isinstance(value, Container) else b"string"

    def lookup(self, key: bytes, cls: type[ContainerT]) -> ContainerT | None:
        """The key's ``cls`` value (a use of the key), None when absent; raises
        :class:`WrongType` when the key holds another type."""
        value = self._live(key)
        if value is None:
            self._misses += 1
            return None
        if value.__class__ is not cls:
            raise WrongType
        self._visited.add(key)
        self._hits += 1
        return value

    def writable(self, key: bytes, cls: type[ContainerT], growth: int) -> ContainerT:
        """The key's ``cls`` value for a write adding at most ``growth`` bytes to its cost,
        created when absent, with other keys evicted first to make room for it.

        Raises :class:`WrongType`, :class:`KeyTooLarge` or :class:`EntryTooLarge` (the key
        alone would exceed the limit), changing nothing. End the write with :meth:`resized`.
        """
        container = self.lookup(key, cls)
        limit = self._memory_limit
        if container is None:
            if len(key) > self._max_key_size:
                raise KeyTooLarge(len(key), self._max_key_size)
            container = cls()
            size = self._cost(key, container) + growth
            if limit and size > limit:
                raise EntryTooLarge(size, limit)
            if limit and self._used + size > limit:
                self._evict(None, size)
            self._insert(key, container, None)
            return container
        if limit:  # the entry's size matters only against a limit
            size = self._cost(key, container) + growth
            if key in self._deadlines:
                size += TTL_OVERHEAD
            if size > limit:
                raise EntryTooLarge(size, limit)
            if self._used + growth > limit:
                self._evict(key, growth)
        return container

    def resized(self, key: bytes, container: Container, old_cost: int) -> None:
        """Settle the account after a write changed ``container``'s cost from ``old_cost``:
        a container left empty is deleted (unless its type is ``kept_empty``), and other keys
        are evicted when over the limit."""
        # Always counted: the total says a snapshot is due (storage/saving.py), watched or not.
        self.watched.changed(key)
        self._used += container.cost - old_cost
        if not len(container) and not container.kept_empty:
            self.delete(key)
        elif self._memory_limit and self._used > self._memory_limit:
            self._evict(key)

    def rename(self, key: bytes, new: bytes) -> bool:
        """Move ``key``'s value and TTL to ``new``, replacing what it held; False if absent."""
        return self._transfer(key, new, copy=False)

    def copy(self, key: bytes, new: bytes) -> bool:
        """Copy ``key``'s value and TTL to ``new``, replacing what it held; False if absent.
        Raises :class:`EntryTooLarge` (changing nothing) when the copy alone exceeds the limit.
        """
        return self._transfer(key, new, copy=True)

    def replace(self, key: bytes, container: Container) -> None:
        """Make ``container`` (not empty, its cost counted) the key's value, without TTL,
        whatever the key held. Raises :class:`KeyTooLarge` or :class:`EntryTooLarge`
        (changing nothing) when a limit is broken."""
        if len(key) > self._max_key_size:
            raise KeyTooLarge(len(key), self._max_key_size)
        size = self._cost(key, container)
        if self._memory_limit and size > self._memory_limit:
            raise EntryTooLarge(size, self._memory_limit)
        self.delete(key)
        if self._memory_limit and self._used + size > self._memory_limit:
            self._evict(None, size)
        self._insert(key, container, None)

    def _transfer(self, key: bytes, new: bytes, *, copy: bool) -> bool:
        value = self._live(key)
        if value is None:
            return False
        if len(new) > self._max_key_size:
            raise KeyTooLarge(len(new), self._max_key_size)
        if key == new:
            return True
        deadline = self._deadlines.get(key)
        if isinstance(value, int):
            value = self._read(value)
        # A renamed key leaves first, freeing its slot of the region's table for the new name
        # (a full table would refuse that otherwise). The empty key has no slot (the region
        # leaves it out): where the table can fill (unlimited memory), it leaves last, so that
        # a full table's refusal of the new name keeps it.
        leaves_last = not copy and key == b"" and not self._memory_limit
        if not copy and not leaves_last:
            self.delete(key)
        if isinstance(value, bytes):
            self.set(new, value, expire_at_ms=deadline)
        else:
            if copy:
                value = value.clone()
                size = self._cost(new, value) + (0 if deadline is None else TTL_OVERHEAD)
                if self._memory_limit and size > self._memory_limit:
                    raise EntryTooLarge(size, self._memory_limit)
            self.delete(new)
            self._insert(new, value, deadline)
            if self._memory_limit and self._used > self._memory_limit:
                self._evict(new)
        if leaves_last:
            self.delete(key)
        return True

    def _insert(self, key: bytes, container: Container, deadline: int | None) -> None:
        """Add a container under an absent key (the caller made room)."""
        if self._region is not None:  # first: a full table refuses it before any change
            self._publish(key, self._elsewhere, deadline, None)
        self.watched.changed(key)
        self._ahead[key] = container
        self._inserts += 1
        self._used += self._cost(key, container)
        if deadline is not None:
            self._deadlines[key] = deadline
            heapq.heappush(self._heap, (deadline, key))
            self._used += TTL_OVERHEAD

    # -- adopting a dead store's region ------------------------------------------------------

    def inherit(self, inherited: InheritedRegion) -> None:
        """Adopt ``inherited``'s entries lazily (the engine must still be empty): a key's entry
        on the key's first access, before any read or write of it, the others with
        :meth:`adopt_some`; ``len()`` and :meth:`scan` adopt all first, :meth:`flush` drops
        the rest. Each entry keeps its deadline; one over a limit is dropped."""
        if self._ahead or self._behind:
            raise ValueError("inherit before the first write")
        self._inherited = inherited
        if self._region is not None:
            # At most half the slots of the dead table are live: presize for them at once.
            self._region.reserve(inherited.slots // 2 - 1)

    @property
    def inheriting(self) -> bool:
        """Whether entries of an inheritance may still be adopted."""
        return self._inherited is not None

    def adopt_some(self, slots: int) -> bool:
        """Adopt the entries of the inheritance's next ``slots`` slots not adopted yet; True
        (and the inheritance let go) once there is nothing left to adopt."""
        inherited = self._inherited
        if inherited is None:
            return True
        for key, value, expire_at in inherited.take_some(self._clock_ms(), slots):
            self._adopt(inherited, key, value, expire_at)
        if not inherited.done:
            return False
        self._inherited = None
        inherited.close()
        return True

    def _finish_inheritance(self) -> None:
        while not self.adopt_some(_ADOPT_SLOTS):
            pass

    def _inherit(self, key: bytes) -> Stored | None:
        """Adopt ``key``'s inherited entry if it has one not taken yet; what the dicts hold for
        it then (None: nothing)."""
        inherited = self._inherited
        assert inherited is not None
        entry = inherited.take(key, self._clock_ms())
        if entry is None:
            return None
        self._adopt(inherited, key, *entry)
        value = self._ahead.get(key)
        return self._behind.get(key) if value is None else value

    def _adopt(self, inherited: InheritedRegion, key: bytes, value: bytes, expire_at: int) -> None:
        watched = self.watched.get(key)
        try:
            self.set(key, value, expire_at_ms=expire_at or None)
        except EngineError:
            inherited.counts.over_limit += 1
        if watched is not None:
            self.watched[key] = watched  # the key's value did not change for its clients

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
        if self._inherited is not None:
            self._finish_inheritance()  # a scan sees every key
        now = self._clock_ms()
        cursor, keys = self._scans.step(cursor, count, now, self._inserts, self._all_keys)
        ahead, behind = self._ahead, self._behind
        found = [key for key in keys if key in ahead or key in behind]
        if self._deadlines and found:
            deadlines = self._deadlines
            found = [key for key in found if deadlines.get(key, now + 1) > now]
        if match is not None and found:
            matches = compile_pattern(match)
            found = [key for key in found if matches(key)]
        return cursor, found

    def items(self) -> Iterator[tuple[bytes, Stored, int | None]]:
        """Every key not expired at the call, with what the dicts hold for it (a region
        block's offset for a string the region holds) and its deadline; no use of a key.
        The engine must not change while the iterator runs (a snapshot walks it)."""
        now = self._clock_ms()
        deadlines = self._deadlines
        for part in (self._behind, self._ahead):
            for key, value in dict.items(part):
                deadline = deadlines.get(key) if deadlines else None
                if deadline is None or deadline > now:
                    yield key, value, deadline

    def _all_keys(self) -> list[bytes]:
        # dict.keys reads the underlying dict's entry array (~5 ns a key); iterating the
        # OrderedDict itself walks its linked list, ~40x slower. The order is irrelevant.
        keys = list(dict.keys(self._behind))
        keys.extend(dict.keys(self._ahead))
        return keys
