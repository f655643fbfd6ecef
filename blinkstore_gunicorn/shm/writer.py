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
"""

from __future__ import annotations

import mmap
import os
import secrets
import stat

from blinkstore_gunicorn.shm import layout as L
from blinkstore_gunicorn.shm.blocks import Blocks, page_size

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


class RegionFull(Exception):
    """The table holds as many keys as the region was sized for (unlimited memory only)."""


def _round_page(n: int) -> int:
    return (n + _PAGE - 1) & -_PAGE


def _open_generation(path: str | None) -> int:
    """Open (never replace: old readers map it) or create the 0600 generation file."""
    if path is None:
        fd = os.memfd_create("blinkstore-shm-gen", os.MFD_CLOEXEC)
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            os.close(fd)
            raise PermissionError(f"{path} is not a private (0600) file of this user")
    if os.fstat(fd).st_size < _PAGE:
        os.ftruncate(fd, _PAGE)
    return fd


class RegionWriter:
    """Creates the region (a memfd) and publishes entries into it; one per store process.

    ``memory_limit`` sizes the data area and the table (0: unlimited, sparse); ``max_value``
    is the largest value held inline; ``checksum`` (default: off on x86-64 only) makes readers
    verify crc32(key + value); ``generation_path`` is the 0600 file whose first word tells
    readers which store owns the region (None: a private memfd, for tests and embedding).
    """

    __slots__ = (
        "_ask",
        "_blocks",
        "_checksum",
        "_data_end",
        "_data_start",
        "_epoch",
        "_g",
        "_gen_fd",
        "_gen_mm",
        "_gen_path",
        "_half",
        "_live",
        "_max_slots",
        "_max_value",
        "_mm",
        "_next_counter",
        "_nonce",
        "_region_fd",
        "_slots",
        "_t",
        "_table_area",
        "_table_bytes",
        "_token",
        "_used_slots",
        "_w",
    )

    def __init__(
        self,
        memory_limit: int,
        *,
        max_value: int = DEFAULT_MAX_VALUE,
        checksum: bool | None = None,
        generation_path: str | None = None,
    ) -> None:
        if not 0 <= max_value <= L.MAX_INLINE_VALUE:
            raise ValueError(f"max_value must be 0..{L.MAX_INLINE_VALUE}, got {max_value}")
        self._max_value = max_value
        self._checksum = L.checksum_by_default() if checksum is None else checksum
        page = page_size(memory_limit)
        # The limit plus room for partly used pages (one per block size in use). Pages are
        # only backed by memory once touched, and given back when empty.
        room = max(memory_limit // 4, 64 * page)
        data_bytes = -(-(memory_limit + room) // page) * page if memory_limit else _UNLIMITED_DATA
        entries = memory_limit // _MIN_ENTRY if memory_limit else _UNLIMITED_SLOTS // 2
        self._max_slots = max(_FIRST_SLOTS, 1 << (2 * entries - 1).bit_length())
        self._table_bytes = _round_page(self._max_slots * L.SLOT_BYTES)
        counters = L.HEADER_BYTES
        self._table_area = counters + L.COUNTER_SLOTS * L.COUNTER_STRIDE * 8
        self._data_start = self._table_area + 2 * self._table_bytes
        self._data_end = self._data_start + data_bytes
        self._region_fd = os.memfd_create("blinkstore-shm", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self._region_fd, self._data_end)
            self._mm = mmap.mmap(self._region_fd, self._data_end)
            self._gen_fd = _open_generation(generation_path)
        except BaseException:
            os.close(self._region_fd)
            raise
        self._gen_mm = mmap.mmap(self._gen_fd, _PAGE)
        self._gen_path = generation_path
        self._w = memoryview(self._mm).cast("Q")
        self._g = memoryview(self._gen_mm).cast("Q")
        w = self._w
        w[L.H_VERSION] = L.VERSION
        w[L.H_FLAGS] = L.FLAG_CHECKSUM if self._checksum else 0
        w[L.H_TABLE_AREA] = self._table_area
        w[L.H_TABLE_BYTES] = self._table_bytes
        w[L.H_COUNTERS] = counters
        w[L.H_DATA] = self._data_start
        w[L.H_DATA_END] = self._data_end
        self._nonce = secrets.randbits(30) + 1
        self._epoch = 0
        self._token = 0
        self._next_counter = 0
        self._half = 1
        self._t = memoryview(b"").cast("Q")
        self._slots = 0
        self._ask: dict[bytes, int] = {}
        self._blocks = Blocks(self._mm, self._data_start, self._data_end, page)
        self._live = 0
        self._used_slots = 0
        self._switch_table(_FIRST_SLOTS, [])
        w[L.H_MAGIC] = L.MAGIC

    # -- handing the region out ---------------------------------------------------------------

    @property
    def fds(self) -> tuple[int, int]:
        """``(region memfd, generation file)``: what a reader needs, sent with SCM_RIGHTS."""
        return self._region_fd, self._gen_fd

    @property
    def generation_path(self) -> str | None:
        """The generation file (None: a private memfd)."""
        return self._gen_path

    def assign_counter(self) -> int:
        """A counter slot for a new reader process (round robin: a slot outlives its reader)."""
        slot = self._next_counter
        self._next_counter = (slot + 1) % L.COUNTER_SLOTS
        return slot

    def reader_counts(self) -> tuple[int, int]:
        """``(hits, misses)`` that readers answered from the region."""
        w = self._w
        base = self._w[L.H_COUNTERS] >> 3
        end = base + L.COUNTER_SLOTS * L.COUNTER_STRIDE
        return sum(w[base : end : L.COUNTER_STRIDE]), sum(w[base + 1 : end : L.COUNTER_STRIDE])

    @property
    def max_value(self) -> int:
        """Largest value held inline."""
        return self._max_value

    # -- entries ------------------------------------------------------------------------------

    def block_bytes(self, handle: int) -> int:
        """Bytes of the block at ``handle`` (what the entry's value costs in the region)."""
        return self._blocks.size_of(handle)

    def read(self, handle: int) -> bytes:
        """The value in the block at ``handle``."""
        b = self._w[(handle >> 3) + L.BLOCK_SLOT] * L.SLOT_WORDS
        t = self._t
        start = handle + L.BLOCK_HEADER + (t[b] & _MASK32)
        return self._mm[start : start + (t[b + L.LOC] & L.MAX_INLINE_VALUE)]

    def publish(self, key: bytes, value: bytes, expire_at: int, handle: int) -> int:
        """Make ``key`` -> ``value`` (deadline ``expire_at`` ms, 0 none) visible to readers.

        ``handle`` is the block the key's value is in now (0 when it has none). Returns the
        value's block offset, or 0 when the value is not held inline (too large, or no block of
        its size is free): the entry then says "ask the store" and the caller keeps the value.
        """
        if not key:
            return 0
        size = L.block_size(L.BLOCK_HEADER + len(key) + len(value))
        if handle:
            slot = self._w[(handle >> 3) + L.BLOCK_SLOT]
            if self._blocks.size_of(handle) == size and len(value) <= self._max_value:
                # Same key, same block size: rewrite the block in place, under the sequence.
                t = self._t
                b = slot * L.SLOT_WORDS
                seq = t[b + L.SEQ]
                t[b + L.SEQ] = seq + 1
                self._fill(handle, key, value)
                t[b + L.LOC] = handle << L.LOC_SHIFT | len(value)
                t[b + L.EXPIRE] = expire_at
                t[b + L.SEQ] = seq + 2
                return handle
        else:
            slot = self._ask.pop(key, -1)
            if slot < 0:
                slot = self._new_slot(key)
        block = self._blocks.alloc(size) if len(value) <= self._max_value else 0
        if block:
            # Not visible yet: no slot points here.
            w = self._w
            w[block >> 3] = 0
            w[(block >> 3) + L.BLOCK_SLOT] = slot
            self._fill(block, key, value)
            self._update(slot, L.meta_word(key), block << L.LOC_SHIFT | len(value), expire_at)
        else:
            self._ask[key] = slot
            self._update(slot, L.meta_word(key), 0, expire_at)
        if handle:
            self._blocks.free(handle)
        return block

    def unpublish(self, key: bytes, handle: int) -> None:
        """Remove ``key`` (its block ``handle``, 0 for an "ask the store" entry)."""
        if not key:
            return
        slot = self._w[(handle >> 3) + L.BLOCK_SLOT] if handle else self._ask.pop(key)
        self._update(slot, L.TOMBSTONE, 0, 0)
        self._live -= 1
        if handle:
            self._blocks.free(handle)

    def set_expire(self, key: bytes, handle: int, expire_at: int) -> None:
        """Change the key's deadline (absolute ms, 0 none)."""
        if not key:
            return
        slot = self._w[(handle >> 3) + L.BLOCK_SLOT] if handle else self._ask[key]
        t = self._t
        b = slot * L.SLOT_WORDS
        seq = t[b + L.SEQ]
        t[b + L.SEQ] = seq + 1
        t[b + L.EXPIRE] = expire_at
        t[b + L.SEQ] = seq + 2

    def take_visited(self, handle: int) -> bool:
        """Whether a reader hit the entry since the last call (SIEVE's bit); clears it."""
        w = self._w
        j = handle >> 3
        if w[j]:
            w[j] = 0
            return True
        return False

    def flush(self) -> None:
        """Forget every entry: an empty table, an empty data area (its memory returned)."""
        self._set_token(odd=True)
        self._blocks.clear()
        self._ask = {}
        self._switch_table(_FIRST_SLOTS, [])

    def close(self) -> bool:
        """Tell readers the region is gone; return False when a newer store already owns the
        generation page (its file must then stay)."""
        owned = self._g[0] == self._token
        if owned:
            self._g[0] = 0
        self._t.release()
        self._w.release()
        self._g.release()
        self._mm.close()
        self._gen_mm.close()
        os.close(self._region_fd)
        os.close(self._gen_fd)
        return owned

    # -- internals ----------------------------------------------------------------------------

    def _fill(self, block: int, key: bytes, value: bytes) -> None:
        """Write key and value (and their checksum) into ``block``."""
        mm = self._mm
        start = block + L.BLOCK_HEADER
        middle = start + len(key)
        mm[start:middle] = key
        mm[middle : middle + len(value)] = value
        if self._checksum:
            self._w[(block >> 3) + L.BLOCK_CHECKSUM] = L.entry_checksum(key, value)

    def _update(self, slot: int, meta: int, loc: int, expire_at: int) -> None:
        """Rewrite ``slot``'s words under its sequence (odd while they change)."""
        t = self._t
        b = slot * L.SLOT_WORDS
        seq = t[b + L.SEQ]
        t[b + L.SEQ] = seq + 1
        t[b + L.META] = meta
        t[b + L.LOC] = loc
        t[b + L.EXPIRE] = expire_at
        t[b + L.SEQ] = seq + 2

    def _new_slot(self, key: bytes) -> int:
        """Claim the first tombstone or empty slot on ``key``'s probe path (key is absent)."""
        if (self._used_slots + 1) * 10 > self._slots * 7:
            self._rebuild()
        t = self._t
        mask = self._slots - 1
        slot = L.key_hash(key) & mask
        while True:
            meta = t[slot * L.SLOT_WORDS]
            if not meta:
                self._used_slots += 1
                break
            if meta == L.TOMBSTONE:
                break
            slot = (slot + 1) & mask
        self._live += 1
        return slot

    def _rebuild(self) -> None:
        """A new table without tombstones, large enough to be at most half full."""
        slots = _FIRST_SLOTS
        while (self._live + 1) * 2 > slots:
            slots *= 2
        if slots > self._max_slots:
            if (self._live + 1) * 10 > self._max_slots * 7:
                raise RegionFull(f"the shared-memory table is full ({self._live} keys)")
            slots = self._max_slots
        # Live slots of the old table; "ask the store" entries are found by their old slot.
        t = self._t
        asked = {slot: key for key, slot in self._ask.items()}
        entries = []
        for slot in range(self._slots):
            b = slot * L.SLOT_WORDS
            meta = t[b]
            if meta and meta != L.TOMBSTONE:
                entries.append((meta, t[b + L.LOC], t[b + L.EXPIRE], asked.get(slot)))
        self._switch_table(slots, entries)

    def _switch_table(self, slots: int, entries: list[tuple[int, int, int, bytes | None]]) -> None:
        """Fill the spare half with ``entries`` (meta, loc, deadline, key of an "ask the
        store" entry), then make it live."""
        half = 1 - self._half
        base = self._table_area + half * self._table_bytes
        table = memoryview(self._mm)[base : base + slots * L.SLOT_BYTES].cast("Q")
        mask = slots - 1
        w = self._w
        for meta, loc, expire_at, key in entries:
            slot = (meta >> 32) & mask
            while table[slot * L.SLOT_WORDS]:
                slot = (slot + 1) & mask
            b = slot * L.SLOT_WORDS
            table[b + L.META] = meta
            table[b + L.SEQ] = 2
            table[b + L.LOC] = loc
            table[b + L.EXPIRE] = expire_at
            if loc:
                w[(loc >> L.LOC_SHIFT >> 3) + L.BLOCK_SLOT] = slot
            elif key is not None:
                self._ask[key] = slot
        w[L.H_TABLE] = L.table_word(base, slots.bit_length() - 1)
        self._set_token(odd=False)
        old_base = self._table_area + self._half * self._table_bytes
        self._t.release()
        self._t = table
        self._slots = slots
        self._used_slots = self._live = len(entries)
        self._half = half
        # The old table's pages go back to the system (and read as zeros from now on).
        self._mm.madvise(mmap.MADV_REMOVE, old_base, self._table_bytes)

    def _set_token(self, *, odd: bool) -> None:
        """Publish a new token: the region header first, then the generation page."""
        self._epoch += 1
        self._token = self._nonce << 32 | self._epoch << 1 | odd
        self._w[L.H_TOKEN] = self._token
        self._g[0] = self._token
