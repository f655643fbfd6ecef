"""The clients' side of the shared region: lock-free lookups, no system call.

A reader maps the region (read-only) and the marks it received from the store and answers
``get``/``exists``/``ttl`` from them: hit, miss (the table is authoritative), or
:data:`FALLBACK` (ask the store over the socket: the value is not inline, the slot kept
changing under the reader, the key is more than ``MAX_PROBE`` slots from its home, or the
region is not a live store's any more).

What a reader writes, and why that is harmless: only the marks mapping, never the region. A
visited mark there (one byte per slot) at worst gives an entry one more pass of eviction, its
counter slot (hits, misses) at worst a wrong ``INFO`` figure. A reader that dies mid-read leaves
nothing half done.

Two implementations of the lookup: :meth:`RegionReader.get` here, the reference, and the
optional C helper's (``shm/_native.c``, chosen by :func:`~blinkstore_gunicorn.shm.native.native`),
which does the same steps with acquire ordering. :attr:`RegionReader.lookup` is whichever runs.
"""

from __future__ import annotations

import mmap
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, overload

from blinkstore_gunicorn.shm import layout as L
from blinkstore_gunicorn.shm.native import native

if TYPE_CHECKING:
    from blinkstore_gunicorn.shm import _native as _c

__all__ = ["FALLBACK", "Fallback", "RegionError", "RegionReader"]

# Rereads of one slot the writer keeps changing before the reader asks the store instead.
_SPINS = 64
_MASK32 = 0xFFFFFFFF
_MASK64 = 2**64 - 1
_STALE = L.STALE_NS
_PROBE = L.MAX_PROBE
_MIX = L.HASH_MIX
# Keys whose hash a reader remembers (hot keys are read again and again; the keyed hash costs
# a big-integer multiply and modulo, a dict lookup a fraction of that).
_MEMO = 16384
_MEMO_KEY = 128  # longer keys are hashed every time (so the memo stays under ~3 MiB)
# Bound once: a module global is one lookup, ``time.monotonic_ns`` two.
_from_bytes = int.from_bytes
_monotonic_ns = time.monotonic_ns


