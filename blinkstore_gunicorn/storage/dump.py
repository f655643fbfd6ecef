"""DUMP payloads, as redis-server 7.0 makes and checks them (its ``createDumpPayload`` and
``verifyDumpPayload``): one RDB value, the RDB version (2 bytes, little-endian) and the CRC-64
of all before it (8 bytes, little-endian).

The value is written the way Redis 7.0 keeps it, so that a payload equals redis-server's for the
same data: each string with Redis's RDB string encoder (integers of up to 32 bits as integers,
strings over 20 bytes LZF-compressed when that saves 4 bytes, for the first 256 KiB of
strings of a payload), small hashes and sorted sets as
one listpack, sets of integers as an intset, lists as a quicklist of listpacks split where
Redis's 8 KB node limit splits a list built by RPUSH, larger values in the plain types (a sorted
set from its greatest score down, as Redis writes its skip list). The plain types and streams
are ``rdb``'s and ``rdbstream``'s writers, given that string encoder; reading is ``rdb``'s.
Where Redis's layout depends on history (the order of a large hash or set, an intset widened
by a member since removed, the list nodes after pops), and past the first 256 KiB of strings,
a payload may differ from Redis's; it still loads there, and Redis's payloads load here.
"""

from __future__ import annotations

import struct
from typing import cast

from blinkstore_gunicorn.storage import rdb
from blinkstore_gunicorn.storage.encodings import (
    FormatError,
    canonical_int,
    intset,
    listpack,
    listpack_entry,
    listpack_item,
    lzf_compress,
    rdb_length,
)

__all__ = [
    "ChecksumError",
    "dump_payload",
    "functions_payload",
    "load_functions_payload",
    "load_payload",
]

#: Redis 7.0's defaults for its compact encodings (``hash-max-listpack-entries`` 512,
#: ``zset-max-listpack-entries`` 128, ``*-max-listpack-value`` 64, ``set-max-intset-entries``
#: 512, ``list-max-listpack-size`` -2: 8 KB nodes).
HASH_LISTPACK_ENTRIES, ZSET_LISTPACK_ENTRIES, LISTPACK_VALUE = 512, 128, 64
INTSET_ENTRIES, LIST_NODE_BYTES = 512, 8192
#: Bytes of strings one payload compresses (see :class:`_Strings`).
LZF_BUDGET = 256 * 1024

#: What precedes each library in a FUNCTION DUMP payload (Redis's RDB_OPCODE_FUNCTION2).
_OP_FUNCTION2 = 245
_T_SET_INTSET, _T_HASH_LISTPACK, _T_ZSET_LISTPACK, _T_QUICKLIST_2 = 11, 16, 17, 18
_PACKED_NODE = rdb_length(2)  # a quicklist node holding a listpack (1: one plain element)
# A float Redis prints as an integer (its d2string): integral and inside +-(2^52 - 1).
_EXACT_INTEGRAL = 4503599627370496.0


class ChecksumError(FormatError):
    """A payload of a later RDB version or whose CRC-64 does not match (Redis's "DUMP payload
    version or checksum are wrong")."""


class _Strings:
    """Writes each string as Redis's ``rdbSaveRawString`` does, LZF-compressing strings over
    20 bytes while the payload's :data:`LZF_BUDGET` lasts, then writing them as they are
    (still a payload Redis loads): Python compresses at about a microsecond a byte, and the
    store serves no one meanwhile."""

    def __init__(self) -> None:
        self.budget = LZF_BUDGET

    def __call__(self, data: bytes) -> bytes:
        if len(data) <= 11:
            number = canonical_int(data)
            if number is not None:
                for tag, width in ((0xC0, 1), (0xC1, 2), (0xC2, 4)):
                    if -(1 << (8 * width - 1)) <= number < 1 << (8 * width - 1):
                        return bytes((tag,)) + number.to_bytes(width, "little", signed=True)
        if 20 < len(data) <= self.budget:
            self.budget -= len(data)
            packed = lzf_compress(data)
            if packed is not None:
                return b"\xc3" + rdb_length(len(packed)) + rdb_length(len(data)) + packed
        return rdb_length(len(data)) + data


def _score(score: float) -> bytes:
    """A score's text in a listpack (Redis's ``d2string``)."""
    if score == 0:
        return b"-0" if struct.pack("<d", score)[7] & 0x80 else b"0"
    if score in (float("inf"), float("-inf")):
        return b"inf" if score > 0 else b"-inf"
    if -_EXACT_INTEGRAL < score < _EXACT_INTEGRAL and score.is_integer():
        return b"%d" % score
    return b"%.17g" % score


