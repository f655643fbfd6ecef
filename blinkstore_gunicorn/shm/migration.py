"""Growing the table without stopping the store (store side only).

A full rebuild is a Python loop over every slot: at a million keys, a pause of seconds. So the
writer *migrates* instead: it builds the next table in the spare half a few slots per insert
(:meth:`Migration.step`), while the live table keeps serving readers and taking writes. A
write to a slot the migration has passed is mirrored into the new table at once
(:meth:`Migration.mirror`), so when the cursor reaches the end the new table is complete and
the writer switches to it as before (``H_TABLE``, then the token).

Block slot words (``BLOCK_SLOT``) say which half their slot index is in (``half << 62``): a
migrated entry's word already names its slot in the new table, and :attr:`Migration.reverse`
leads back to its slot in the live one; after the switch, the same words are simply live.
A block whose entry is in no table (see ``RegionWriter``: a key the table cannot place within
``MAX_PROBE`` slots of its home) says :data:`UNPLACED` there.

The new table may put an entry ``MAX_PROBE`` or more slots past its home, where no reader
would find it: :meth:`Migration._place` lists those slots in :attr:`NextTable.far`, and the
writer takes those entries out of the new table before it goes live.
"""

from __future__ import annotations

import mmap
from array import array
from collections.abc import Callable
from typing import NamedTuple

from blinkstore_gunicorn.shm.layout import (
    BLOCK_HEADER,
    BLOCK_LENGTHS,
    BLOCK_SLOT,
    LOC_SHIFT,
    MAX_PROBE,
    SLOT_WORDS,
    TOMBSTONE,
)

__all__ = [
    "HALF_SHIFT",
    "SLOT_MASK",
    "UNPLACED",
    "Migration",
    "NextTable",
    "maps",
    "place_out",
    "take_out_far",
]

HALF_SHIFT = 62
SLOT_MASK = (1 << HALF_SHIFT) - 1
_MASK32 = 0xFFFFFFFF
#: A block slot word of "half 2": the entry is in no table (readers ask the store for it).
UNPLACED = 2 << HALF_SHIFT


class NextTable(NamedTuple):
    """What the writer keeps of a migration: the table being built, its size and half, the
    maps the publisher keeps up to date (see :func:`maps`), and the slots of the new table it
    filled ``MAX_PROBE`` or more slots past their home (in the order it filled them)."""

    table: memoryview
    slots: int
    half: int
    moved: array[int]
    reverse: array[int]
    far: list[int]


def maps(old_slots: int, slots: int) -> tuple[array[int], array[int]]:
    """A migration's two maps, all -1: ``moved`` (live slot -> its slot in the new table, for
    the slots the cursor passed) and ``reverse`` (new slot -> live slot)."""
    return array("q", [-1]) * old_slots, array("q", [-1]) * slots


class Migration:
    """The table being built (``table``, in half ``half``, its visited marks at
    ``marks_base`` in ``marks``) from the ``live`` table (marks at ``live_marks``) of the
    region whose words are ``w``. ``moved`` and ``reverse`` (see :func:`maps`) are kept up to
    date as slots move, and ``far`` (:attr:`NextTable.far`) grows; the writer reads them.

    The Python publisher (``shm/publisher.py``) runs it; the C helper's ``Publisher`` does
    the same steps on the same maps.
    """

    __slots__ = (
        "cursor",
        "far",
        "half",
        "live",
        "live_marks",
        "marks",
        "marks_base",
        "moved",
        "reverse",
        "slots",
        "table",
        "used",
        "w",
    )

    def __init__(
        self,
        w: memoryview,
        live: memoryview,
        table: memoryview,
        *,
        marks: memoryview,
        live_marks: int,
        half: int,
        marks_base: int,
        moved: array[int],
        reverse: array[int],
        far: list[int],
    ) -> None:
        self.w = w
        self.live = live
        self.marks = marks
        self.live_marks = live_marks
        self.table = table
        self.slots = len(table) // SLOT_WORDS
        self.half = half
        self.marks_base = marks_base
        self.moved = moved
        self.reverse = reverse
        self.far = far
        #: live slots below this one are in the new table
        self.cursor = 0
        #: slots of the new table ever filled (tombstones included)
        self.used = 0

    def step(self, n: int) -> bool:
        """Move the next ``n`` live slots (with their visited marks); True once all moved."""
        live, marks = self.live, self.marks
        end = min(len(self.moved), self.cursor + n)
        for slot in range(self.cursor, end):
            self.cursor = slot + 1
            meta = live[slot * SLOT_WORDS]
            if meta and meta != TOMBSTONE:
                self.mirror(slot)
                if marks[self.live_marks + slot]:
                    marks[self.marks_base + self.moved[slot]] = 1
        return self.cursor == len(self.moved)

    def mirror(self, slot: int) -> None:
        """Bring the new table in line with live ``slot`` after a write (if already moved)."""
        if slot >= self.cursor:
            return
        live = self.live
        b = slot * SLOT_WORDS
        meta = live[b]
        new = self.table
        moved = self.moved[slot]
        if moved >= 0 and new[moved * SLOT_WORDS] != meta:
            # Deleted, or the slot now holds another key (whose probe path differs).
            new[moved * SLOT_WORDS] = TOMBSTONE
            self.reverse[moved] = self.moved[slot] = moved = -1
        if not meta or meta == TOMBSTONE:
            return
        if moved < 0:
            moved = self._place(meta)
            self.moved[slot] = moved
            self.reverse[moved] = slot
        nb = moved * SLOT_WORDS
        loc = live[b + 2]
        new[nb] = meta
        new[nb + 1] = 2
        new[nb + 2] = loc
        new[nb + 3] = live[b + 3]
        if loc:
            self.w[(loc >> LOC_SHIFT >> 3) + BLOCK_SLOT] = self.half << HALF_SHIFT | moved

    def _place(self, meta: int) -> int:
        """The first tombstone or empty slot of the new table on ``meta``'s probe path."""
        table = self.table
        mask = self.slots - 1
        home = slot = (meta >> 32) & mask
        while True:
            found = table[slot * SLOT_WORDS]
            if not found or found == TOMBSTONE:
                self.used += not found
                if (slot - home) & mask >= MAX_PROBE:
                    self.far.append(slot)
                return slot
            slot = (slot + 1) & mask