class Fallback:
    """Type of :data:`FALLBACK`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FALLBACK"


#: "Ask the store": the region cannot answer this read.
FALLBACK = Fallback()


class RegionError(OSError):
    """The file descriptors received do not hold a region this version can read."""


class RegionReader:
    """A read-only view of a store's region, and this process's marks and counters.

    ``region_fd`` and ``marks_fd`` are the descriptors the store sent (the reader maps them;
    the caller may close its copies); ``counter`` is the counter slot the store assigned.
    """

    __slots__ = (
        "__weakref__",
        "_checksum",
        "_counters",
        "_hashes",
        "_hits",
        "_marks",
        "_marks_mm",
        "_miss",
        "_misses",
        "_mm",
        "_mul",
        "_native",
        "_prime",
        "_table",
        "_w",
    )

    def __init__(self, region_fd: int, marks_fd: int, counter: int) -> None:
        size = os.fstat(region_fd).st_size
        marks_size = os.fstat(marks_fd).st_size
        if size < L.HEADER_BYTES or marks_size < L.COUNTER_BYTES:
            raise RegionError("not a blinkstore shared-memory region")
        self._mm = mmap.mmap(region_fd, size, prot=mmap.PROT_READ)
        self._native: _c.Lookup | None = None
        self._marks_mm = mmap.mmap(marks_fd, marks_size)
        self._w = memoryview(self._mm).cast("Q")
        self._marks = memoryview(self._marks_mm)
        self._counters = self._marks[: L.COUNTER_BYTES].cast("Q")
        # (table view, its token, slot mask, word mask, its marks): one tuple, replaced whole,
        # so that a thread never pairs one table with another's mask. Until the first read
        # adopts the live table: one empty slot under token -1 (a miss, then _stale).
        self._table = (memoryview(bytes(L.SLOT_BYTES)).cast("Q"), -1, 0, 0, memoryview(b"\0"))
        w = self._w
        if w[L.H_MAGIC] != L.MAGIC or w[L.H_VERSION] != L.VERSION:
            self.close()
            raise RegionError("not a blinkstore shared-memory region of this version")
        if marks_size < L.COUNTER_BYTES + 2 * w[L.H_MARKS_BYTES]:
            self.close()
            raise RegionError("the marks mapping is smaller than the region says")
        self._checksum = bool(w[L.H_FLAGS] & L.FLAG_CHECKSUM)
        #: What a miss answers: None, or "ask the store" when the table holds part of the
        #: keys (the store is a near cache of an upstream server).
        self._miss: Fallback | None = FALLBACK if w[L.H_FLAGS] & L.FLAG_PARTIAL else None
        self._hashes: dict[bytes, int] = {}
        self._mul = w[L.H_HASH_MUL]
        self._prime = w[L.H_HASH_PRIME] or 1
        base = (counter % L.COUNTER_SLOTS) * L.COUNTER_STRIDE
        self._hits = base
        self._misses = base + 1
        module = native()
        if module is not None:
            self._native = module.Lookup(
                self._mm,
                self._marks_mm,
                base // L.COUNTER_STRIDE,
                self._checksum,
                self._mul,
                self._prime,
                _stale_hook(self),
                FALLBACK,
                self._miss,
            )

    @property
    def lookup(self) -> Callable[[bytes], bytes | Fallback | None]:
        """``get(key)`` of the path that runs: the C helper's when it is in use (a C function
        between the caller and the region), else :meth:`get`."""
        return self.get if self._native is None else self._native.get  # type: ignore[return-value]

    @property
    def native(self) -> bool:
        """Whether lookups run in the C helper."""
        return self._native is not None

    @property
    def alive(self) -> bool:
        """Whether the region still belongs to a live store (False: read from the socket)."""
        w = self._w
        fresh = time.monotonic_ns() - w[L.H_HEARTBEAT] <= _STALE
        return (fresh and w[L.H_TOKEN] == self._table[1]) or self._refresh()

    def _refresh(self) -> bool:
        """Adopt the region's current table if its store is alive and not switching."""
        w = self._w
        token = w[L.H_TOKEN]
        if token & 1 or not token or time.monotonic_ns() - w[L.H_HEARTBEAT] > _STALE:
            return False
        offset, slots = L.unpack_table_word(w[L.H_TABLE])
        area, half_bytes = w[L.H_TABLE_AREA], w[L.H_TABLE_BYTES]
        half, rest = divmod(offset - area, half_bytes) if half_bytes else (2, 1)
        if rest or half not in (0, 1) or slots * L.SLOT_BYTES > half_bytes or slots > half_bytes:
            return False
        marks = L.COUNTER_BYTES + half * w[L.H_MARKS_BYTES]
        # Only the store writes these words; checked all the same, so that no header can
        # point a reader's table or marks past the end of its mappings (the C lookup refuses
        # such a table too).
        if offset + slots * L.SLOT_BYTES > len(self._mm) or marks + slots > len(self._marks):
            return False
        # Not release() the old views: another thread may be reading through them. The table
        # was read after the token: if the store switched again in between, the token check at
        # the end of the next read fails and the reader comes back here.
        table = memoryview(self._mm)[offset : offset + slots * L.SLOT_BYTES].cast("Q")
        self._table = (table, token, slots - 1, slots * L.SLOT_WORDS - 1, self._marks[marks:])
        if self._native is not None:
            self._native.set_table(offset, slots, token, marks)
        return True

    @overload
    def _any_get(self, key: bytes, mode: Literal[0, 1]) -> bytes | Fallback | None: ...

    @overload
    def _any_get(self, key: bytes, mode: Literal[2]) -> int | Fallback | None: ...

    def _any_get(self, key: bytes, mode: Literal[0, 1, 2]) -> bytes | int | Fallback | None:
        """:meth:`get` of whichever path runs (for exists, ttl, get_many and _stale)."""
        c = self._native
        return self.get(key, mode) if c is None else c.get(key, mode)  # type: ignore[return-value]

    @overload
    def get(self, key: bytes, mode: Literal[0, 1] = 0) -> bytes | Fallback | None: ...

    @overload
    def get(self, key: bytes, mode: Literal[2]) -> int | Fallback | None: ...

    def get(self, key: bytes, mode: Literal[0, 1, 2] = 0) -> bytes | int | Fallback | None:
        """The value of ``key``, None (absent or expired), or :data:`FALLBACK`.

        ``mode`` 1 leaves the hit/miss counters and the visited mark alone (``exists`` and
        ``ttl`` do not count as reads, as in the store); 2 does the same and returns the
        entry's deadline (absolute ms, 0 none) instead of its value. One function for the
        three, so that the hot path (mode 0) is not a call deeper.
        """
        # Token and heartbeat are checked once, after the read: a read through a table that is
        # no longer live fails that check and goes to _stale (the probe is bounded, and the
        # view's bounds keep it inside the region).
        t, token, slot_mask, word_mask, marks = self._table
        w = self._w
        h = self._hashes.get(key)
        if h is None:
            h = self._hash(key)
        want = (h << 32) + len(key)
        i = (h & slot_mask) << 2
        probes = spins = 0
        while True:
            meta = t[i]
            if meta == want:
                seq = t[i + 1]
                loc = t[i + 2]
                expire_at = t[i + 3]
                mm = self._mm
                start = (loc >> 24) + 24
                end = start + len(key)
                nv = loc & 0xFFFFFF
                # A block that ends past the mapping is no entry (a slice would be cut short).
                same = loc and end + nv <= len(mm) and mm[start:end] == key
                value = mm[end : end + nv] if same else b""
                if seq & 1 or t[i + 1] != seq or w[2] != token:
                    if w[2] != token:
                        return self._stale(key, mode)
                    spins += 1
                    if spins > _SPINS:
                        return FALLBACK
                    continue
                if _monotonic_ns() - w[7] > _STALE:
                    return self._stale(key, mode)
                if not loc:
                    return FALLBACK  # "ask the store" (the value is not inline)
                if same:
                    if self._checksum and self._w[(loc >> 27) + 2] != L.entry_checksum(
                        key, value, expire_at
                    ):
                        return FALLBACK
                    if expire_at and expire_at <= time.time_ns() // 1_000_000:
                        break
                    if mode:
                        return expire_at if mode == 2 else value
                    j = i >> 2
                    if not marks[j]:
                        marks[j] = 1
                    # Wraps: another reader may have written anything there.
                    c = self._counters
                    c[self._hits] = (c[self._hits] + 1) & _MASK64
                    return value
            elif not meta:
                if w[2] != token or _monotonic_ns() - w[7] > _STALE:
                    return self._stale(key, mode)
                break
            probes += 1
            if probes >= _PROBE:
                # Too far from home (or the table is not what this reader thinks): the store
                # answers, unless the table changed, then look again in the live one.
                return self._stale(key, mode) if w[2] != token else FALLBACK
            i = (i + 4) & word_mask
        if not mode:
            c = self._counters
            c[self._misses] = (c[self._misses] + 1) & _MASK64
        return self._miss

    def _hash(self, key: bytes) -> int:
        """``key_hash`` with this region's secret, remembered for the next read of ``key``."""
        r = _from_bytes(key, "little") * self._mul % self._prime
        h: int = (r ^ r >> 31) * _MIX >> 32 & _MASK32
        if len(key) <= _MEMO_KEY:
            hashes = self._hashes
            if len(hashes) >= _MEMO:
                hashes.clear()
            hashes[key] = h
        return h

    def _stale(self, key: bytes, mode: Literal[0, 1, 2]) -> bytes | int | Fallback | None:
        """The token changed (or the heartbeat stopped) during the read: adopt the live table
        and read again, or give up when the region is no longer a live store's."""
        if not self._refresh():
            return FALLBACK
        return self._any_get(key, mode)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | Fallback | None] | Fallback:
        """The values of ``keys`` as one multi-key write left them, or :data:`FALLBACK`.

        A multi-key write (MSET, EXEC) makes the region's write epoch odd while it publishes;
        the reads count only if the epoch was even and the same before and after them.
        """
        w = self._w
        epoch = w[L.H_WRITE_EPOCH]
        if epoch & 1:
            return FALLBACK
        get = self._any_get
        values = [get(key, 0) for key in keys]
        return values if w[L.H_WRITE_EPOCH] == epoch else FALLBACK

    def exists(self, key: bytes) -> bool | Fallback:
        """Whether ``key`` is present and not expired, or :data:`FALLBACK`."""
        found = self._any_get(key, 1)
        if found is FALLBACK:
            return FALLBACK
        return found is not None

    def expire_at_of(self, key: bytes) -> int | Fallback | None:
        """``key``'s deadline (absolute ms, 0 none), None when absent, or :data:`FALLBACK`."""
        return self._any_get(key, 2)

    def read_block(self, key: bytes, block: int, expire_at: int) -> bytes | None:
        """The value of ``key`` read straight from its block at byte offset ``block`` (a
        handle the store's engine holds), or None when the block cannot be trusted.

        For a key no probe finds (placed more than ``MAX_PROBE`` slots from home). The store
        may rewrite the block meanwhile, so the value counts only when the lengths fit the
        mapping, the block holds ``key`` and its checksum matches ``key``, the value and
        ``expire_at`` (absolute ms, 0 none) before and after the copy; a region without
        checksums (``FLAG_CHECKSUM`` unset) answers None.
        """
        w = self._w
        j = block >> 3
        if not self._checksum or block & 7 or j < 0 or j + L.BLOCK_CHECKSUM >= len(w):
            return None
        checksum = w[j + L.BLOCK_CHECKSUM]
        lengths = w[j + L.BLOCK_LENGTHS]
        start = block + L.BLOCK_HEADER
        end = start + len(key)
        stop = end + (lengths & _MASK32)
        if lengths >> 32 != len(key) or stop > len(self._mm) or self._mm[start:end] != key:
            return None
        value = self._mm[end:stop]
        # Reread: a writer that refilled the block during the copy changed one of these words.
        same = w[j + L.BLOCK_CHECKSUM] == checksum and w[j + L.BLOCK_LENGTHS] == lengths
        return value if same and checksum == L.entry_checksum(key, value, expire_at) else None

    def close(self) -> None:
        """Unmap the region (the store is unaffected)."""
        if self._native is not None:
            self._native.close()
        for view in (self._table[0], self._table[4], self._counters, self._marks, self._w):
            view.release()
        self._mm.close()
        self._marks_mm.close()


def _stale_hook(reader: RegionReader) -> Callable[[bytes, int], bytes | int | Fallback | None]:
    """What the C lookup calls when the table changed under it: ``reader._stale``, through a
    weak reference, so that the reader and its lookup do not keep each other (and the mapping
    of a dead store's region) alive until the cycle collector runs."""
    ref = weakref.ref(reader)

    def stale(key: bytes, mode: int) -> bytes | int | Fallback | None:
        found = ref()
        return FALLBACK if found is None else found._stale(key, mode)  # type: ignore[arg-type]

    return stale
