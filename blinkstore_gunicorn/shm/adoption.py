"""Reading a dead store's region back (store side only): what its successor may adopt.

When a supervised store dies (SIGKILL, a crash, an OOM kill), its supervisor has revoked the
region already (token 0: no reader trusts it any more) and hands the successor its descriptor
with the token it held before. The successor reads the region here, maps it read-only and
copies every entry it can trust into its own engine (and so into its own, fresh region) before
it serves. Nothing here writes the old region, and the successor never publishes it again.

Nothing read back is trusted for control flow: a worker can write the region through
``/proc/self/fd`` (``docs/security.md``), so every word is bounds-checked and the key and value
are copied out before they are checked. Whatever the region holds, reading it ends (one pass
over a table whose size the header bounds by the file's) and at worst drops entries:

* the whole region is refused when its magic, layout version or geometry is not this
  version's, or its token (as the supervisor found it) was odd (a ``FLUSHALL`` in progress) or
  0 (closed, or revoked before);
* a slot is dropped when its sequence is odd (the store died in the middle of changing it),
  its block is out of bounds or disagrees with the slot, its key does not hash to the slot's
  hash, or (a region with checksums) its crc32 of key, value and deadline does not match;
* "ask the store" entries (values over the region's threshold, other data types, values the
  region had no block for) are counted and dropped: their data died with the store's heap;
* entries past their deadline are dropped.

Why the sequence alone settles torn writes: the store makes a slot's sequence odd before it
changes the slot or its block and even after, one aligned store each, and a killed process's
stores up to the kill are all in the memfd (the kernel does not drop them). The checksum, when
the region has one, catches what a stray writer did to the bytes without touching the
sequence.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from blinkstore_gunicorn.shm import layout as L
from blinkstore_gunicorn.shm.blocks import MAX_PAGE

__all__ = ["Counts", "Inheritance", "RegionRefused"]

_MASK32 = 0xFFFFFFFF
_MAX_ENTRY = MAX_PAGE - L.BLOCK_HEADER
_WORD_BITS = 64


class RegionRefused(Exception):
    """The region as a whole is not adoptable; the message says why."""


@dataclass
class Counts:
    """What a pass over the region found, entry by entry."""

    #: Entries handed out as trustworthy.
    kept: int = 0
    #: Slots dropped: torn by the store's death, or content that does not check out.
    in_doubt: int = 0
    #: "Ask the store" entries: their values lived in the dead store's heap.
    not_held: int = 0
    #: Entries past their deadline.
    expired: int = 0


@dataclass
class Inheritance:
    """A dead store's region, received as ``fd`` with the token its supervisor found there.

    The caller keeps ownership of ``fd`` (it closes it after :meth:`entries`).
    """

    fd: int
    token: int
    counts: Counts = field(default_factory=Counts)

    def entries(
        self, now_ms: int, reserve: Callable[[int], None] | None = None
    ) -> Iterator[tuple[bytes, bytes, int]]:
        """``(key, value, deadline ms or 0)`` of every entry that checks out, in table order.

        Raises :class:`RegionRefused` before the first entry when the region as a whole cannot
        be adopted; :attr:`counts` tells what was kept and dropped once the iterator is done.
        ``reserve`` is called first with the number of live slots (an upper bound of entries).
        """
        size = os.fstat(self.fd).st_size
        if size < L.HEADER_BYTES:
            raise RegionRefused(f"{size} bytes, smaller than a region's header")
        mm = mmap.mmap(self.fd, size - size % 8, prot=mmap.PROT_READ)
        words = memoryview(mm).cast("Q")
        try:
            yield from self._walk(mm, words, now_ms, reserve)
        finally:
            words.release()
            mm.close()

    def _walk(
        self,
        mm: mmap.mmap,
        w: memoryview,
        now_ms: int,
        reserve: Callable[[int], None] | None,
    ) -> Iterator[tuple[bytes, bytes, int]]:
        table, slots, data, data_end, mul, prime, checked = self._geometry(w)
        counts = self.counts
        # The slot columns as lists: one C call each instead of a word access per slot.
        base = table >> 3
        end = base + slots * L.SLOT_WORDS
        metas = w[base + L.META : end : L.SLOT_WORDS].tolist()
        seqs = w[base + L.SEQ : end : L.SLOT_WORDS].tolist()
        locs = w[base + L.LOC : end : L.SLOT_WORDS].tolist()
        expires = w[base + L.EXPIRE : end : L.SLOT_WORDS].tolist()
        if reserve is not None:
            reserve(len(metas) - metas.count(0) - metas.count(L.TOMBSTONE))
        key_hash = L.key_hash
        entry_checksum = L.entry_checksum
        last = data_end - L.BLOCK_HEADER
        for i, meta in enumerate(metas):
            if not meta or meta == L.TOMBSTONE:
                continue
            loc = locs[i]
            if not loc:
                counts.not_held += 1
                continue
            block = loc >> L.LOC_SHIFT
            nk = meta & _MASK32
            nv = loc & L.MAX_INLINE_VALUE
            start = block + L.BLOCK_HEADER
            if (
                seqs[i] & 1
                or not nk
                or nk + nv > _MAX_ENTRY  # a block never outgrows a page: no giant copies
                or block & 7
                or not data <= block <= last
                or start + nk + nv > data_end
                or w[block >> 3] != nk << 32 | nv
            ):
                counts.in_doubt += 1
                continue
            raw = mm[start : start + nk + nv]
            key = raw[:nk]
            value = raw[nk:]
            expire = expires[i]
            if key_hash(key, mul, prime) != meta >> 32 or (
                checked and w[(block >> 3) + L.BLOCK_CHECKSUM] != entry_checksum(key, value, expire)
            ):
                counts.in_doubt += 1
                continue
            if expire and expire <= now_ms:
                counts.expired += 1
                continue
            counts.kept += 1
            yield key, value, expire

    def _geometry(self, w: memoryview) -> tuple[int, int, int, int, int, int, bool]:
        """``(table offset, slots, data start, data end, hash mul, hash prime, checksums)``
        of a region that checks out as a whole; :class:`RegionRefused` otherwise."""
        token = self.token
        if not token:
            raise RegionRefused("it was closed or revoked before the store died")
        if token & 1:
            raise RegionRefused("the store died while it emptied it (FLUSHALL)")
        if w[L.H_MAGIC] != L.MAGIC or w[L.H_VERSION] != L.VERSION:
            raise RegionRefused(f"not a region of layout version {L.VERSION}")
        size = len(w) * 8
        area = w[L.H_TABLE_AREA]
        half = w[L.H_TABLE_BYTES]
        data = w[L.H_DATA]
        data_end = w[L.H_DATA_END]
        if not (
            area >= L.HEADER_BYTES
            and not (area | half | data) & 7
            and area + 2 * half <= data <= data_end <= size
        ):
            raise RegionRefused("its table and data areas are out of bounds")
        table, slots = L.unpack_table_word(w[L.H_TABLE])
        if table not in (area, area + half) or slots * L.SLOT_BYTES > half:
            raise RegionRefused("its live table is out of bounds")
        mul = w[L.H_HASH_MUL]
        prime = w[L.H_HASH_PRIME]
        if not 2 <= prime < 1 << (_WORD_BITS - 1) or not 1 <= mul < prime:
            raise RegionRefused("its hash secret is not one a store draws")
        return table, slots, data, data_end, mul, prime, bool(w[L.H_FLAGS] & L.FLAG_CHECKSUM)
