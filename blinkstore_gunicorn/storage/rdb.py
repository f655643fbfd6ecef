"""Redis's RDB file format (version 10, as redis-server 7.0 writes it): records in, bytes out,
and back. Sans-IO: the writer appends to a binary file object, the reader parses a buffer.

Why RDB rather than a format of our own: redis-server 7.0 loads a blinkstore snapshot and
blinkstore loads redis-server's ``dump.rdb``, so moving a cache between the two is a file copy,
and ``redis-check-rdb`` or any RDB tool can read our files.

What blinkstore writes: the plain types (string 0, list 1, set 2, hash 4, sorted set 5 with
binary scores) and streams as Redis 7.0 does (19, listpack nodes: ``rdbstream``), lengths and
strings uncompressed, deadlines as ``EXPIRETIME_MS``. Before the
end marker it adds two auxiliary fields redis-server ignores: ``blinkstore-keys`` (the number of
keys) and ``blinkstore-crc32`` (zlib's CRC-32 of every byte before that field). The CRC-64
trailer is written as 0, which Redis reads as "checksum disabled": CRC-64 has no C
implementation in the standard library, and in Python it costs ~70 ns a byte (over a minute
for 1 GB), while zlib's CRC-32 runs at memory speed. A Redis file's CRC-64 is checked when it
has one.

What the reader takes: every encoding redis-server 7.0 writes for strings, lists, sets, hashes
sorted sets and streams (integer-encoded and LZF-compressed strings, quicklist 2 of listpacks
or plain nodes, intsets, listpack hashes and sorted sets, the plain types, streams of Redis 5
to 7.0 without consumer groups). A file that holds anything else (consumer groups, modules,
functions, a database other than 0, the ziplist encodings of Redis before 7.0, a version after
10) is refused whole with a :class:`FormatError` saying what.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import BinaryIO, NamedTuple, cast

from blinkstore_gunicorn.storage.encodings import (
    FormatError,
    intset_members,
    listpack_items,
    lzf_decompress,
    rdb_length,
)
from blinkstore_gunicorn.storage.rdbstream import T_STREAM, T_STREAM_2, StreamValue, dump, load

__all__ = [
    "RDB_VERSION",
    "FormatError",
    "Parsed",
    "Record",
    "Value",
    "crc64",
    "encode_value",
    "parse",
    "read_value",
    "write",
]

RDB_VERSION = 10
MAGIC = b"REDIS"
# Value types (Redis's rdb.h) and the opcodes between them.
T_STRING, T_LIST, T_SET, T_ZSET, T_HASH, T_ZSET_2 = 0, 1, 2, 3, 4, 5
T_SET_INTSET, T_HASH_LISTPACK, T_ZSET_LISTPACK, T_LIST_QUICKLIST_2 = 11, 16, 17, 18
OP_FUNCTION2, OP_MODULE_AUX, OP_IDLE, OP_FREQ = 0xF5, 0xF7, 0xF8, 0xF9
OP_AUX, OP_RESIZEDB, OP_EXPIRETIME_MS, OP_EXPIRETIME, OP_SELECTDB, OP_EOF = range(0xFA, 0x100)
_UNSUPPORTED = {
    6: "a module value",
    7: "a module value",
    9: "a zipmap hash (Redis 2.4)",
    10: "a ziplist list (Redis before 7.0)",
    12: "a ziplist sorted set (Redis before 7.0)",
    13: "a ziplist hash (Redis before 7.0)",
    14: "a quicklist of ziplists (Redis before 7.0)",
    20: "a listpack set (Redis 7.2)",
    21: "a stream of Redis 7.2",
}
KEYS_FIELD = b"blinkstore-keys"
CRC_FIELD = b"blinkstore-crc32"
_FLUSH = 1 << 20

#: A string's bytes; a list's items; a set's members; a hash's (field, value) pairs; a sorted
#: set's (member, score) pairs; a stream's entries.
Value = (
    bytes
    | list[bytes]
    | set[bytes]
    | list[tuple[bytes, bytes]]
    | list[tuple[bytes, float]]
    | StreamValue
)


class Record(NamedTuple):
    """One key: its Redis type name, its value and its deadline (absolute ms, None: none)."""

    key: bytes
    kind: bytes
    value: Value
    expire_at: int | None


class Parsed(NamedTuple):
    """A whole file's keys (expired ones left out), its auxiliary fields, how many expired, and
    its function libraries (each one's code, as ``FUNCTION LOAD`` took it)."""

    records: list[Record]
    aux: dict[bytes, bytes]
    expired: int
    functions: tuple[bytes, ...] = ()


# --- writing --------------------------------------------------------------------------------


def _string(data: bytes) -> bytes:
    return rdb_length(len(data)) + data


# A string record's type byte (0) and key length below 64; a length below 64.
_STRING_KEY = [bytes((T_STRING, n)) for n in range(0x40)]
_SMALL_LENGTHS = [bytes((n,)) for n in range(0x40)]
_EXPIRE_OP = bytes((OP_EXPIRETIME_MS,))
_TYPE_OF = {
    b"string": T_STRING,
    b"list": T_LIST,
    b"set": T_SET,
    b"hash": T_HASH,
    b"zset": T_ZSET_2,
    b"stream": T_STREAM_2,
}


def encode_value(
    kind: bytes, value: Value, string: Callable[[bytes], bytes] = _string
) -> tuple[int, bytes]:
    """A value in one of the plain types (or a stream): its RDB type byte and its bytes, each
    string written by ``string`` (uncompressed by default; DUMP passes Redis's encoder)."""
    if isinstance(value, bytes):
        return T_STRING, string(value)
    if isinstance(value, StreamValue):
        return T_STREAM_2, dump(value, string)
    parts = [rdb_length(len(value))]
    if kind == b"hash":
        for field, text in cast("list[tuple[bytes, bytes]]", value):
            parts += (string(field), string(text))
    elif kind == b"zset":
        for member, score in cast("list[tuple[bytes, float]]", value):
            parts += (string(member), struct.pack("<d", score))
    else:
        parts.extend(string(item) for item in cast("Iterable[bytes]", value))
    return _TYPE_OF[kind], b"".join(parts)


def write(
    out: BinaryIO,
    records: Iterable[Record],
    aux: dict[bytes, bytes],
    keys_hint: int = 0,
    functions: Iterable[bytes] = (),
) -> int:
    """Write an RDB file of ``records`` (with the auxiliary fields ``aux`` and the function
    libraries ``functions``, as Redis writes them) to ``out``; return the number of keys
    written. Deadlines are written as given: the caller leaves out expired keys."""
    crc = 0
    buf = bytearray(MAGIC + b"%04d" % RDB_VERSION)
    for name, text in aux.items():
        buf += bytes((OP_AUX,)) + _string(name) + _string(text)
    for code in functions:
        buf += bytes((OP_FUNCTION2,)) + _string(code)
    buf += bytes((OP_SELECTDB, 0, OP_RESIZEDB)) + rdb_length(keys_hint) + rdb_length(0)
    keys = 0
    small, string_key = _SMALL_LENGTHS, _STRING_KEY
    for key, kind, value, expire_at in records:
        if expire_at is not None:
            buf += _EXPIRE_OP
            buf += expire_at.to_bytes(8, "little")
        if value.__class__ is bytes and len(key) < 0x40:  # a string: the common case inline
            buf += string_key[len(key)]
            buf += key
            buf += small[len(value)] if len(value) < 0x40 else rdb_length(len(value))
            buf += value
        else:
            kind_byte, encoded = encode_value(kind, value)
            buf.append(kind_byte)
            buf += _string(key)
            buf += encoded
        keys += 1
        if len(buf) >= _FLUSH:
            out.write(buf)
            crc = zlib.crc32(buf, crc)
            buf.clear()
    buf += bytes((OP_AUX,)) + _string(KEYS_FIELD) + _string(b"%d" % keys)
    crc = zlib.crc32(buf, crc)
    buf += bytes((OP_AUX,)) + _string(CRC_FIELD) + _string(b"%d" % crc)
    buf += bytes((OP_EOF,)) + bytes(8)  # CRC-64 0: "checksum disabled" for Redis
    out.write(buf)
    return keys


# --- reading --------------------------------------------------------------------------------

_CRC64_TABLE: list[int] = []


def crc64(data: bytes | memoryview, crc: int = 0) -> int:
    """Redis's CRC-64 (Jones polynomial, reflected); pure Python, ~70 ns a byte."""
    table = _CRC64_TABLE
    if not table:
        for n in range(256):
            c = n
            for _ in range(8):
                c = (c >> 1) ^ 0x95AC9329AC4BC9B5 if c & 1 else c >> 1
            table.append(c)
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


class _Cursor:
    """Reads RDB items from a buffer; every read past its end is a :class:`FormatError`."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def take(self, n: int) -> bytes:
        start = self.pos
        if start + n > self.end:
            raise FormatError(f"truncated: {n} bytes wanted at offset {start}, the file ends")
        self.pos = start + n
        return bytes(self.data[start : start + n])

    def byte(self) -> int:
        if self.pos >= self.end:
            raise FormatError(f"truncated: the file ends at offset {self.pos}")
        self.pos += 1
        return self.data[self.pos - 1]

    def length(self) -> tuple[int, bool]:
        """A length, or (the special encoding's number, True) for an encoded string."""
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first, False
        if kind == 1:
            return (first & 0x3F) << 8 | self.byte(), False
        if kind == 3:
            return first & 0x3F, True
        if first == 0x80:
            return int.from_bytes(self.take(4), "big"), False
        if first == 0x81:
            return int.from_bytes(self.take(8), "big"), False
        raise FormatError(f"unknown length encoding {first:#x} at offset {self.pos - 1}")

    def count(self) -> int:
        n, special = self.length()
        if special:
            raise FormatError(f"an encoded string where a length belongs (offset {self.pos})")
        return n

    def string(self) -> bytes:
        # The common case inline (a length below 16384): most strings in a file are short.
        data, pos = self.data, self.pos
        if pos + 2 <= self.end:
            first = data[pos]
            if first < 0x80:
                start = pos + 1 if first < 0x40 else pos + 2
                n = first if first < 0x40 else (first & 0x3F) << 8 | data[pos + 1]
                if start + n <= self.end:
                    self.pos = start + n
                    return bytes(data[start : start + n])
        n, special = self.length()
        if not special:
            return self.take(n)
        if n < 3:  # an integer of 1, 2 or 4 bytes, as its decimal text
            return str(int.from_bytes(self.take(1 << n), "little", signed=True)).encode()
        if n == 3:
            compressed, size = self.count(), self.count()
            return lzf_decompress(self.take(compressed), size)
        raise FormatError(f"unknown string encoding {n} at offset {self.pos}")

    def value(self, kind: int) -> tuple[bytes, Value]:
        if kind == T_STRING:
            return b"string", self.string()
        if kind == T_LIST:
            return b"list", [self.string() for _ in range(self.count())]
        if kind == T_LIST_QUICKLIST_2:
            items: list[bytes] = []
            for _ in range(self.count()):
                container = self.count()
                blob = self.string()
                items.extend([blob] if container == 1 else listpack_items(blob))
            return b"list", items
        if kind == T_SET:
            return b"set", {self.string() for _ in range(self.count())}
        if kind == T_SET_INTSET:
            return b"set", set(intset_members(self.string()))
        if kind == T_HASH:
            return b"hash", [(self.string(), self.string()) for _ in range(self.count())]
        if kind == T_HASH_LISTPACK:
            flat = listpack_items(self.string())
            return b"hash", list(_pairs(flat))
        if kind == T_ZSET_2:
            pairs = [(self.string(), self._double()) for _ in range(self.count())]
            return b"zset", pairs
        if kind == T_ZSET:
            return b"zset", [(self.string(), self._text_score()) for _ in range(self.count())]
        if kind == T_ZSET_LISTPACK:
            flat = listpack_items(self.string())
            return b"zset", [(member, _score(score)) for member, score in _pairs(flat)]
        if kind in (T_STREAM, T_STREAM_2):
            return b"stream", load(self, kind)
        what = _UNSUPPORTED.get(kind, f"a value of unknown type {kind}")
        raise FormatError(f"holds {what}, which blinkstore cannot load")

    def _double(self) -> float:
        score: float = struct.unpack("<d", self.take(8))[0]
        if math.isnan(score):
            raise FormatError("a sorted-set score is NaN")
        return score

    def _text_score(self) -> float:
        n = self.byte()
        if n >= 253:
            if n == 253:
                raise FormatError("a sorted-set score is NaN")
            return float("inf") if n == 254 else float("-inf")
        return _score(self.take(n))


def _score(text: bytes) -> float:
    try:
        score = float(text)
    except ValueError:
        raise FormatError(f"sorted-set score {text[:40]!r} is not a number") from None
    if math.isnan(score):
        raise FormatError("a sorted-set score is NaN")
    return score


def _pairs(flat: list[bytes]) -> zip[tuple[bytes, bytes]]:
    """A listpack's (field, value) pairs; an odd count is a corrupted blob."""
    if len(flat) % 2:
        raise FormatError("a listpack of pairs holds an odd number of entries")
    return zip(flat[::2], flat[1::2], strict=True)


def _number(text: bytes) -> int:
    if not text.isdigit():
        raise FormatError(f"auxiliary field {text[:40]!r} is not a number: the file is corrupted")
    return int(text)


def read_value(data: bytes, kind: int) -> tuple[bytes, Value, int]:
    """The value of RDB type ``kind`` at the start of ``data``: its Redis type name, the value,
    and how many bytes it took. Raises :class:`FormatError` for anything this reader cannot
    load."""
    cursor = _Cursor(data)
    name, value = cursor.value(kind)
    return name, value, cursor.pos


def _check_crc32_first(data: bytes | memoryview) -> None:
    """Check a blinkstore file's CRC-32 (its last field) before parsing, so that a corrupted
    length is reported as corruption, not as the truncation it would look like."""
    marker = bytes((OP_AUX,)) + _string(CRC_FIELD)
    tail = max(0, len(data) - 64)
    at = bytes(data[tail:]).rfind(marker)
    if at < 0:
        return
    cursor = _Cursor(data)
    cursor.pos = tail + at + len(marker)
    try:
        value = cursor.string()
        end = cursor.take(9)
    except FormatError:
        return
    complete = end[0] == OP_EOF and cursor.pos == cursor.end and value.isdigit()
    if complete and zlib.crc32(memoryview(data)[: tail + at]) != int(value):
        raise FormatError("CRC-32 mismatch: the file is corrupted")


def parse(data: bytes | memoryview, now_ms: int) -> Parsed:
    """Every key of a whole RDB file, those with a deadline at or before ``now_ms`` left out.

    Raises :class:`FormatError` (naming the reason) for anything but a complete, intact file
    this reader can load: nothing is returned from a file that fails anywhere.
    """
    cursor = _Cursor(data)
    header = cursor.take(9)
    if header[:5] != MAGIC or not header[5:].isdigit():
        raise FormatError("not an RDB file (no REDIS header)")
    version = int(header[5:])
    if not 1 <= version <= RDB_VERSION:
        raise FormatError(f"RDB version {version}; this reader takes 1 to {RDB_VERSION}")
    _check_crc32_first(data)
    records: list[Record] = []
    aux: dict[bytes, bytes] = {}
    functions: list[bytes] = []
    crc_at = -1
    expired = 0
    expire_at: int | None = None
    while True:
        op = cursor.byte()
        if op < OP_FUNCTION2:  # a key and its value: the common case first
            key = cursor.string()
            kind, value = cursor.value(op)
            if expire_at is not None and expire_at <= now_ms:
                expired += 1
            else:
                records.append(Record(key, kind, value, expire_at))
            expire_at = None
        elif op == OP_EOF:
            break
        elif op == OP_FUNCTION2:
            functions.append(cursor.string())
        elif op == OP_AUX:
            start = cursor.pos - 1
            name = cursor.string()
            aux[name] = cursor.string()
            if name == CRC_FIELD:
                crc_at = start
        elif op == OP_SELECTDB:
            db = cursor.count()
            if db != 0:
                raise FormatError(f"holds keys in database {db}; blinkstore has database 0 only")
        elif op == OP_RESIZEDB:
            cursor.count()
            cursor.count()
        elif op == OP_EXPIRETIME_MS:
            expire_at = int.from_bytes(cursor.take(8), "little")
        elif op == OP_EXPIRETIME:
            expire_at = int.from_bytes(cursor.take(4), "little") * 1000
        elif op == OP_FREQ:
            cursor.byte()
        elif op == OP_IDLE:
            cursor.count()
        else:
            raise FormatError(
                "holds Redis module data or functions of Redis 7.0's release candidates, which"
                " blinkstore cannot load"
            )
    body_end = cursor.pos
    checksum = int.from_bytes(cursor.take(8), "little") if version >= 5 else 0
    if cursor.pos != cursor.end:
        raise FormatError(f"{cursor.end - cursor.pos} bytes after the end marker")
    if KEYS_FIELD in aux and crc_at < 0:
        raise FormatError("a blinkstore file without its CRC-32: the file is corrupted")
    if crc_at >= 0 and zlib.crc32(memoryview(data)[:crc_at]) != _number(aux[CRC_FIELD]):
        raise FormatError("CRC-32 mismatch: the file is corrupted")
    if checksum and crc64(data[:body_end]) != checksum:
        raise FormatError("CRC-64 mismatch: the file is corrupted")
    if KEYS_FIELD in aux and _number(aux[KEYS_FIELD]) != len(records) + expired:
        raise FormatError("holds fewer keys than it says")
    return Parsed(records, aux, expired, tuple(functions))
