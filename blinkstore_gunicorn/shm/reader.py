"""The clients' side of the shared region: lock-free lookups, no system call.

A reader maps the region and the generation page it received from the store and answers
``get``/``exists``/``ttl`` from them: hit, miss (the table is authoritative), or
:data:`FALLBACK` (ask the store over the socket: the value is not inline, the slot kept
changing under the reader, or the region is not the live store's any more).

What a reader writes, and why that is harmless: the visited mark of a block it hit (SIEVE's
bit; a mark that lands on a block just reused only gives that entry one more pass) and its own
counter slot (hits, misses), which the store sums into ``INFO``. A reader that dies mid-read
leaves nothing half done.
"""

from __future__ import annotations

import mmap
import os
import time
from typing import Literal, overload
from zlib import crc32

from blinkstore_gunicorn.shm import layout as L

__all__ = ["FALLBACK", "Fallback", "RegionError", "RegionReader"]

# Rereads of one slot the writer keeps changing before the reader asks the store instead.
_SPINS = 64
_MASK32 = 0xFFFFFFFF


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
    """Read-only view (bar the visited marks and its counters) of a store's region.

    ``region_fd`` and ``generation_fd`` are the descriptors the store sent (the reader maps
    them; the caller may close its copies); ``counter`` is the counter slot the store assigned.
    """

    __slots__ = (
        "_checksum",
        "_g",
        "_gen_mm",
        "_hits",
        "_misses",
        "_mm",
        "_table",
        "_w",
    )

    def __init__(self, region_fd: int, generation_fd: int, counter: int) -> None:
        size = os.fstat(region_fd).st_size
        self._mm = mmap.mmap(region_fd, size)
        self._gen_mm = mmap.mmap(generation_fd, mmap.PAGESIZE)
        self._w = memoryview(self._mm).cast("Q")
        self._g = memoryview(self._gen_mm).cast("Q")
        # (table view, its token, slot mask, word mask): one tuple, replaced whole, so that a
        # thread never pairs one table with another's mask. Until the first read adopts the
        # live table: one empty slot under token -1 (a miss, then _stale).
        self._table = (memoryview(bytes(L.SLOT_BYTES)).cast("Q"), -1, 0, 0)
        w = self._w
        if size < L.HEADER_BYTES or w[L.H_MAGIC] != L.MAGIC or w[L.H_VERSION] != L.VERSION:
            self.close()
            raise RegionError("not a blinkstore shared-memory region of this version")
        self._checksum = bool(w[L.H_FLAGS] & L.FLAG_CHECKSUM)
        base = (w[L.H_COUNTERS] >> 3) + (counter % L.COUNTER_SLOTS) * L.COUNTER_STRIDE
        self._hits = base
        self._misses = base + 1

    @property
    def alive(self) -> bool:
        """Whether the region still belongs to a live store (False: read from the socket)."""
        return self._g[0] == self._w[L.H_TOKEN] or self._refresh()

    def _refresh(self) -> bool:
        """Adopt the region's current table if its store still owns the generation page."""
        token = self._g[0]
        w = self._w
        if token != w[L.H_TOKEN] or token & 1 or not token:
            return False
        offset, slots = L.unpack_table_word(w[L.H_TABLE])
        if offset + slots * L.SLOT_BYTES > len(self._mm):
            return False
        # Not release() the old view: another thread may be reading through it. The table was
        # read after the token: if the store switched again in between, the token check at
        # the end of the next read fails and the reader comes back here.
        table = memoryview(self._mm)[offset : offset + slots * L.SLOT_BYTES].cast("Q")
        self._table = (table, token, slots - 1, slots * L.SLOT_WORDS - 1)
        return True

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
        # The token is checked once, after the read: a read through a table that is no longer
        # live fails that check and goes to _stale (the table always has empty slots, so the
        # search ends, and the view's bounds keep it inside the region).
        t, token, slot_mask, word_mask = self._table
        g = self._g
        h = crc32(key)
        want = (h << 32) + len(key)
        i = (h & slot_mask) << 2
        spins = 0
        while True:
            meta = t[i]
            if meta == want:
                seq = t[i + 1]
                loc = t[i + 2]
                expire_at = t[i + 3]
                if not loc:
                    # "Ask the store" (also where the empty key's search ends: META 0).
                    return FALLBACK
                mm = self._mm
                start = (loc >> 24) + 24
                end = start + len(key)
                same = mm[start:end] == key
                value = mm[end : end + (loc & 0xFFFFFF)] if same else b""
                if seq & 1 or t[i + 1] != seq or g[0] != token:
                    if g[0] != token:
                        return self._stale(key, mode)
                    spins += 1
                    if spins > _SPINS:
                        return FALLBACK
                    continue
                if same:
                    if self._checksum and self._w[(loc >> 27) + 2] != crc32(value, crc32(key)):
                        return FALLBACK
                    if expire_at and expire_at <= time.time_ns() // 1_000_000:
                        break
                    if mode:
                        return expire_at if mode == 2 else value
                    w = self._w
                    j = loc >> 27
                    if not w[j]:
                        w[j] = 1
                    w[self._hits] += 1
                    return value
            elif not meta:
                if g[0] != token:
                    return self._stale(key, mode)
                break
            i = (i + 4) & word_mask
        if not mode:
            self._w[self._misses] += 1
        return None

    def _stale(self, key: bytes, mode: Literal[0, 1, 2]) -> bytes | int | Fallback | None:
        """The token changed during the read: adopt the live table and read again, or give up
        when the region is no longer the live store's."""
        if not self._refresh():
            return FALLBACK
        return self.get(key, mode)

    def exists(self, key: bytes) -> bool | Fallback:
        """Whether ``key`` is present and not expired, or :data:`FALLBACK`."""
        found = self.get(key, 1)
        if found is FALLBACK:
            return FALLBACK
        return found is not None

    def expire_at_of(self, key: bytes) -> int | Fallback | None:
        """``key``'s deadline (absolute ms, 0 none), None when absent, or :data:`FALLBACK`."""
        return self.get(key, 2)

    def close(self) -> None:
        """Unmap the region (the store is unaffected)."""
        self._table[0].release()
        self._w.release()
        self._g.release()
        self._mm.close()
        self._gen_mm.close()
