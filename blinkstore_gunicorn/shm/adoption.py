"""Reading a dead store's region back (store side only): what its successor may adopt.

When a supervised store dies (SIGKILL, a crash, an OOM kill), its supervisor has revoked the
region already (token 0: no reader trusts it any more) and hands the successor its descriptor
with the token it held before. The successor checks the region's header here
(:class:`InheritedRegion`), keeps it mapped read-only and serves at once: its engine takes a
key's entry from it on the key's first access (:meth:`InheritedRegion.take`) and the rest a
chunk of slots at a time in the background (:meth:`InheritedRegion.take_some`), each key at
most once, so an entry never overwrites what a client wrote or deleted since. Nothing here
writes the old region, and the successor never publishes it again.

Nothing read back is trusted for control flow: a worker can write the region through
``/proc/self/fd`` (``docs/security.md``), so every word is bounds-checked and the key and value
are copied out before they are checked. Whatever the region holds, a lookup and the pass end
(a probe and the pass each visit a slot at most once, and the header bounds the table by the
file's size) and at worst drop entries:

* the whole region is refused when its magic, layout version or geometry is not this
  version's, or its token (as the supervisor found it) was odd (a ``FLUSHALL`` in progress) or
  0 (closed, or revoked before);
* a slot is dropped when its sequence is odd (the store died in the middle of changing it),
  its block is out of bounds or disagrees with the slot, its key does not hash to the slot's
  hash, or (a region with checksums) its crc32 of key, value and deadline does not match;
* "ask the store" entries (values over the region's threshold, other data types, values the
  region had no block for) are counted and dropped: their data died with the store's heap;
* entries past their deadline (when they are taken) are dropped;
* a key more than ``_MAX_PROBE`` slots from its home is not found (no honest table has one).

Why the sequence alone settles torn writes: the store makes a slot's sequence odd before it
changes the slot or its block and even after, one aligned store each, and a killed process's
stores up to the kill are all in the memfd (the kernel does not drop them). The checksum, when
the region has one, catches what a stray writer did to the bytes without touching the
sequence.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

from blinkstore_gunicorn.shm import layout as L
from blinkstore_gunicorn.shm.blocks import MAX_PAGE

__all__ = ["Counts", "Inheritance", "InheritedRegion", "RegionRefused"]

_MASK32 = 0xFFFFFFFF
_MAX_ENTRY = MAX_PAGE - L.BLOCK_HEADER
_WORD_BITS = 64
# Slots a lookup visits before it gives the key up (a millisecond or so): a store's table is
# at most half full, so an honest probe is a few slots; a table a stray writer filled must not
# make every miss walk all of it.
_MAX_PROBE = 4096


class RegionRefused(Exception):
    """The region as a whole is not adoptable; the message says why."""


@dataclass
class Counts:
    """What was taken from the region and dropped, entry by entry."""

    #: Entries handed out as trustworthy.
    kept: int = 0
    #: Slots dropped: torn by the store's death, or content that does not check out.
    in_doubt: int = 0
    #: "Ask the store" entries: their values lived in the dead store's heap.
    not_held: int = 0
    #: Entries past their deadline.
    expired: int = 0
    #: Entries handed out that the successor's key, value or memory limit refused.
    over_limit: int = 0


@dataclass
class Inheritance:
    """A dead store's region, received as ``fd`` with the token its supervisor found there."""

    fd: int
    token: int


