"""The shared region's layout: one source for the store (writer) and the clients (readers).

Sans-IO like ``protocol/``: constants, offsets and the pure encode/decode helpers both sides
compute identically. Every field is an aligned 8-byte word, read and written through
``memoryview(mmap).cast("Q")``: CPython moves such an item with one 8-byte load or store (an
atomic access on x86-64), where ``struct.pack_into`` may fill a field in several steps.

Two mappings, both sealed memfds (neither side can shrink or grow them), handed over the
store's Unix socket:

* the **region**, which only the store writes; readers get a read-only descriptor and map it
  ``PROT_READ``, so nothing a reader does can reach a value::

    header page    HEADER_WORDS words, below
    table area     two halves of table_bytes each; the live table is in one of them
    data area      blocks: [lengths][slot][checksum][key][value], sizes from block_size()

* the **marks**, the only memory readers write: their counters and SIEVE's visited marks. The
  store reads a mark as a boolean and a counter as a number for ``INFO``, so whatever a reader
  writes there costs at most an eviction decision or a statistic::

    counters       COUNTER_SLOTS x 64 bytes: (hits, misses) that one reader process adds to
    marks          two halves of marks_bytes, one byte per slot of the table half of the same
                   index: nonzero = "read since the store last looked"

Liveness: H_TOKEN is even while the table is stable, odd while the store switches tables, 0
once the store closed the region. H_HEARTBEAT is the store's last tick (CLOCK_MONOTONIC ns);
a reader trusts the region only while it is less than :data:`STALE_NS` old, and a store that
binds the socket after another died waits until that one's heartbeat is that old before it
serves (``shm/generation.py``). So a reader never answers from a dead store's region once a
new store can acknowledge a write.

Table slot (SLOT_WORDS words), open addressing with linear probing and tombstones, so an entry
never moves while its key lives (a rebuild writes a new table and changes the token)::

    META    hash32 << 32 | len(key);  0 empty (ends a probe), TOMBSTONE deleted. The empty key
            (whose META would be 0) is never published: readers find 0 = "ask the store".
    SEQ     even when stable; the writer makes it odd while it changes the slot or its block
    LOC     block offset << LOC_SHIFT | len(value); 0 = "ask the store" (value not inline)
    EXPIRE  absolute wall-clock ms (0: no TTL)

hash32 is keyed per region (:func:`key_hash`), so colliding keys cannot be computed without
the region; a reader still gives up after :data:`MAX_PROBE` slots and asks the store. The
writer puts no key that far from its home: a key that would land there stays out of the table
(the ``MAX_PROBE`` slots a reader looks at are all taken, so it asks the store) until a larger
table has room for it near home.
"""

from __future__ import annotations

import platform
import secrets
import zlib

__all__ = [
    "BLOCK_CHECKSUM",
    "BLOCK_HEADER",
    "BLOCK_LENGTHS",
    "BLOCK_SLOT",
    "COUNTER_BYTES",
    "COUNTER_SLOTS",
    "COUNTER_STRIDE",
    "EXPIRE",
    "FLAG_CHECKSUM",
    "FLAG_PARTIAL",
    "HASH_MIX",
    "HEADER_BYTES",
    "H_DATA",
    "H_DATA_END",
    "H_FLAGS",
    "H_HASH_MUL",
    "H_HASH_PRIME",
    "H_HEARTBEAT",
    "H_MAGIC",
    "H_MARKS_BYTES",
    "H_TABLE",
    "H_TABLE_AREA",
    "H_TABLE_BYTES",
    "H_TOKEN",
    "H_VERSION",
    "H_WRITE_EPOCH",
    "LOC",
    "LOC_SHIFT",
    "MAGIC",
    "MAX_INLINE_VALUE",
    "MAX_PROBE",
    "META",
    "SEQ",
    "SLOT_BYTES",
    "SLOT_WORDS",
    "STALE_NS",
    "TOMBSTONE",
    "VERSION",
    "block_size",
    "checksum_by_default",
    "entry_checksum",
    "hash_secret",
    "key_hash",
    "table_word",
    "unpack_table_word",
]

MAGIC = 0x32304D48534B4C42  # b"BLKSHM02" little-endian
#: 3: key_hash mixes the residue (slots of version 2's hash are not this one's).
VERSION = 3

