"""The compact encodings redis-server 7.0 writes inside an RDB file, decoded (and listpacks,
intsets and LZF written, for DUMP payloads).

Redis keeps small objects in flat blobs and saves them as they are: a list as a quicklist of
*listpacks*, a small hash or sorted set as one listpack, a set of integers as an *intset*; any
string longer than 20 bytes may be LZF-compressed. Blinkstore writes the plain types where
there are some, so it only needs to read these; a stream has no plain type, so its nodes are
written as the listpacks Redis keeps them in. Each decoder raises :class:`FormatError` on a
blob that does not parse, never an ``IndexError`` or a half result.
"""

from __future__ import annotations

import re

__all__ = [
    "FormatError",
    "canonical_int",
    "intset",
    "intset_members",
    "listpack",
    "listpack_entry",
    "listpack_item",
    "listpack_items",
    "lzf_compress",
    "lzf_decompress",
    "rdb_length",
]


class FormatError(ValueError):
    """The bytes are not what the format says (the message says where)."""


def rdb_length(n: int) -> bytes:
    """RDB's length encoding of ``n`` (6, 14, 32 or 64 bits)."""
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return bytes((0x40 | n >> 8, n & 0xFF))
    if n < 1 << 32:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def lzf_decompress(data: bytes, size: int) -> bytes:
    """LZF (liblzf, as Redis uses it) ``data`` back into its ``size`` bytes."""
    out = bytearray()
    i, end = 0, len(data)
    try:
        while i < end:
            ctrl = data[i]
            i += 1
            if ctrl < 32:  # a literal run of ctrl + 1 bytes
                run = ctrl + 1
                if i + run > end:
                    raise FormatError("LZF literal past the end of the data")
                out += data[i : i + run]
                i += run
                continue
            length = ctrl >> 5
            if length == 7:
                length += data[i]
                i += 1
            start = len(out) - ((ctrl & 0x1F) << 8) - data[i] - 1
            i += 1
            length += 2
            if start < 0:
                raise FormatError("LZF back reference before the start of the data")
            if len(out) + length > size:  # before the copy: a payload cannot make it grow
                raise FormatError(f"LZF data holds more than the {size} bytes its header says")
            if start + length <= len(out):
                out += out[start : start + length]
            else:  # the copy overlaps what it writes: byte by byte, as liblzf does
                for k in range(length):
                    out.append(out[start + k])
    except IndexError:
        raise FormatError("LZF data ends inside an instruction") from None
    if len(out) != size:
        raise FormatError(f"LZF data holds {len(out)} bytes, its header says {size}")
    return bytes(out)


# liblzf's compressor as Redis builds it (lzfP.h: HLOG 16, VERY_FAST): its hash of the next
# three bytes picks the table slot, so the same input gives Redis's bytes exactly.
_LZF_MAX_LIT, _LZF_MAX_OFF, _LZF_MAX_REF = 1 << 5, 1 << 13, (1 << 8) + (1 << 3)


