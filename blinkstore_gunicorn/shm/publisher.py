"""The writer's stores into the table and the data area, in pure Python: the reference.

:class:`Publisher` does, word for word and in the same order, what the C helper's
``_native.Publisher`` does (``shm/_native.c``): the seqlocked slot updates, the block fills,
the probe for a free slot and the table migration (``shm/migration.py``). The writer
(:class:`~blinkstore_gunicorn.shm.writer.RegionWriter`) holds one or the other and calls the
same methods, so the C path is checked against this one (the differential test drives both
with the same operations and compares the regions byte for byte).

Offsets: ``slotw`` is the region word where a slot of the live table starts, ``block`` a
block's byte offset. Every method that changes a live slot mirrors it into the table being
built, if a migration runs (:meth:`migrate`).
"""

from __future__ import annotations

import mmap
from array import array
from collections.abc import Callable

from blinkstore_gunicorn.shm.layout import (
    BLOCK_CHECKSUM,
    BLOCK_HEADER,
    BLOCK_LENGTHS,
    BLOCK_SLOT,
    EXPIRE,
    H_WRITE_EPOCH,
    LOC,
    LOC_SHIFT,
    META,
    SEQ,
    SLOT_WORDS,
    TOMBSTONE,
    block_size,
    entry_checksum,
)
from blinkstore_gunicorn.shm.migration import HALF_SHIFT, SLOT_MASK, Migration

__all__ = ["Publisher"]

_MASK32 = 0xFFFFFFFF


