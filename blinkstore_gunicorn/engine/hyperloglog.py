"""HyperLogLog (Redis's hyperloglog.c): the same hash, registers, sparse and dense layouts and
estimator as Redis 7.0, so that PFCOUNT gives Redis's count and the string holding an HLL is
byte for byte the one redis-server would hold (GET, DUMP, snapshots move between the two).

An HLL is a string: a 16-byte header (``HYLL``, the encoding, 3 unused bytes, the cached
cardinality, little-endian, its top bit set while the cache is stale) and then 16384 registers
of 6 bits. *Dense*: the registers packed, least significant bits first (12288 bytes). *Sparse*
(every HLL starts so): runs of opcodes, ``00xxxxxx`` xxxxxx+1 zero registers, ``01xxxxxx
yyyyyyyy`` up to 16384 zero registers, ``1vvvvvxx`` xx+1 registers of value vvvvv+1. A sparse
HLL turns dense when a register exceeds 32 or the string would pass 3000 bytes (Redis's
``hll-sparse-max-bytes``, which ``CONFIG SET`` changes). Each update edits the opcodes exactly
as Redis does (split, then merge equal neighbours), since the bytes, not only the count, must
match.

Pure Python: adding an element costs a few microseconds; counting a dense HLL reads all its
registers (~2 ms), which the cached cardinality saves while nothing changes.
"""

from __future__ import annotations

import math
import struct

__all__ = [
    "CorruptHLL",
    "HyperLogLog",
    "cached_count",
    "count_registers",
    "is_hll",
    "murmur64a",
    "sparse_op",
]

P, Q, REGISTERS = 14, 50, 1 << 14
HEADER = 16
DENSE_SIZE = HEADER + REGISTERS * 6 // 8
DENSE, SPARSE = 0, 1
SPARSE_MAX_BYTES = 3000
_VAL_MAX, _VAL_MAX_RUN, _ZERO_MAX_RUN = 32, 4, 64
_ALPHA_INF = 0.721347520444481703680  # 0.5 / ln(2)
_M64 = (1 << 64) - 1
_MURMUR_M, _MURMUR_SEED = 0xC6A4A7935BD1E995, 0xADC83B19
_EMPTY_SPARSE = b"HYLL\x01\x00\x00\x00" + bytes(8) + b"\x7f\xff"  # one XZERO of 16384


class CorruptHLL(Exception):
    """The HLL's registers do not add up (Redis's ``INVALIDOBJ``)."""


def murmur64a(data: bytes, seed: int = _MURMUR_SEED) -> int:
    """MurmurHash64A, the 64-bit hash Redis gives each element (little-endian reads)."""
    m = _MURMUR_M
    h = (seed ^ (len(data) * m)) & _M64
    tail = len(data) & ~7
    for (word,) in struct.iter_unpack("<Q", data[:tail]):
        k = (word * m) & _M64
        k ^= k >> 47
        k = (k * m) & _M64
        h = ((h ^ k) * m) & _M64
    rest = data[tail:]
    if rest:
        h = ((h ^ int.from_bytes(rest, "little")) * m) & _M64
    h ^= h >> 47
    h = (h * m) & _M64
    return h ^ (h >> 47)


def _pattern(element: bytes) -> tuple[int, int]:
    """The element's register and its run of zero bits plus one (1..Q+1)."""
    hashed = murmur64a(element)
    rest = (hashed >> P) | (1 << Q)
    return hashed & (REGISTERS - 1), (rest & -rest).bit_length()


def is_hll(value: bytes) -> bool:
    """Whether a string is an HLL Redis would accept (header, encoding, dense size)."""
    if len(value) < HEADER or value[:4] != b"HYLL" or value[4] > SPARSE:
        return False
    return value[4] == SPARSE or len(value) == DENSE_SIZE


def cached_count(value: bytes | bytearray) -> int | None:
    """An HLL string's cached cardinality, None while stale (read without a copy)."""
    return None if value[15] & 0x80 else int.from_bytes(value[8:16], "little")