def lzf_compress(data: bytes) -> bytes | None:
    """``data`` compressed as Redis's ``lzf_compress`` does into ``len(data) - 4`` bytes, or
    None when it does not fit there (Redis then stores the string as it is). Pure Python:
    about a microsecond a byte."""
    in_end = len(data)
    out_end = in_end - 4
    if in_end < 3 or out_end <= 0:
        return None
    # liblzf's slot depends on the last three bytes only (their 24 bits, ``triple``); each slot
    # keeps the last position hashed there (0: none; position 0 never matches, as in liblzf)
    # and its three bytes, which stand for liblzf's comparison of them.
    positions = [0] * 0x10000
    triples = [-1] * 0x10000
    out = bytearray(out_end + 8)
    ip, op, lit = 0, 1, 0
    triple = data[0] << 8 | data[1]
    last = in_end - 2
    while ip < last:
        triple = (triple << 8 & 0xFFFFFF) | data[ip + 2]
        slot = ((triple >> 8) - triple * 5) & 0xFFFF
        ref = positions[slot]
        seen = triples[slot]
        positions[slot] = ip
        triples[slot] = triple
        off = ip - ref - 1
        if seen == triple and ref > 0 and off < _LZF_MAX_OFF:
            if op + 4 >= out_end and op - (not lit) + 4 >= out_end:
                return None
            out[op - lit - 1] = (lit - 1) & 0xFF  # close the literal run
            op -= not lit
            size = _lzf_match(data, ref, ip, min(in_end - ip - 2, _LZF_MAX_REF)) - 2
            ip += 1
            if size < 7:
                out[op] = (off >> 8) + (size << 5)
                op += 1
            else:
                out[op] = (off >> 8) + (7 << 5)
                out[op + 1] = size - 7
                op += 2
            out[op] = off & 0xFF
            op += 2  # and a new literal run starts
            lit = 0
            ip += size + 1
            if ip >= last:
                break
            ip -= 2  # VERY_FAST: hash the last two positions of the match only
            triple = data[ip] << 8 | data[ip + 1]
            for _ in range(2):
                triple = (triple << 8 & 0xFFFFFF) | data[ip + 2]
                slot = ((triple >> 8) - triple * 5) & 0xFFFF
                positions[slot] = ip
                triples[slot] = triple
                ip += 1
        else:
            if op >= out_end:
                return None
            out[op] = data[ip]
            op += 1
            ip += 1
            lit += 1
            if lit == _LZF_MAX_LIT:
                out[op - 33] = 31
                op += 1
                lit = 0
    if op + 3 > out_end:
        return None
    while ip < in_end:
        out[op] = data[ip]
        op, ip, lit = op + 1, ip + 1, lit + 1
        if lit == _LZF_MAX_LIT:
            out[op - lit - 1] = lit - 1
            op, lit = op + 1, 0
    out[op - lit - 1] = (lit - 1) & 0xFF
    op -= not lit
    return bytes(out[:op])


def _lzf_match(data: bytes, ref: int, ip: int, most: int) -> int:
    """How many bytes from ``ref`` equal those from ``ip`` (3 known), as liblzf counts them:
    past 16 bytes unrolled without the ``most`` bound when ``most`` exceeds 16."""
    size = 2
    if most > 16:
        for _ in range(16):
            size += 1
            if data[ref + size] != data[ip + size]:
                return size
    size += 1
    while size < most and data[ref + size] == data[ip + size]:
        size += 1
    return size


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _backlen_bytes(size: int) -> int:
    """Bytes of the back length that follows a listpack entry of ``size`` bytes."""
    for n, bound in enumerate((128, 16383, 2097151, 268435455), 1):
        if size < bound:
            return n
    return 5


def _backlen(size: int) -> bytes:
    """The back length of an entry of ``size`` bytes: 7 bits a byte, most significant first,
    every byte but the first with its top bit set (read from the end by a reverse walk)."""
    n = _backlen_bytes(size)
    return bytes((size >> 7 * (n - 1 - i)) & 0x7F | (0x80 if i else 0) for i in range(n))


# The smallest of the listpack's integer encodings that holds a value: (low, high, tag, bytes).
_INT_ENCODINGS = (
    (-(1 << 15), (1 << 15) - 1, 0xF1, 2),
    (-(1 << 23), (1 << 23) - 1, 0xF2, 3),
    (-(1 << 31), (1 << 31) - 1, 0xF3, 4),
    (-(1 << 63), (1 << 63) - 1, 0xF4, 8),
)


def _listpack_entry(item: bytes | int) -> bytes:
    if isinstance(item, int):
        if 0 <= item <= 127:
            return bytes((item,))
        if -4096 <= item <= 4095:
            item &= 0x1FFF
            return bytes((0xC0 | item >> 8, item & 0xFF))
        for low, high, tag, width in _INT_ENCODINGS:
            if low <= item <= high:
                return bytes((tag,)) + item.to_bytes(width, "little", signed=True)
        raise ValueError(f"{item} does not fit a listpack integer")
    n = len(item)
    if n < 64:
        return bytes((0x80 | n,)) + item
    if n < 4096:
        return bytes((0xE0 | n >> 8, n & 0xFF)) + item
    return b"\xf0" + n.to_bytes(4, "little") + item


_CANONICAL_INT = re.compile(rb"(?:-?[1-9][0-9]{0,18}|0)\Z")


def canonical_int(data: bytes) -> int | None:
    """``data`` as an integer when Redis's ``string2ll`` reads it and prints it back the same
    (no ``+``, leading zero or ``-0``; 64 bits), else None."""
    if _CANONICAL_INT.match(data) is None:
        return None
    number = int(data)
    return number if -(1 << 63) <= number < 1 << 63 else None