# Header words.
H_MAGIC = 0
H_VERSION = 1
H_TOKEN = 2  # table generation: even stable, odd switching, 0 closed
H_FLAGS = 3
H_TABLE = 4  # table_word(): live table's byte offset and log2(slots), one word
H_TABLE_AREA = 5  # byte offset of the table area (two halves)
H_TABLE_BYTES = 6  # bytes of one half
H_HEARTBEAT = 7  # the store's last tick, CLOCK_MONOTONIC ns
H_DATA = 8  # byte offset of the data area
H_DATA_END = 9
H_HASH_MUL = 10  # key_hash's secret multiplier
H_HASH_PRIME = 11  # key_hash's secret prime
H_MARKS_BYTES = 12  # bytes of one half of the marks (after the counters, in the marks mapping)
H_WRITE_EPOCH = 13  # odd while the store publishes a multi-key write (MSET, EXEC)
HEADER_BYTES = 4096

FLAG_CHECKSUM = 1
#: The table holds part of the keys (a near cache of an upstream): a miss means "ask the store".
FLAG_PARTIAL = 2

#: A region whose heartbeat is older than this is not read (its store is dead or stuck).
STALE_NS = 500_000_000
#: Slots a reader looks at before it asks the store instead.
MAX_PROBE = 32
#: key_hash's mixing multiplier: odd, 2**64 / golden ratio (any odd constant with its bits
#: spread would do; it is no secret).
HASH_MIX = 0x9E3779B97F4A7C15

# Slot words (relative to the slot's first word).
META = 0
SEQ = 1
LOC = 2
EXPIRE = 3
SLOT_WORDS = 4
SLOT_BYTES = SLOT_WORDS * 8
TOMBSTONE = 2**64 - 1

# Block header words (relative to the block's first word), then the key, then the value.
BLOCK_LENGTHS = 0  # len(key) << 32 | len(value): the store reads its values back by these
BLOCK_SLOT = 1  # the slot that points here (the store's own bookkeeping)
BLOCK_CHECKSUM = 2  # entry_checksum() when FLAG_CHECKSUM is set
BLOCK_HEADER = 24

LOC_SHIFT = 24
MAX_INLINE_VALUE = (1 << LOC_SHIFT) - 1

# One counter slot per reader process (assigned round robin by the store), on its own cache line
# so that two readers never write the same line: word 0 hits, word 1 misses.
COUNTER_SLOTS = 1024
COUNTER_STRIDE = 8
COUNTER_BYTES = COUNTER_SLOTS * COUNTER_STRIDE * 8

_TABLE_LOG_BITS = 6
_MASK32 = 0xFFFFFFFF
_MILLER_RABIN_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)


def _is_prime(n: int) -> bool:
    """Miller-Rabin with the bases that decide every n < 2**64."""
    if n < 2:
        return False
    for p in _MILLER_RABIN_BASES:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while not d & 1:
        d >>= 1
        r += 1
    for a in _MILLER_RABIN_BASES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def hash_secret() -> tuple[int, int]:
    """A fresh ``(multiplier, prime)`` for :func:`key_hash`: a random 62-bit prime p and a
    random multiplier in [1, p)."""
    while True:
        prime = secrets.randbits(61) | 1 << 61 | 1
        if _is_prime(prime):
            return secrets.randbelow(prime - 1) + 1, prime


def key_hash(key: bytes, mul: int, prime: int) -> int:
    """The keyed 32-bit hash both sides compute; a key's home slot is its low bits.

    First the secret residue ``r = int(key) * mul mod prime`` (``int`` little-endian): two
    different keys of n bytes get one r only if the random 62-bit prime divides their
    difference (at most 8n/61 of the ~2**55 candidates), so nobody without the region's secret
    can forge a collision. Then a fixed mix of r, ``(r ^ r >> 31) * MIX``, bits 32-63: the
    residues of a family of keys (``key:000000012345``, ``user:1``...) are a linear function,
    mod the prime, of a few small numbers (their varying bytes), and the low bits of such a
    function, the slot, piled a family onto a few slots for about one secret in a hundred (the
    region's version 2). The shift-xor folds the residue's high bits into its low ones, which
    no linear function does, and the multiply spreads every bit into the slot's.
    """
    r = int.from_bytes(key, "little") * mul % prime
    return (r ^ r >> 31) * HASH_MIX >> 32 & _MASK32


def entry_checksum(key: bytes, value: bytes, expire_at: int) -> int:
    """crc32 over key, value and deadline, without joining them."""
    return zlib.crc32(expire_at.to_bytes(8, "little"), zlib.crc32(value, zlib.crc32(key)))


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