def _val(value: int, run: int) -> int:
    return 0x80 | (value - 1) << 2 | (run - 1)


def _zeros(run: int) -> bytes:
    """The opcode for ``run`` zero registers (XZERO past 64)."""
    if run > _ZERO_MAX_RUN:
        return bytes((0x40 | (run - 1) >> 8, (run - 1) & 0xFF))
    return bytes((run - 1,))


def sparse_op(data: bytearray | bytes, at: int) -> tuple[int, int, int]:
    """The sparse opcode at ``at``: (its length in bytes, registers covered, value; 0 for
    zeros)."""
    byte = data[at]
    if byte & 0x80:
        return 1, (byte & 3) + 1, ((byte >> 2) & 0x1F) + 1
    if byte & 0x40:
        low = data[at + 1] if at + 1 < len(data) else 0
        return 2, ((byte & 0x3F) << 8 | low) + 1, 0
    return 1, (byte & 0x3F) + 1, 0


def _sparse_runs(data: bytes | bytearray) -> list[tuple[int, int]]:
    """A sparse HLL's (run, value) pairs, in register order."""
    runs = []
    at, end = HEADER, len(data)
    while at < end:
        size, run, value = sparse_op(data, at)
        runs.append((run, value))
        at += size
    return runs


def count_registers(registers: list[int] | bytearray) -> int:
    """Redis's estimate (Ertl's improved estimator) from the registers' values."""
    histogram = [0] * 64
    for value in registers:
        histogram[value] += 1
    return _estimate(histogram)


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        before = z
        z += x * y
        y += y
        if before == z:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1 - x
    while True:
        x = math.sqrt(x)
        before = z
        y *= 0.5
        z -= (1 - x) * (1 - x) * y
        if before == z:
            return z / 3


def _estimate(histogram: list[int]) -> int:
    m = float(REGISTERS)
    z = m * _tau((m - histogram[Q + 1]) / m)
    for j in range(Q, 0, -1):
        z += histogram[j]
        z *= 0.5
    z += m * _sigma(histogram[0] / m)
    estimate = _ALPHA_INF * m * m / z
    whole = math.floor(estimate)
    return int(whole) + (1 if estimate - whole >= 0.5 else 0)  # llroundl: halves away from 0