def take_out_far(w: memoryview, nxt: NextTable) -> dict[int, int]:
    """Before ``nxt`` goes live: take the entries it holds ``MAX_PROBE`` or more slots past
    their home out of it (a tombstone each, so that the probe paths through them stay whole,
    and ``moved`` forgets them). Returns ``{block: deadline}`` of those with a block, whose
    block slot word now says :data:`UNPLACED`; an "ask the store" entry's key finds -1 in
    ``moved``.

    No reader would have found them there, and none misses them now: a slot that far was the
    first free one on the key's path, so the ``MAX_PROBE`` slots a reader looks at are taken,
    and it asks the store.
    """
    table, mask = nxt.table, nxt.slots - 1
    out: dict[int, int] = {}
    for slot in nxt.far:
        b = slot * SLOT_WORDS
        live = nxt.reverse[slot]
        if live < 0 or (slot - (table[b] >> 32)) & mask < MAX_PROBE:
            continue  # emptied since, or refilled nearer its home
        table[b] = TOMBSTONE
        nxt.moved[live] = nxt.reverse[slot] = -1
        loc = table[b + 2]
        if loc:
            block = loc >> LOC_SHIFT
            w[(block >> 3) + BLOCK_SLOT] = UNPLACED
            out[block] = table[b + 3]
    return out


def place_out(
    nxt: NextTable,
    region: mmap.mmap,
    ask: dict[bytes, int],
    far: dict[int, int],
    hash_of: Callable[[bytes], int],
) -> int:
    """Before ``nxt`` goes live: place the entries that are in no table (``ask``'s keys at
    -1, ``far``'s blocks, as ``RegionWriter`` keeps them) into it where it has a free slot
    less than ``MAX_PROBE`` slots from their home, and update both dicts. Returns how many
    empty slots that filled."""
    with memoryview(region) as raw, raw.cast("Q") as w:
        out = [(key, 0, 0) for key, slot in ask.items() if slot < 0]
        for block, expire_at in far.items():
            start = block + BLOCK_HEADER
            out.append(
                (region[start : start + (w[(block >> 3) + BLOCK_LENGTHS] >> 32)], block, expire_at)
            )
        table, mask = nxt.table, nxt.slots - 1
        filled = 0
        for key, block, expire_at in out:
            h = hash_of(key)
            for n in range(MAX_PROBE):
                slot = (h + n) & mask
                meta = table[slot * SLOT_WORDS]
                if not meta or meta == TOMBSTONE:
                    break
            else:
                continue  # still no room near its home: asked for until the next table
            filled += not meta
            loc = 0
            if block:
                del far[block]
                loc = block << LOC_SHIFT | w[(block >> 3) + BLOCK_LENGTHS] & _MASK32
                w[(block >> 3) + BLOCK_SLOT] = nxt.half << HALF_SHIFT | slot
            else:
                ask[key] = slot
            b = slot * SLOT_WORDS
            table[b : b + SLOT_WORDS] = array("Q", [h << 32 | len(key), 2, loc, expire_at])
    return filled