class InheritedRegion:
    """``inheritance``'s region mapped read-only, its header checked (:class:`RegionRefused`
    otherwise): entries are read from it on demand, each key at most once.

    Owns the descriptor from the start (closed when refused, or by :meth:`close`).
    """

    def __init__(self, inheritance: Inheritance) -> None:
        self.fd = inheritance.fd
        self.counts = Counts()
        self._settled: set[bytes] = set()
        self._cursor = 0
        try:
            size = os.fstat(self.fd).st_size
            if size < L.HEADER_BYTES:
                raise RegionRefused(f"{size} bytes, smaller than a region's header")
            self._mm = mmap.mmap(self.fd, size - size % 8, prot=mmap.PROT_READ)
        except (OSError, ValueError) as exc:
            os.close(self.fd)
            raise RegionRefused(str(exc)) from None
        except RegionRefused:
            os.close(self.fd)
            raise
        self._w = memoryview(self._mm).cast("Q")
        try:
            self._geometry(inheritance.token)
        except RegionRefused:
            self.close()
            raise

    @property
    def slots(self) -> int:
        """Slots of the dead store's live table."""
        return self._slots

    @property
    def done(self) -> bool:
        """Whether :meth:`take_some` went over every slot."""
        return self._cursor >= self._slots

    def take(self, key: bytes, now_ms: int) -> tuple[bytes, int] | None:
        """``(value, deadline ms or 0)`` of ``key`` the first time it is asked for (here or
        by :meth:`take_some`) if the region holds it and it checks out; None otherwise."""
        settled = self._settled
        if key in settled:
            return None
        settled.add(key)
        w = self._w
        want = L.key_hash(key, self._mul, self._prime)
        home = want
        want = want << 32 | len(key)
        mask = self._slots - 1
        base = self._table >> 3
        for i in range(min(self._slots, _MAX_PROBE)):
            b = base + ((home + i) & mask) * L.SLOT_WORDS
            meta = w[b + L.META]
            if not meta:
                return None
            loc = w[b + L.LOC]
            # The key's bytes first (a slice past the end is short): a slot that a stray
            # writer made look like this key's costs a comparison, not the value's copy.
            start = (loc >> L.LOC_SHIFT) + L.BLOCK_HEADER
            if meta != want or not loc or self._mm[start : start + len(key)] != key:
                continue
            expire = w[b + L.EXPIRE]
            entry = self._check(meta, w[b + L.SEQ], loc, expire)
            if entry is not None and entry[0] == key:
                if expire and expire <= now_ms:
                    self.counts.expired += 1
                    return None
                self.counts.kept += 1
                return entry[1], expire
        return None

    def take_some(self, now_ms: int, n: int) -> list[tuple[bytes, bytes, int]]:
        """``(key, value, deadline ms or 0)`` of the entries of the next ``n`` slots that check
        out and whose key was not taken before, in table order."""
        start = self._cursor
        end = min(self._slots, start + n)
        self._cursor = end
        w = self._w
        # The slot columns as lists: one C call each instead of a word access per slot.
        base = (self._table >> 3) + start * L.SLOT_WORDS
        stop = base + (end - start) * L.SLOT_WORDS
        columns = (
            w[base + word : stop : L.SLOT_WORDS].tolist()
            for word in (L.META, L.SEQ, L.LOC, L.EXPIRE)
        )
        counts = self.counts
        settled = self._settled
        taken = []
        for meta, seq, loc, expire in zip(*columns, strict=True):
            if not meta or meta == L.TOMBSTONE:
                continue
            if not loc:
                counts.not_held += 1
                continue
            entry = self._check(meta, seq, loc, expire)
            if entry is None:
                counts.in_doubt += 1
                continue
            key, value = entry
            if key in settled:
                continue
            settled.add(key)
            if expire and expire <= now_ms:
                counts.expired += 1
                continue
            counts.kept += 1
            taken.append((key, value, expire))
        return taken

    def close(self) -> None:
        """Let the mapping, the descriptor and the set of keys taken go (idempotent)."""
        if self.fd < 0:
            return
        self._w.release()
        self._mm.close()
        os.close(self.fd)
        self.fd = -1
        self._settled = set()

    def _check(self, meta: int, seq: int, loc: int, expire: int) -> tuple[bytes, bytes] | None:
        """The key and value of a slot holding a block, None when the slot is in doubt."""
        w = self._w
        block = loc >> L.LOC_SHIFT
        nk = meta & _MASK32
        nv = loc & L.MAX_INLINE_VALUE
        start = block + L.BLOCK_HEADER
        if (
            seq & 1
            or not nk
            or nk + nv > _MAX_ENTRY  # a block never outgrows a page: no giant copies
            or block & 7
            or not self._data <= block <= self._data_end - L.BLOCK_HEADER
            or start + nk + nv > self._data_end
            or w[block >> 3] != nk << 32 | nv
        ):
            return None
        raw = self._mm[start : start + nk + nv]
        key = raw[:nk]
        value = raw[nk:]
        if L.key_hash(key, self._mul, self._prime) != meta >> 32 or (
            self._checked
            and w[(block >> 3) + L.BLOCK_CHECKSUM] != L.entry_checksum(key, value, expire)
        ):
            return None
        return key, value

    def _geometry(self, token: int) -> None:
        """Read the table's and the data area's place and the hash secret from the header, or
        raise :class:`RegionRefused` when the region does not check out as a whole."""
        w = self._w
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
        self._table = table
        self._slots = slots
        self._data = data
        self._data_end = data_end
        self._mul = mul
        self._prime = prime
        self._checked = bool(w[L.H_FLAGS] & L.FLAG_CHECKSUM)