class HyperLogLog:
    """One HLL string being read or changed in place (``data``); a sparse one turns dense
    rather than grow past ``sparse_max_bytes`` (Redis's ``hll-sparse-max-bytes``)."""

    __slots__ = ("data", "sparse_max_bytes")

    def __init__(self, data: bytes | None = None, sparse_max_bytes: int = SPARSE_MAX_BYTES) -> None:
        self.data = bytearray(_EMPTY_SPARSE if data is None else data)
        self.sparse_max_bytes = sparse_max_bytes

    @property
    def dense(self) -> bool:
        return self.data[4] == DENSE

    def invalidate(self) -> None:
        """Mark the cached cardinality stale."""
        self.data[15] |= 0x80

    def cached(self) -> int | None:
        """The cached cardinality, None while stale."""
        return cached_count(self.data)

    def registers(self) -> list[int]:
        """Every register's value. Raises :class:`CorruptHLL` for sparse runs that do not
        cover exactly the 16384 registers."""
        data = self.data
        values: list[int] = []
        if self.dense:
            for at in range(HEADER, DENSE_SIZE, 3):
                b0, b1, b2 = data[at], data[at + 1], data[at + 2]
                values += (b0 & 63, (b0 >> 6 | b1 << 2) & 63, (b1 >> 4 | b2 << 4) & 63, b2 >> 2)
            return values
        for run, value in _sparse_runs(data):
            values += [value] * run
        if len(values) != REGISTERS:
            raise CorruptHLL
        return values

    def count(self) -> int:
        """The cardinality, computed (not the cache)."""
        data = self.data
        if self.dense:
            return count_registers(self.registers())
        histogram = [0] * 64
        covered = 0
        for run, value in _sparse_runs(data):
            histogram[value] += run
            covered += run
        if covered != REGISTERS:
            raise CorruptHLL
        return _estimate(histogram)

    def set_cache(self, cardinality: int) -> None:
        self.data[8:16] = cardinality.to_bytes(8, "little")

    def add(self, element: bytes) -> int:
        """Add an element: 1 when a register changed, else 0."""
        return self.set(*_pattern(element))

    def set(self, index: int, count: int) -> int:
        """Raise register ``index`` to ``count``: 1 when it changed, else 0."""
        if self.dense:
            return self._dense_set(index, count)
        if count > _VAL_MAX:
            return self._promote(index, count)
        return self._sparse_set(index, count)

    def _dense_set(self, index: int, count: int) -> int:
        data = self.data
        at, shift = HEADER + index * 6 // 8, index * 6 & 7
        low = data[at + 1] if shift > 2 else 0
        if ((data[at] >> shift | low << (8 - shift)) & 63) >= count:
            return 0
        data[at] = data[at] & ~(63 << shift) & 0xFF | (count << shift) & 0xFF
        if shift > 2:  # the register spills into the next byte
            data[at + 1] = data[at + 1] & ~(63 >> (8 - shift)) & 0xFF | count >> (8 - shift)
        return 1

    def to_dense(self) -> None:
        """Turn a sparse HLL dense (header and cache kept), as Redis does past its limits."""
        if self.dense:
            return
        values = self.registers()
        dense = bytearray(DENSE_SIZE)
        dense[:HEADER] = self.data[:HEADER]
        dense[4] = DENSE
        for at, first in zip(range(HEADER, DENSE_SIZE, 3), range(0, REGISTERS, 4), strict=True):
            r0, r1, r2, r3 = values[first : first + 4]
            dense[at : at + 3] = bytes(
                (r0 | (r1 << 6) & 0xFF, r1 >> 2 | (r2 << 4) & 0xFF, r2 >> 4 | r3 << 2)
            )
        self.data = dense

    def _promote(self, index: int, count: int) -> int:
        self.to_dense()
        return self._dense_set(index, count)

    def _sparse_set(self, index: int, count: int) -> int:
        data = self.data
        at, end, first, previous = HEADER, len(data), 0, -1
        size = run = value = 0
        while at < end:
            size, run, value = sparse_op(data, at)
            if index <= first + run - 1:
                break
            previous, at, first = at, at + size, first + run
        if at >= end:
            raise CorruptHLL
        is_val = data[at] & 0x80
        if is_val and value >= count:
            return 0
        if run == 1 and (is_val or size == 1):  # a register of its own: rewrite the opcode
            data[at] = _val(count, 1)
        else:
            last = first + run - 1
            sequence = bytearray()
            if is_val:
                if index != first:
                    sequence.append(_val(value, index - first))
                sequence.append(_val(count, 1))
                if index != last:
                    sequence.append(_val(value, last - index))
            else:
                if index != first:
                    sequence += _zeros(index - first)
                sequence.append(_val(count, 1))
                if index != last:
                    sequence += _zeros(last - index)
            growth = len(sequence) - size
            if growth > 0 and len(data) + growth > self.sparse_max_bytes:
                return self._promote(index, count)
            data[at : at + size] = sequence
        self._merge_from(previous if previous >= 0 else HEADER)
        self.invalidate()
        return 1

    def _merge_from(self, at: int) -> None:
        """Join adjacent value runs of the same value (up to 5 opcodes on, as Redis scans)."""
        data = self.data
        for _ in range(5):
            if at >= len(data):
                return
            byte = data[at]
            if not byte & 0x80:
                at += 2 if byte & 0x40 else 1
                continue
            if at + 1 < len(data) and data[at + 1] & 0x80:
                _, run1, value1 = sparse_op(data, at)
                _, run2, value2 = sparse_op(data, at + 1)
                if value1 == value2 and run1 + run2 <= _VAL_MAX_RUN:
                    data[at + 1] = _val(value1, run1 + run2)
                    del data[at]
                    continue
            at += 1
