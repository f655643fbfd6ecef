"""The store's side of the shared region: the single writer.

The engine calls it for every mutation of a key (publish, unpublish, TTL, flush) before the
store replies, so a write the store acknowledged is visible to every read that starts after it.
Values live in the region only (the engine keeps the block offset, not a second copy); keys too
large for the region, or values above the threshold, get an "ask the store" entry, so the table
stays authoritative and a reader answers a miss without a round trip.

Slot updates follow the seqlock rule of :mod:`~blinkstore_gunicorn.shm.layout`: the slot's
sequence goes odd before its words or its block change and even after, and a block is only
freed (and so reusable) after the slot that pointed at it has moved on. The table grows (or sheds
tombstones) by building a new table in the other half of the table area and switching the token.

Readers cannot write the region (they map a read-only descriptor, and once :meth:`RegionWriter.
seal` ran nobody can map it writable again, even by reopening it through ``/proc``), so every
word the store reads back from it is one it wrote. From the marks mapping, which readers do
write, it reads a visited mark as a boolean and the counters as numbers for ``INFO``, nothing it
acts on further.

The stores into slots and blocks, the allocator and the table's migration have two
implementations with one interface: the pure-Python reference (``shm/publisher.py``,
``shm/blocks.py``, ``shm/migration.py``) and the optional C helper (``shm/_native.c``,
:func:`~blinkstore_gunicorn.shm.native.native`), which writes the same words in the same order,
with release ordering, and also takes the common SET (an overwrite in place, or a new key) in
one call, handing the rarer cases back to :meth:`RegionWriter._general`.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from blinkstore_gunicorn.shm.blocks import Blocks, page_size
from blinkstore_gunicorn.shm.fds import read_only_copy, seal_future_writes, sealed_memfd
from blinkstore_gunicorn.shm.layout import (
    BLOCK_CHECKSUM,
    BLOCK_HEADER,
    BLOCK_LENGTHS,
    BLOCK_SLOT,
    COUNTER_BYTES,
    COUNTER_SLOTS,
    COUNTER_STRIDE,
    EXPIRE,
    FLAG_CHECKSUM,
    FLAG_PARTIAL,
    H_DATA,
    H_DATA_END,
    H_FLAGS,
    H_HASH_MUL,
    H_HASH_PRIME,
    H_HEARTBEAT,
    H_MAGIC,
    H_MARKS_BYTES,
    H_TABLE,
    H_TABLE_AREA,
    H_TABLE_BYTES,
    H_TOKEN,
    H_VERSION,
    HEADER_BYTES,
    MAGIC,
    MAX_INLINE_VALUE,
    MAX_PROBE,
    SEQ,
    SLOT_BYTES,
    SLOT_WORDS,
    TOMBSTONE,
    VERSION,
    block_size,
    checksum_by_default,
    entry_checksum,
    hash_secret,
    key_hash,
    table_word,
)
from blinkstore_gunicorn.shm.migration import (
    UNPLACED,
    NextTable,
    maps,
    place_out,
    take_out_far,
)
from blinkstore_gunicorn.shm.native import native
from blinkstore_gunicorn.shm.publisher import Publisher

if TYPE_CHECKING:
    from blinkstore_gunicorn.shm import _native as _c

__all__ = ["DEFAULT_MAX_VALUE", "RegionFull", "RegionWriter"]

#: Values longer than this stay in the store's heap (readers ask the store for them).
DEFAULT_MAX_VALUE = 64 * 2**10
# Smallest counted cost of an entry (ENTRY_OVERHEAD and a 16-byte block): bounds the number of
# entries a memory limit allows, which sizes the table area.
_MIN_ENTRY = 320
_UNLIMITED_DATA = 1 << 36
_UNLIMITED_SLOTS = 1 << 24
_FIRST_SLOTS = 1024
_PAGE = 4096
_MASK32 = 0xFFFFFFFF
# Live slots a migration moves per insert: from half full (when it starts) to 80 % (when it
# would finish at once), the inserts in between move 30 % x 16 times the table.
_MIGRATE_STEP = 16
# A table this small grows at once when a key lands too far from home (C: ~0.4 ms, 2,000 keys).
_GROW_AT_ONCE = 1 << 13
# What a sealed region's spare table is cleared with, a piece at a time.
_ZEROS = memoryview(bytes(1 << 20))


class RegionFull(Exception):
    """The table holds as many keys as the region was sized for (unlimited memory only)."""


def _round_page(n: int) -> int:
    return (n + _PAGE - 1) & -_PAGE


class RegionWriter:
    """Creates the region and its marks (sealed memfds) and publishes entries; one per store.

    ``memory_limit`` sizes the data area and the table (0: unlimited, sparse); ``max_value``
    is the largest value held inline (attribute ``max_value``: a plain attribute, read on
    every SET); ``checksum`` (default: off on x86-64 only) makes readers
    verify a crc32 of key, value and deadline.

    The calls of every write are attributes, the publisher's own methods (C or the Python
    reference, ``shm/publisher.py``):

    * ``publish(key, value, expire_at, handle) -> block``: make ``key`` -> ``value``
      (deadline ``expire_at`` ms, 0 none) visible to readers. ``handle`` is the block the
      key's value is in now (0 when it has none). Returns the value's block offset, or 0
      when the value is not held inline (too large, or no block of its size is free): the
      entry then says "ask the store" and the caller keeps the value.
    * ``read(handle) -> bytes``: the value in the block at ``handle``.
    * ``block_bytes(handle) -> int``: the bytes of that block (what the value costs).
    * ``begin_batch()`` and ``end_batch()``: a multi-key write (MSET, EXEC) starts and ends;
      the write epoch is odd in between (readers of several keys ask the store). Batches
      nest (an MSET inside EXEC).
    """

    publish: Callable[[bytes, bytes, int, int], int]
    read: Callable[[int], bytes]
    block_bytes: Callable[[int], int]
    begin_batch: Callable[[], None]
    end_batch: Callable[[], None]

    __slots__ = (
        "_ask",
        "_blocks",
        "_checksum",
        "_counters",
        "_counts_base",
        "_data_end",
        "_data_start",
        "_epoch",
        "_far",
        "_half",
        "_hash",
        "_mark_base",
        "_marks",
        "_marks_bytes",
        "_marks_fd",
        "_marks_mm",
        "_max_slots",
        "_migration",
        "_mm",
        "_mul",
        "_next_counter",
        "_prime",
        "_pub",
        "_reader_fd",
        "_region_fd",
        "_sealed",
        "_slots",
        "_t",
        "_t0",
        "_table_area",
        "_table_bytes",
        "_w",
        "begin_batch",
        "block_bytes",
        "end_batch",
        "max_value",
        "publish",
        "read",
    )

    def __init__(
        self,
        memory_limit: int,
        *,
        max_value: int = DEFAULT_MAX_VALUE,
        checksum: bool | None = None,
        partial: bool = False,
    ) -> None:
        if not 0 <= max_value <= MAX_INLINE_VALUE:
            raise ValueError(f"max_value must be 0..{MAX_INLINE_VALUE}, got {max_value}")
        self.max_value = max_value
        self._checksum = checksum_by_default() if checksum is None else checksum
        page = page_size(memory_limit)
        # The limit plus room for partly used pages (one per block size in use). Pages are
        # only backed by memory once touched (and given back when empty until sealed).
        room = max(memory_limit // 4, 64 * page)
        data_bytes = -(-(memory_limit + room) // page) * page if memory_limit else _UNLIMITED_DATA
        entries = memory_limit // _MIN_ENTRY if memory_limit else _UNLIMITED_SLOTS // 2
        self._max_slots = max(_FIRST_SLOTS, 1 << (2 * entries - 1).bit_length())
        self._table_bytes = _round_page(self._max_slots * SLOT_BYTES)
        self._marks_bytes = _round_page(self._max_slots)
        marks_size = COUNTER_BYTES + 2 * self._marks_bytes
        self._table_area = HEADER_BYTES
        self._data_start = self._table_area + 2 * self._table_bytes
        self._data_end = self._data_start + data_bytes
        fds: list[int] = []
        try:
            fds.append(sealed_memfd("blinkstore-shm", self._data_end, final=False))
            fds.append(sealed_memfd("blinkstore-shm-marks", marks_size))
            fds.append(read_only_copy(fds[0]))
            self._mm = mmap.mmap(fds[0], self._data_end)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self._region_fd, self._marks_fd, self._reader_fd = fds
        self._marks_mm = mmap.mmap(self._marks_fd, marks_size)
        self._w = memoryview(self._mm).cast("Q")
        self._marks = memoryview(self._marks_mm)
        self._counters = self._marks[:COUNTER_BYTES].cast("Q")
        self._counts_base = (0, 0)
        self._mul, self._prime = hash_secret()
        self._ask: dict[bytes, int] = {}  # key -> its "ask the store" slot (-1: in no table)
        self._far: dict[int, int] = {}  # block -> deadline of an entry in no table
        module = native()
        self._pub: _c.Publisher | Publisher
        self._blocks: _c.Blocks | Blocks
        if module is None:
            self._blocks = Blocks(self._mm, self._data_start, self._data_end, page)
            self._pub = Publisher(
                self._mm, self._marks_mm, self._checksum, max_value, self._general
            )
            self._hash = key_hash
        else:
            self._blocks = module.Blocks(self._mm, self._data_start, self._data_end, page)
            self._pub = module.Publisher(
                self._mm,
                self._marks_mm,
                self._checksum,
                max_value,
                self._general,
                self._blocks,
                self._ask,
                self._mul,
                self._prime,
                _MIGRATE_STEP,
            )
            self._hash = module.key_hash
        # New keys stop at 70 % of the largest table: a key deleted makes room for one added
        # (RENAME, RESTORE REPLACE), and a key the region holds is never refused.
        self._pub.cap = self._max_slots * 7 // 10
        # Called on every SET (and INCR's read): the publisher's own methods, no frame between.
        self.publish = self._pub.publish
        self.read = self._pub.read
        self.block_bytes = self._pub.block_bytes
        self.begin_batch = self._pub.begin_batch
        self.end_batch = self._pub.end_batch
        w = self._w
        w[H_VERSION] = VERSION
        w[H_FLAGS] = (FLAG_CHECKSUM if self._checksum else 0) | (FLAG_PARTIAL if partial else 0)
        w[H_TABLE_AREA] = self._table_area
        w[H_TABLE_BYTES] = self._table_bytes
        w[H_MARKS_BYTES] = self._marks_bytes
        w[H_DATA] = self._data_start
        w[H_DATA_END] = self._data_end
        w[H_HASH_MUL] = self._mul
        w[H_HASH_PRIME] = self._prime
        self.beat(time.monotonic_ns())
        self._epoch = 0
        self._next_counter = 0
        self._half = 1
        self._mark_base = 0
        self._t = memoryview(b"").cast("Q")
        self._t0 = 0  # the live table's first word in the region (for the C helper)
        self._slots = 0
        self._migration: NextTable | None = None
        self._sealed = False
        self._empty_table()
        w[H_MAGIC] = MAGIC

    # -- handing the region out ---------------------------------------------------------------

    @property
    def fds(self) -> tuple[int, int]:
        """``(read-only region, marks)``: what a reader needs, sent with SCM_RIGHTS."""
        return self._reader_fd, self._marks_fd

    @property
    def owner_fd(self) -> int:
        """The writable region: for the store's supervisor only (``generation.Revocation``)."""
        return self._region_fd

    def seal(self) -> None:
        """From now on only this store's mapping can change the region: nobody can map it
        writable or write to it again, even by opening the memfd afresh through
        ``/proc/<pid>/fd`` (a worker's read-only descriptor included). Call once every
        writable mapping that must exist does (the supervisor's header page). Freed pages are
        reused from then on, no longer given back. OSError where the kernel lacks the seal
        (the region works, unsealed)."""
        seal_future_writes(self._region_fd)
        self._sealed = True
        self._blocks.keep_pages()

    @property
    def sealed(self) -> bool:
        """Whether :meth:`seal` succeeded."""
        return self._sealed

    def assign_counter(self) -> int:
        """A counter slot for a new reader process (round robin: a slot outlives its reader)."""
        slot = self._next_counter
        self._next_counter = (slot + 1) % COUNTER_SLOTS
        return slot

    def reader_counts(self, reset: bool = False) -> tuple[int, int]:
        """``(hits, misses)`` that readers answered from the region since the start or the last
        ``reset`` (``CONFIG RESETSTAT``: the slots stay, as readers may be adding to them)."""
        c, end = self._counters, COUNTER_SLOTS * COUNTER_STRIDE
        counts = sum(c[0:end:COUNTER_STRIDE]), sum(c[1:end:COUNTER_STRIDE])
        base, self._counts_base = self._counts_base, counts if reset else self._counts_base
        return counts[0] - base[0], counts[1] - base[1]

    def beat(self, now_ns: int) -> None:
        """The store is alive at ``now_ns`` (CLOCK_MONOTONIC): readers trust the region while
        this is less than ``STALE_NS`` old."""
        self._w[H_HEARTBEAT] = now_ns

    # -- entries ------------------------------------------------------------------------------

    def _general(self, key: bytes, value: bytes, expire_at: int, handle: int) -> int:
        """:attr:`publish` for what the publisher does not take in its one call (a new key
        without the C helper, a migration to start or finish, a block of another size, "ask
        the store" entries)."""
        pub = self._pub
        if not key:
            return 0
        nk = len(key)
        nv = len(value)
        known = True  # counted in pub.live already
        if handle:
            slot = self._slot_of(handle)
            old = self._w[(handle >> 3) + BLOCK_LENGTHS]
            if slot < 0:
                del self._far[handle]
            elif nv <= self.max_value and block_size(BLOCK_HEADER + nk + nv) == block_size(
                BLOCK_HEADER + (old >> 32) + (old & _MASK32)
            ):
                # Same block size, the block in the spare half (a migration moved it).
                pub.rewrite(self._t0 + slot * SLOT_WORDS, handle, key, value, expire_at)
                return handle
        else:
            slot = self._ask.pop(key, -2)
            known = slot != -2
            if not known and pub.live >= pub.cap:
                raise RegionFull(f"the shared-memory table is full ({pub.live} keys)")
        if slot >= 0:
            meta = self._t[slot * SLOT_WORDS]  # the slot holds the key already
        else:  # a new key, or one in no table (it may fit now)
            h = self._hash(key, self._mul, self._prime)
            slot = self._new_slot(h)
            meta = h << 32 | nk
            pub.live += not known
        block = (
            self._blocks.alloc(block_size(BLOCK_HEADER + nk + nv)) if nv <= self.max_value else 0
        )
        if slot < 0:
            # No free slot near its home: the entry stays in no table (a reader's probe meets
            # MAX_PROBE taken slots and asks the store) until a migration places it.
            if block:
                pub.fill(block, key, value, expire_at, UNPLACED)
                self._far[block] = expire_at
            else:
                self._ask[key] = -1
        elif block:
            pub.place(self._t0 + slot * SLOT_WORDS, block, key, value, meta, expire_at)
        else:
            self._ask[key] = slot
            pub.update(self._t0 + slot * SLOT_WORDS, meta, 0, expire_at)
        if handle:
            self._blocks.free(handle)
        return block

    def unpublish(self, key: bytes, handle: int) -> None:
        """Remove ``key`` (its block ``handle``, 0 for an "ask the store" entry)."""
        if not key:
            return
        slot = self._slot_of(handle) if handle else self._ask.pop(key)
        if slot >= 0:
            self._pub.update(self._t0 + slot * SLOT_WORDS, TOMBSTONE, 0, 0)
        elif handle:
            del self._far[handle]
        self._pub.live -= 1
        if handle:
            self._blocks.free(handle)

    def set_expire(self, key: bytes, handle: int, expire_at: int) -> None:
        """Change the key's deadline (absolute ms, 0 none)."""
        if not key:
            return
        slot = self._slot_of(handle) if handle else self._ask[key]
        t = self._t
        b = slot * SLOT_WORDS
        seq = t[b + SEQ] if slot >= 0 else 0
        if slot >= 0:
            t[b + SEQ] = seq + 1
            t[b + EXPIRE] = expire_at
        elif handle:  # in no table: for the one that places it
            self._far[handle] = expire_at
        if handle and self._checksum:
            self._w[(handle >> 3) + BLOCK_CHECKSUM] = entry_checksum(
                key, self.read(handle), expire_at
            )
        if slot >= 0:
            t[b + SEQ] = seq + 2
            if self._migration is not None:
                self._pub.mirror(slot)

    def take_visited(self, handle: int) -> bool:
        """Whether a reader hit the entry since the last call (SIEVE's bit); clears it."""
        marks = self._marks
        slot = self._slot_of(handle)
        j = self._mark_base + slot
        if slot >= 0 and marks[j]:
            marks[j] = 0
            return True
        return False

    def flush(self) -> None:
        """Forget every entry: an empty table, an empty data area (its memory returned)."""
        self._set_token(odd=True)
        self._blocks.clear()
        self._ask.clear()  # the same dict: the C publisher holds it
        self._far.clear()
        self._empty_table()

    def reserve(self, keys: int) -> None:
        """Size the table for ``keys`` keys at once, while the region is still empty (a store
        adopting its predecessor's entries): no migration step on the inserts that follow."""
        if self._pub.live or self._migration is not None:
            return
        slots = _FIRST_SLOTS
        while (keys + 1) * 2 > slots and slots < self._max_slots:
            slots *= 2
        if slots > self._slots:
            half = 1 - self._half
            self._go_live(self._spare_table(half, slots), slots, half)
            self._pub.used = 0

    def close(self) -> None:
        """Tell readers the region is gone (token 0) and let it go."""
        self._w[H_TOKEN] = 0
        self._pub.close()
        self._blocks.close()
        if self._migration is not None:
            self._migration.table.release()
        for view in (self._t, self._w, self._counters, self._marks):
            view.release()
        self._mm.close()
        self._marks_mm.close()
        for fd in (self._region_fd, self._marks_fd, self._reader_fd):
            os.close(fd)

    # -- internals ----------------------------------------------------------------------------

    def _slot_of(self, handle: int) -> int:
        """The live slot of the entry whose block is at ``handle``, -1 if it is in no table."""
        return self._pub.slot_of(self._w[(handle >> 3) + BLOCK_SLOT])

    def _new_slot(self, h: int) -> int:
        """Claim the first tombstone or empty slot on the probe path of a key whose hash is
        ``h`` and that has no slot, or -1 when that is MAX_PROBE or more slots from home (no
        reader looks there). Then the table grows (a cluster's keys spread over two homes when
        it doubles): at once while small, and the key gets its slot there; else by a
        migration, which places the key, out of the table until then."""
        if self._migration is None and (self._pub.used + 1) * 2 > self._slots:
            self._start_migration()
        migration = self._migration
        if migration is not None:
            at_once = (self._pub.used + 1) * 10 > self._slots * 8
            if self._pub.step(self._slots if at_once else _MIGRATE_STEP):
                self._finish_migration(migration)
        found = self._pub.probe(h)
        if ((found >> 1) - h) & (self._slots - 1) >= MAX_PROBE:
            slots = self._slots
            if self._migration is None:
                migration = self._start_migration(grow=True)
                if migration is not None and slots < migration.slots <= _GROW_AT_ONCE:
                    self._pub.step(slots)
                    self._finish_migration(migration)
                    return self._new_slot(h)
            return -1
        self._pub.used += found & 1
        return found >> 1

    def _start_migration(self, *, grow: bool = False) -> NextTable | None:
        """Start building a table without tombstones in the spare half (see
        ``shm/migration.py``), at most 3/8 full, so that it is at most about half full when
        the inserts that build it are done; ``grow``: at least twice the live one. None when
        the table is full (a write to a key held out of the table: it stays out)."""
        slots = 2 * self._slots if grow else _FIRST_SLOTS
        while (self._pub.live + 1) * 8 > slots * 3:
            slots *= 2
        if slots > self._max_slots:
            if self._pub.live >= self._pub.cap:
                return None
            slots = self._max_slots
        half = 1 - self._half
        nxt = NextTable(self._spare_table(half, slots), slots, half, *maps(self._slots, slots), [])
        t0 = (self._table_area + half * self._table_bytes) >> 3
        marks = (self._mark_base, self._marks_of(half))
        self._pub.migrate(t0, slots, half, *marks, nxt.moved, nxt.reverse, nxt.far)
        self._migration = nxt
        return nxt

    def _finish_migration(self, migration: NextTable) -> None:
        """Every live slot is in the new table: take out what lies too far from home, place
        the entries that are in no table where it can, and make it live."""
        self._migration = None
        used = self._pub.end_migration()
        mul, prime = self._mul, self._prime
        self._far.update(take_out_far(self._w, migration))
        moved = migration.moved
        for key, slot in self._ask.items():
            self._ask[key] = moved[slot] if slot >= 0 else -1
        used += place_out(
            migration, self._mm, self._ask, self._far, lambda key: self._hash(key, mul, prime)
        )
        self._go_live(migration.table, migration.slots, migration.half)
        self._pub.used = used

    def _empty_table(self) -> None:
        """Switch to an empty table of _FIRST_SLOTS slots (a new region, FLUSHDB)."""
        migration, self._migration = self._migration, None
        if migration is not None:
            self._pub.end_migration()
            migration.table.release()
        half = 1 - self._half
        self._go_live(self._spare_table(half, _FIRST_SLOTS), _FIRST_SLOTS, half)
        self._pub.used = self._pub.live = 0

    def _spare_table(self, half: int, slots: int) -> memoryview:
        """A zeroed table of ``slots`` slots in ``half``, and zeroed marks for it (readers of
        an old table there may have marked them since)."""
        base = self._table_area + half * self._table_bytes
        if self._sealed:  # the pages stay: zero the part the table will use
            end = base + slots * SLOT_BYTES
            for start in range(base, end, len(_ZEROS)):
                chunk = min(len(_ZEROS), end - start)
                self._mm[start : start + chunk] = _ZEROS[:chunk]
        else:
            self._mm.madvise(mmap.MADV_REMOVE, base, self._table_bytes)
        self._marks_mm.madvise(mmap.MADV_REMOVE, self._marks_of(half), self._marks_bytes)
        return memoryview(self._mm)[base : base + slots * SLOT_BYTES].cast("Q")

    def _marks_of(self, half: int) -> int:
        return COUNTER_BYTES + half * self._marks_bytes

    def _go_live(self, table: memoryview, slots: int, half: int) -> None:
        """Make ``table`` (in ``half``) the one readers use, and the other half's pages (and
        its marks) go back to the system."""
        base = self._table_area + half * self._table_bytes
        self._w[H_TABLE] = table_word(base, slots.bit_length() - 1)
        self._set_token(odd=False)
        old = 1 - half
        self._t.release()
        self._t = table
        self._t0 = base >> 3
        self._slots = slots
        self._half = half
        self._mark_base = self._marks_of(half)
        self._pub.table(self._t0, slots, half)
        if not self._sealed:
            self._mm.madvise(
                mmap.MADV_REMOVE, self._table_area + old * self._table_bytes, self._table_bytes
            )
        self._marks_mm.madvise(mmap.MADV_REMOVE, self._marks_of(old), self._marks_bytes)

    def _set_token(self, *, odd: bool) -> None:
        """Publish a new table generation (odd: a switch is in progress)."""
        self._epoch += 1
        self._w[H_TOKEN] = self._epoch << 1 | odd
