"""The narrow interface every storage engine provides, plus its errors and stats record.

The store process talks to its data only through :class:`Engine`. The one implementation is
:class:`~blinkstore_gunicorn.engine.memory.MemoryEngine`, which can also publish its entries into
a shared-memory region that client processes read (``blinkstore_gunicorn.shm``); the interface
stays small: bytes in, bytes out, absolute wall-clock deadlines in milliseconds. Values of the
other Redis types are containers (``engine/typed.py``) reached through ``lookup``/``writable``;
the string methods raise ``WrongType`` on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

    from blinkstore_gunicorn.engine.typed import Container, ContainerT

__all__ = [
    "Engine",
    "EngineError",
    "EngineStats",
    "EntryTooLarge",
    "KeyTooLarge",
    "ValueTooLarge",
    "WatchedKeys",
]


class EngineError(ValueError):
    """A request the engine refuses; the message is fit to show to a client as is."""


class _LimitExceeded(EngineError):
    """Common shape of the size-limit errors: the offending size and the limit it broke."""

    what = "entry"
    limit_name = "limit"

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{self.what} of {size} bytes exceeds {self.limit_name} {limit}")


class KeyTooLarge(_LimitExceeded):
    """The key is longer than the engine's ``max_key_size``."""

    what = "key"
    limit_name = "max key size"


class ValueTooLarge(_LimitExceeded):
    """The value is longer than the engine's ``max_value_size``."""

    what = "value"
    limit_name = "max value size"


class EntryTooLarge(_LimitExceeded):
    """The entry alone (key + value + bookkeeping overhead) exceeds the memory limit."""

    what = "entry (key + value + overhead)"
    limit_name = "memory limit"


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A point-in-time copy of an engine's counters.

    ``used_bytes`` is what counts against ``memory_limit`` (0 means unlimited); ``expires`` is
    the number of keys that carry a TTL; ``expirations`` counts keys removed because their TTL
    passed (lazily on access, actively by ``expire_due`` or when met at the eviction end).
    """

    keys: int
    used_bytes: int
    memory_limit: int
    hits: int
    misses: int
    evictions: int
    expirations: int
    expires: int


class WatchedKeys(dict[bytes, int]):
    """The keys the server WATCHes, each with a count of its changes: every write, TTL change,
    deletion, expiry, eviction or flush of a key in here adds 1 (the server adds and removes
    the keys; the engine counts). :attr:`changes` counts the changes of every key."""

    __slots__ = ("changes",)

    def __init__(self) -> None:
        super().__init__()
        #: Changes of any key so far: a snapshot is due when it moved since the last one.
        self.changes = 0

    def changed(self, key: bytes) -> None:
        """Count a change of ``key`` (and of the key itself if it is watched)."""
        self.changes += 1
        if key in self:
            self[key] += 1

    def recount(self, key: bytes, delta: int) -> None:
        """Count ``delta`` more changes of ``key`` (fewer when negative): for a command whose
        write counts otherwise than the one change the engine counted for it."""
        self.changes += delta
        if key in self:
            self[key] += delta

    def flushed(self, present: Iterable[bytes]) -> None:
        """Count a flush: a change of the watched keys it removed (``present``), not of those
        that were absent anyway, as in Redis (a WATCH on a missing key survives FLUSHALL)."""
        self.changes += 1
        for key in present:
            self[key] += 1


class Engine(Protocol):
    """What the store needs from its data: get/set/delete/TTL/scan/stats on bytes.

    Deadlines are absolute wall-clock milliseconds (Redis ``PEXPIREAT`` semantics); callers
    convert relative TTLs. Engines are not thread-safe: the store is single-threaded.
    """

    #: The keys the server WATCHes, with their change counts.
    watched: WatchedKeys

    @property
    def used_bytes(self) -> int:
        """Bytes counted against the memory limit."""
        ...

    @property
    def memory_limit(self) -> int:
        """The memory limit in bytes; 0 means unlimited."""
        ...

    def __len__(self) -> int:
        """Number of keys held (keys past their deadline but not yet removed included)."""
        ...

    def get(self, key: bytes) -> bytes | None:
        """Return the value (counting a hit and refreshing recency) or None (a miss)."""
        ...

    def peek(self, key: bytes) -> bytes | None:
        """Return the value without touching stats or recency."""
        ...

    def contains(self, key: bytes) -> bool:
        """Whether the key exists and has not expired (no stats, no recency change)."""
        ...

    def set(
        self,
        key: bytes,
        value: bytes,
        *,
        expire_at_ms: int | None = None,
        keep_ttl: bool = False,
    ) -> None:
        """Store the value, evicting others if needed; raise an :class:`EngineError` subclass
        when a size limit is broken (nothing changes then)."""
        ...

    def delete(self, key: bytes) -> bool:
        """Remove the key; False when it was absent."""
        ...

    def kind(self, key: bytes) -> bytes | None:
        """The key's Redis type (``b"string"``, ``b"hash"``...), None when absent."""
        ...

    def value(self, key: bytes) -> bytes | Container | None:
        """The key's value of any type, None when absent (no stats, no recency change)."""
        ...

    def usage(self, key: bytes) -> int | None:
        """Bytes the key counts against the memory limit, None when absent."""
        ...

    def touch(self, key: bytes) -> bool:
        """Mark the key recently used; False when absent."""
        ...

    def random_key(self) -> bytes | None:
        """A key drawn at random, None when there is none."""
        ...

    def lookup(self, key: bytes, cls: type[ContainerT]) -> ContainerT | None:
        """The key's ``cls`` value for a read, None when absent; ``WrongType`` for another."""
        ...

    def writable(self, key: bytes, cls: type[ContainerT], growth: int) -> ContainerT:
        """The key's ``cls`` value (created if absent) for a write adding at most ``growth``
        bytes; end the write with :meth:`resized`."""
        ...

    def resized(self, key: bytes, container: Container, old_cost: int) -> None:
        """Settle the memory account after a write; deletes an empty container."""
        ...

    def rename(self, key: bytes, new: bytes) -> bool:
        """Move the key's value and TTL to ``new``; False when the key is absent."""
        ...

    def copy(self, key: bytes, new: bytes) -> bool:
        """Copy the key's value and TTL to ``new``; False when the key is absent."""
        ...

    def replace(self, key: bytes, container: Container) -> None:
        """Make ``container`` the key's value (no TTL), whatever it held."""
        ...

    def expire_at(self, key: bytes) -> int | None:
        """The key's deadline (absolute ms) or None without TTL; KeyError if absent."""
        ...

    def set_expire_at(self, key: bytes, when_ms: int | None) -> bool:
        """Set (or with None remove) the key's deadline; False when the key is absent.

        A deadline that is not in the future deletes the key.
        """
        ...

    def scan(
        self, cursor: int, count: int = 10, match: bytes | None = None
    ) -> tuple[int, list[bytes]]:
        """One step of a cursor scan; cursor 0 starts one and a returned 0 ends it."""
        ...

    def expire_due(self, max_keys: int = ...) -> int:
        """Remove keys whose deadline passed, doing bounded work; return how many."""
        ...

    def flush(self) -> None:
        """Remove every key (counters are kept)."""
        ...

    def stats(self) -> EngineStats:
        """A snapshot of the counters."""
        ...

    def reset_stats(self) -> None:
        """Zero the hit, miss, eviction and expiration counters (``CONFIG RESETSTAT``)."""
        ...