class Publisher:
    """Stores into ``region`` (writable mmap) and, for a migration's visited marks, ``marks``;
    ``checksum``: fill each block's checksum word. ``max_value`` and ``general`` (the writer's
    general path) are :meth:`publish`'s."""

    __slots__ = (
        "_batch_depth",
        "_checksum",
        "_general",
        "_half",
        "_marks",
        "_max_value",
        "_migration",
        "_mm",
        "_slots",
        "_t",
        "_t0",
        "_w",
        "cap",
        "live",
        "used",
    )

    def __init__(
        self,
        region: mmap.mmap,
        marks: mmap.mmap,
        checksum: bool,
        max_value: int,
        general: Callable[[bytes, bytes, int, int], int],
    ) -> None:
        self._mm = region
        self._max_value = max_value
        self._general = general
        self._w = memoryview(region).cast("Q")
        self._marks = memoryview(marks)
        self._checksum = checksum
        self._t = memoryview(b"").cast("Q")
        self._t0 = self._slots = self._half = 0
        self._migration: Migration | None = None
        #: the writer's counts: keys in the table, slots of the live table ever filled; and
        #: the most keys it takes (a new key past them is refused, the writer sets it)
        self.live = self.used = self.cap = 0
        self._batch_depth = 0

    def table(self, t0: int, slots: int, half: int) -> None:
        """The live table starts at region word ``t0``, has ``slots`` slots, in ``half``."""
        self._t.release()
        self._t = self._w[t0 : t0 + slots * SLOT_WORDS]
        self._t0, self._slots, self._half = t0, slots, half

    def migrate(  # noqa: PLR0917 - the C twin's positional signature
        self,
        t0: int,
        slots: int,
        half: int,
        live_marks: int,
        new_marks: int,
        moved: array[int],
        reverse: array[int],
        far: list[int],
    ) -> None:
        """A migration into the table at region word ``t0`` starts (``moved`` and
        ``reverse``: :class:`Migration`'s maps, filled with -1, which it keeps up to date;
        ``far``: the list it appends its slots past ``MAX_PROBE`` to)."""
        self._migration = Migration(
            self._w,
            self._t,
            self._w[t0 : t0 + slots * SLOT_WORDS],
            marks=self._marks,
            live_marks=live_marks,
            half=half,
            marks_base=new_marks,
            moved=moved,
            reverse=reverse,
            far=far,
        )

    def step(self, n: int) -> bool:
        """Move ``n`` more live slots into the new table; True once all moved."""
        assert self._migration is not None
        return self._migration.step(n)

    def mirror(self, slot: int) -> None:
        """Live ``slot`` changed (written by the caller): mirror it if it was moved."""
        if self._migration is not None:
            self._migration.mirror(slot)

    def end_migration(self) -> int:
        """Stop mirroring; the slots of the new table ever filled (0 without a migration)."""
        migration, self._migration = self._migration, None
        if migration is None:
            return 0
        migration.table.release()
        return migration.used

    def probe(self, h: int) -> int:
        """The first tombstone or empty slot on hash ``h``'s probe path in the live table, as
        ``slot << 1 | 1`` if it was empty, ``slot << 1`` if a tombstone."""
        t = self._t
        mask = self._slots - 1
        slot = h & mask
        while True:
            meta = t[slot * SLOT_WORDS]
            if not meta:
                return slot << 1 | 1
            if meta == TOMBSTONE:
                return slot << 1
            slot = (slot + 1) & mask

    def publish(self, key: bytes, value: bytes, expire_at: int, handle: int) -> int:
        """``RegionWriter.publish``. The common case here: the key's value is in block
        ``handle``, which has a live slot (:meth:`slot_of`), and the new value needs a block
        of the same size, so it is rewritten in place. The others go to the writer's general
        path. The C twin also takes a new key that gets a block, with the general path's exact
        effects."""
        if not handle:
            return self._general(key, value, expire_at, handle)
        w = self._w
        block = handle
        j = block >> 3
        slot = self.slot_of(w[j + BLOCK_SLOT])
        old = w[j + BLOCK_LENGTHS]
        nk = len(key)
        nv = len(value)
        if (
            slot < 0
            or nv > self._max_value
            or (
                old != nk << 32 | nv
                and block_size(BLOCK_HEADER + nk + nv)
                != block_size(BLOCK_HEADER + (old >> 32) + (old & _MASK32))
            )
        ):
            return self._general(key, value, expire_at, handle)
        self.rewrite(self._t0 + slot * SLOT_WORDS, block, key, value, expire_at)
        return block

    def slot_of(self, tag: int) -> int:
        """The live slot of a block whose slot word is ``tag``: the one it names in the live
        half or, while a migration runs, the live slot of the new-table slot it names (a moved
        entry's); -1 for neither (an entry in no table, a word out of range)."""
        slot = tag & SLOT_MASK
        if tag >> HALF_SHIFT == self._half:
            return slot if slot < self._slots else -1
        migration = self._migration
        if migration is None or tag >> HALF_SHIFT != migration.half or slot >= migration.slots:
            return -1
        live = migration.reverse[slot]
        return live if 0 <= live < self._slots else -1

    def read(self, block: int) -> bytes:
        """The value in the block at ``block``."""
        lengths = self._w[(block >> 3) + BLOCK_LENGTHS]
        start = block + BLOCK_HEADER + (lengths >> 32)
        return self._mm[start : start + (lengths & _MASK32)]

    def block_bytes(self, block: int) -> int:
        """The bytes of the block at ``block`` (the size its lengths need)."""
        old = self._w[(block >> 3) + BLOCK_LENGTHS]
        return block_size(BLOCK_HEADER + (old >> 32) + (old & _MASK32))

    def rewrite(self, slotw: int, block: int, key: bytes, value: bytes, expire_at: int) -> None:
        """Same key, same block size: the value in place (with the lengths and LOC if the
        length changed), the checksum and the deadline, under the slot's sequence."""
        w = self._w
        j = block >> 3
        nk = len(key)
        nv = len(value)
        lengths = nk << 32 | nv
        seq = w[slotw + SEQ]
        w[slotw + SEQ] = seq + 1
        start = block + BLOCK_HEADER + nk
        self._mm[start : start + nv] = value
        if w[j + BLOCK_LENGTHS] != lengths:  # else LOC (block and value length) is unchanged
            w[j + BLOCK_LENGTHS] = lengths
            w[slotw + LOC] = block << LOC_SHIFT | nv
        if self._checksum:
            w[j + BLOCK_CHECKSUM] = entry_checksum(key, value, expire_at)
        w[slotw + EXPIRE] = expire_at
        w[slotw + SEQ] = seq + 2
        if self._migration is not None:
            self._migration.mirror((slotw - self._t0) // SLOT_WORDS)

    def fill(self, block: int, key: bytes, value: bytes, expire_at: int, tag: int) -> None:
        """Fill the fresh block ``block`` (no slot points at it: not visible yet); ``tag`` is
        its block slot word."""
        w = self._w
        j = block >> 3
        w[j + BLOCK_SLOT] = tag
        start = block + BLOCK_HEADER
        # One copy into the region: joining a small key and value is cheaper than two slices.
        self._mm[start : start + len(key) + len(value)] = key + value
        w[j + BLOCK_LENGTHS] = len(key) << 32 | len(value)
        if self._checksum:
            w[j + BLOCK_CHECKSUM] = entry_checksum(key, value, expire_at)

    def place(  # noqa: PLR0917 - the C twin's positional signature
        self, slotw: int, block: int, key: bytes, value: bytes, meta: int, expire_at: int
    ) -> None:
        """Fill the fresh block ``block``, then point the slot at it under its sequence."""
        slot = (slotw - self._t0) // SLOT_WORDS
        self.fill(block, key, value, expire_at, self._half << HALF_SHIFT | slot)
        self.update(slotw, meta, block << LOC_SHIFT | len(value), expire_at)

    def update(self, slotw: int, meta: int, loc: int, expire_at: int) -> None:
        """Rewrite the slot's words under its sequence (odd while they change)."""
        w = self._w
        seq = w[slotw + SEQ]
        w[slotw + SEQ] = seq + 1
        w[slotw + META] = meta
        w[slotw + LOC] = loc
        w[slotw + EXPIRE] = expire_at
        w[slotw + SEQ] = seq + 2
        if self._migration is not None:
            self._migration.mirror((slotw - self._t0) // SLOT_WORDS)

    def begin_batch(self) -> None:
        """A multi-key write starts: the write epoch is odd (readers of several keys ask the
        store) until the matching :meth:`end_batch`. Batches nest (an MSET inside EXEC)."""
        self._batch_depth += 1
        if self._batch_depth == 1:
            self._w[H_WRITE_EPOCH] += 1

    def end_batch(self) -> None:
        """The multi-key write is complete."""
        self._batch_depth -= 1
        if not self._batch_depth:
            self._w[H_WRITE_EPOCH] += 1

    def close(self) -> None:
        """Let the mappings go."""
        self.end_migration()
        del self._general  # it refers back to the writer
        for view in (self._t, self._w, self._marks):
            view.release()
