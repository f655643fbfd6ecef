"""The compact encodings redis-server 7.0 writes inside an RDB file, decoded (never written).

Redis keeps small objects in flat blobs and saves them as they are: a list as a quicklist of
*listpacks*, a small hash or sorted set as one listpack, a set of integers as an *intset*; any
string longer than 20 bytes may be LZF-compressed. Blinkstore writes only the plain types, so it
only needs to read these. Each decoder raises :class:`FormatError` on a blob that does not
parse, never an ``IndexError`` or a half result.
"""

from __future__ import annotations

__all__ = ["FormatError", "intset_members", "listpack_items", "lzf_decompress"]


class FormatError(ValueError):
    """The bytes are not what the format says (the message says where)."""


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


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _backlen_bytes(size: int) -> int:
    """Bytes of the back length that follows a listpack entry of ``size`` bytes."""
    for n, bound in enumerate((128, 16383, 2097151, 268435455), 1):
        if size < bound:
            return n
    return 5


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