def _quicklist(items: list[bytes], string: _Strings) -> bytes:
    """A list as quicklist nodes, each listpack filled while Redis's insert check allows."""
    nodes: list[bytes] = []
    entries: list[bytes] = []
    values: list[bytes | int] = []
    size = 7  # an empty listpack's header and end byte
    for item in items:
        n = len(item)
        overhead = (1 if n < 254 else 5) + (1 if n < 64 else 2 if n < 16384 else 5)
        if entries and size + n + overhead > LIST_NODE_BYTES:
            nodes.append(_PACKED_NODE + string(listpack(values, entries)))
            entries, values, size = [], [], 7
        value = listpack_item(item)
        entry = listpack_entry(value)
        entries.append(entry)
        values.append(value)
        size += len(entry)
    if entries:
        nodes.append(_PACKED_NODE + string(listpack(values, entries)))
    return rdb_length(len(nodes)) + b"".join(nodes)


def _small(items: list[bytes], most: int) -> bool:
    return len(items) <= most and all(len(item) <= LISTPACK_VALUE for item in items)


def _value(record: rdb.Record, string: _Strings) -> bytes:
    """The type byte and value bytes of one key, in the encoding Redis would have chosen."""
    kind, value = record.kind, record.value
    if kind == b"list":
        return bytes((_T_QUICKLIST_2,)) + _quicklist(cast("list[bytes]", value), string)
    if kind == b"hash":
        pairs = cast("list[tuple[bytes, bytes]]", value)
        flat = [item for pair in pairs for item in pair]
        if len(pairs) <= HASH_LISTPACK_ENTRIES and _small(flat, len(flat)):
            packed = listpack([listpack_item(item) for item in flat])
            return bytes((_T_HASH_LISTPACK,)) + string(packed)
    elif kind == b"zset":
        scored = cast("list[tuple[bytes, float]]", value)
        members = [member for member, _ in scored]
        if _small(members, ZSET_LISTPACK_ENTRIES):
            items: list[bytes | int] = []
            for member, score in scored:
                items += (listpack_item(member), listpack_item(_score(score)))
            return bytes((_T_ZSET_LISTPACK,)) + string(listpack(items))
        value = scored[::-1]  # Redis walks its skip list from the tail
    elif kind == b"set":
        numbers = [canonical_int(member) for member in cast("set[bytes]", value)]
        if len(numbers) <= INTSET_ENTRIES and None not in numbers:
            return bytes((_T_SET_INTSET,)) + string(intset(cast("list[int]", numbers)))
    kind_byte, encoded = rdb.encode_value(kind, value, string)
    return bytes((kind_byte,)) + encoded


def dump_payload(record: rdb.Record) -> bytes:
    """The DUMP payload of one key (its deadline is not part of it)."""
    return _footed(_value(record, _Strings()))


def _footed(body: bytes) -> bytes:
    """``body`` with the RDB version and the CRC-64 of both after it."""
    body += rdb.RDB_VERSION.to_bytes(2, "little")
    return body + rdb.crc64(body).to_bytes(8, "little")


def _check_footer(payload: bytes) -> None:
    """Redis's ``verifyDumpPayload``: :class:`ChecksumError` unless the footer is right."""
    if len(payload) < 10:
        raise ChecksumError("shorter than its footer")
    version = int.from_bytes(payload[-10:-8], "little")
    if version > rdb.RDB_VERSION or rdb.crc64(payload[:-8]) != int.from_bytes(
        payload[-8:], "little"
    ):
        raise ChecksumError("wrong version or checksum")


def functions_payload(codes: list[bytes]) -> bytes:
    """The FUNCTION DUMP payload of libraries (their whole code, shebang included), as Redis's
    ``rdbSaveFunctions`` writes them."""
    string = _Strings()
    return _footed(b"".join(bytes((_OP_FUNCTION2,)) + string(code) for code in codes))


def load_functions_payload(payload: bytes) -> list[bytes]:
    """The libraries' code in a FUNCTION DUMP payload. Raises :class:`ChecksumError` for a wrong
    version or checksum, :class:`FormatError` with Redis's words for the rest."""
    _check_footer(payload)
    codes, at, end = [], 0, len(payload) - 10
    while at < end:
        if payload[at] != _OP_FUNCTION2:
            raise FormatError("given type is not a function")
        _, code, size = rdb.read_value(payload[at + 1 : end], rdb.T_STRING)
        codes.append(cast("bytes", code))
        at += 1 + size
    return codes


def load_payload(payload: bytes) -> tuple[bytes, rdb.Value]:
    """The Redis type name and value of a DUMP payload. Raises :class:`ChecksumError` for a
    wrong version or checksum, :class:`FormatError` for a value that does not parse or is
    empty."""
    _check_footer(payload)
    # Read as Redis reads it: from the first byte on, what follows the value unchecked.
    kind, value, _ = rdb.read_value(payload[1:], payload[0])
    if kind not in {b"string", b"stream"} and not value:
        raise FormatError("an empty value")
    return kind, value