def listpack_item(data: bytes) -> bytes | int:
    """An element as Redis appends it to a listpack: an integer's text as the integer."""
    number = canonical_int(data)
    return data if number is None else number


def listpack_entry(item: bytes | int) -> bytes:
    """One listpack entry (its encoding, then its back length), as :func:`listpack` lays it."""
    entry = _listpack_entry(item)
    return entry + _backlen(len(entry))


def listpack(items: list[bytes | int], entries: list[bytes] | None = None) -> bytes:
    """A listpack of ``items`` (integers in the integer encodings, as Redis writes them);
    ``entries``, when given, are the items already made by :func:`listpack_entry`."""
    body = b"".join(map(listpack_entry, items) if entries is None else entries)
    size = 6 + len(body) + 1
    count = min(len(items), 0xFFFF)  # 0xFFFF: "count them"
    return size.to_bytes(4, "little") + count.to_bytes(2, "little") + body + b"\xff"


def listpack_items(blob: bytes) -> list[bytes]:
    """The elements of a listpack, integers as their decimal text (as Redis returns them)."""
    if len(blob) < 7 or int.from_bytes(blob[:4], "little") != len(blob) or blob[-1] != 0xFF:
        raise FormatError("listpack header does not match its size")
    items: list[bytes] = []
    i, end = 6, len(blob) - 1
    try:
        while i < end:
            b = blob[i]
            if b < 0x80:  # 7-bit unsigned integer
                items.append(str(b).encode())
                size = 1
            elif b < 0xC0:  # string up to 63 bytes
                n = b & 0x3F
                items.append(blob[i + 1 : i + 1 + n])
                size = 1 + n
            elif b < 0xE0:  # 13-bit signed integer
                items.append(str(_signed((b & 0x1F) << 8 | blob[i + 1], 13)).encode())
                size = 2
            elif b < 0xF0:  # string up to 4095 bytes
                n = (b & 0x0F) << 8 | blob[i + 1]
                items.append(blob[i + 2 : i + 2 + n])
                size = 2 + n
            elif b == 0xF0:  # string with a 32-bit length
                n = int.from_bytes(blob[i + 1 : i + 5], "little")
                items.append(blob[i + 5 : i + 5 + n])
                size = 5 + n
            elif 0xF1 <= b <= 0xF4:  # 16, 24, 32, 64-bit signed integers
                width = (2, 3, 4, 8)[b - 0xF1]
                raw = int.from_bytes(blob[i + 1 : i + 1 + width], "little")
                items.append(str(_signed(raw, width * 8)).encode())
                size = 1 + width
            else:
                raise FormatError(f"listpack entry of unknown encoding {b:#x}")
            if i + size > end:
                raise FormatError("listpack entry past the end of the listpack")
            # The entry's back length: 1 byte per 7 bits of its size.
            i += size + _backlen_bytes(size)
    except IndexError:
        raise FormatError("listpack ends inside an entry") from None
    if i != end:
        raise FormatError("listpack entries overrun its end")
    count = int.from_bytes(blob[4:6], "little")
    if count != 0xFFFF and count != len(items):
        raise FormatError(f"listpack holds {len(items)} entries, its header says {count}")
    return items


def intset(members: list[int]) -> bytes:
    """An intset of ``members`` (sorted, in the narrowest of 16, 32 or 64 bits that holds all)."""
    low, high = (min(members), max(members)) if members else (0, 0)
    width = next(w for w in (2, 4, 8) if -(1 << (8 * w - 1)) <= low and high < 1 << (8 * w - 1))
    body = b"".join(n.to_bytes(width, "little", signed=True) for n in sorted(members))
    return width.to_bytes(4, "little") + len(members).to_bytes(4, "little") + body


def intset_members(blob: bytes) -> list[bytes]:
    """The members of an intset, as decimal text."""
    if len(blob) < 8:
        raise FormatError("intset shorter than its header")
    width = int.from_bytes(blob[:4], "little")
    count = int.from_bytes(blob[4:8], "little")
    if width not in (2, 4, 8) or len(blob) != 8 + width * count:
        raise FormatError("intset header does not match its size")
    return [
        str(int.from_bytes(blob[i : i + width], "little", signed=True)).encode()
        for i in range(8, len(blob), width)
    ]
