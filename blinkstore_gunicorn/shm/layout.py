"""The shared region's layout: one source for the store (writer) and the clients (readers).

Sans-IO like ``protocol/``: constants, offsets and the pure encode/decode helpers both sides
compute identically. Every field is an aligned 8-byte word, read and written through
``memoryview(mmap).cast("Q")``: CPython moves such an item with one 8-byte load or store (an
atomic access on x86-64), where ``struct.pack_into`` may fill a field in several steps.

Region (a memfd the store hands over its Unix socket)::

    header page    HEADER_WORDS words, below
    counters       COUNTER_SLOTS x 64 bytes: (hits, misses) that one reader process adds to
    table area     two halves of table_bytes each; the live table is in one of them
    data area      blocks: [visited][slot][checksum][key][value], sizes from block_size()

Generation page (a 0600 file next to the socket, or a memfd when there is no socket path): word
0 is the *token* of the store that owns the region. A reader compares it before and after every
read; a new store writes its own token into the same file before it serves, so a reader stops
trusting the old region the moment the new store can acknowledge a write. An odd token (or 0)
means "do not read": a table switch is in progress, or the store is gone.

Table slot (SLOT_WORDS words), open addressing with linear probing and tombstones, so an entry
never moves while its key lives (a rebuild writes a new table and changes the token)::

    META    hash32 << 32 | len(key);  0 empty (ends a probe), TOMBSTONE deleted. The empty key
            (whose META would be 0) is never published: readers find 0 = "ask the store".
    SEQ     even when stable; the writer makes it odd while it changes the slot or its block
    LOC     block offset << LOC_SHIFT | len(value); 0 = "ask the store" (value not inline)
    EXPIRE  absolute wall-clock ms (0: no TTL)
"""

from __future__ import annotations

import platform
import zlib

__all__ = [
    "BLOCK_CHECKSUM",
    "BLOCK_HEADER",
    "BLOCK_SLOT",
    "BLOCK_VISITED",
    "COUNTER_SLOTS",
    "COUNTER_STRIDE",
    "EXPIRE",
    "FLAG_CHECKSUM",
    "HEADER_BYTES",
    "H_COUNTERS",
    "H_DATA",
    "H_DATA_END",
    "H_FLAGS",
    "H_MAGIC",
    "H_TABLE",
    "H_TABLE_AREA",
    "H_TABLE_BYTES",
    "H_TOKEN",
    "H_VERSION",
    "LOC",
    "LOC_SHIFT",
    "MAGIC",
    "MAX_INLINE_VALUE",
    "META",
    "SEQ",
    "SLOT_BYTES",
    "SLOT_WORDS",
    "TOMBSTONE",
    "VERSION",
    "block_size",
    "checksum_by_default",
    "entry_checksum",
    "key_hash",
    "meta_word",
    "table_word",
    "unpack_table_word",
]

MAGIC = 0x31304D48534B4C42  # b"BLKSHM01" little-endian
VERSION = 1

# Header words.
H_MAGIC = 0
H_VERSION = 1
H_TOKEN = 2  # the owning store's token (see the generation page)
H_FLAGS = 3
H_TABLE = 4  # table_word(): live table's byte offset and log2(slots), one word
H_TABLE_AREA = 5  # byte offset of the table area (two halves)
H_TABLE_BYTES = 6  # bytes of one half
H_COUNTERS = 7  # byte offset of the reader counters
H_DATA = 8  # byte offset of the data area
H_DATA_END = 9
HEADER_BYTES = 4096

FLAG_CHECKSUM = 1

# Slot words (relative to the slot's first word).
META = 0
SEQ = 1
LOC = 2
EXPIRE = 3
SLOT_WORDS = 4
SLOT_BYTES = SLOT_WORDS * 8
TOMBSTONE = 2**64 - 1

# Block header words (relative to the block's first word), then the key, then the value.
BLOCK_VISITED = 0  # SIEVE's visited mark: readers set it, the store clears it
BLOCK_SLOT = 1  # the slot that points here (the store's own bookkeeping)
BLOCK_CHECKSUM = 2  # crc32(key + value) when FLAG_CHECKSUM is set
BLOCK_HEADER = 24

LOC_SHIFT = 24
MAX_INLINE_VALUE = (1 << LOC_SHIFT) - 1

# One counter slot per reader process (assigned round robin by the store), on its own cache line
# so that two readers never write the same line: word 0 hits, word 1 misses.
COUNTER_SLOTS = 1024
COUNTER_STRIDE = 8

_TABLE_LOG_BITS = 6


def key_hash(key: bytes) -> int:
    """The 32-bit hash both sides compute (``hash()`` is randomized per process)."""
    return zlib.crc32(key)


def meta_word(key: bytes) -> int:
    """The META word of ``key``'s slot: 0 only for the empty key, never TOMBSTONE."""
    return zlib.crc32(key) << 32 | len(key)


def entry_checksum(key: bytes, value: bytes) -> int:
    """crc32(key + value), without joining them."""
    return zlib.crc32(value, zlib.crc32(key))


def table_word(offset: int, log2_slots: int) -> int:
    """Pack a table's byte offset (page aligned) and size into the one H_TABLE word."""
    return offset | log2_slots


def unpack_table_word(word: int) -> tuple[int, int]:
    """``(byte offset, number of slots)`` of the table an H_TABLE word names."""
    return word & ~((1 << _TABLE_LOG_BITS) - 1), 1 << (word & ((1 << _TABLE_LOG_BITS) - 1))


def block_size(n: int) -> int:
    """The block that holds ``n`` bytes: 16-byte steps up to 256, then 16 sizes per doubling.

    So a block wastes at most 1/16 of its size, and freed blocks of a size are reused by the
    next entry of about the same size.
    """
    if n <= 256:
        return (n + 15) & ~15
    step = 1 << (n.bit_length() - 5)
    return (n + step - 1) & -step


def checksum_by_default() -> bool:
    """Whether readers need the checksum: off only where the memory order is x86-64's (TSO).

    A weaker order (ARM, POWER) may let a reader see a slot's new sequence number with the old
    bytes, which the sequence check alone does not catch.
    """
    return platform.machine().lower() not in ("x86_64", "amd64")
