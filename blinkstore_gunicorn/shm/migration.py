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
"""

from __future__ import annotations

from array import array
from typing import NamedTuple

from blinkstore_gunicorn.shm.layout import BLOCK_SLOT, LOC_SHIFT, SLOT_WORDS, TOMBSTONE

__all__ = ["HALF_SHIFT", "SLOT_MASK", "Migration", "NextTable", "maps"]

HALF_SHIFT = 62
SLOT_MASK = (1 << HALF_SHIFT) - 1


class NextTable(NamedTuple):
    """What the writer keeps of a migration: the table being built, its size and half, and
    the maps the publisher keeps up to date (see :func:`maps`)."""

    table: memoryview
    slots: int
    half: int
    moved: array[int]
    reverse: array[int]


def maps(old_slots: int, slots: int) -> tuple[array[int], array[int]]:
    """A migration's two maps, all -1: ``moved`` (live slot -> its slot in the new table, for
    the slots the cursor passed) and ``reverse`` (new slot -> live slot)."""
    return array("q", [-1]) * old_slots, array("q", [-1]) * slots


class Migration:
    """The table being built (``table``, in half ``half``, its visited marks at
    ``marks_base`` in ``marks``) from the ``live`` table (marks at ``live_marks``) of the
    region whose words are ``w``. ``moved`` and ``reverse`` (see :func:`maps`) are kept up to
    date as slots move; the writer reads them.

    The Python publisher (``shm/publisher.py``) runs it; the C helper's ``Publisher`` does
    the same steps on the same maps.
    """

    __slots__ = (
        "cursor",
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
        slot = (meta >> 32) & mask
        while True:
            found = table[slot * SLOT_WORDS]
            if not found:
                self.used += 1
                return slot
            if found == TOMBSTONE:
                return slot
            slot = (slot + 1) & mask
