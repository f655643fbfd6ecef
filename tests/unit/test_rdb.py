"""The RDB writer and reader (``storage/rdb.py``) and the blobs inside (``storage/encodings.py``):
round trips, every encoding redis-server 7.0 writes, and files that must be refused whole."""

from __future__ import annotations

import io
import struct

import pytest

from blinkstore_gunicorn.storage import rdb
from blinkstore_gunicorn.storage.encodings import (
    FormatError,
    intset_members,
    listpack_items,
    lzf_decompress,
)

RECORDS = [
    rdb.Record(b"s", b"string", b"v" * 70, None),
    rdb.Record(b"t", b"string", b"", 2_000_000_000_000),
    rdb.Record(b"l", b"list", [b"a", b"b" * 20000], None),
    rdb.Record(b"set", b"set", {b"1", b"x"}, 2_000_000_000_000),
    rdb.Record(b"h", b"hash", [(b"f", b"v")], None),
    rdb.Record(b"z", b"zset", [(b"m", -0.5), (b"n", float("inf"))], None),
]


def written(records: list[rdb.Record] = RECORDS) -> bytes:
    out = io.BytesIO()
    assert rdb.write(out, iter(records), {b"redis-bits": b"64"}, len(records)) == len(records)
    return out.getvalue()


def test_round_trip_keeps_every_type_and_deadline() -> None:
    parsed = rdb.parse(written(), now_ms=0)
    assert parsed.records == RECORDS
    assert parsed.aux[b"redis-bits"] == b"64"
    assert parsed.aux[rdb.KEYS_FIELD] == b"6"


def test_keys_past_their_deadline_are_left_out_and_counted() -> None:
    parsed = rdb.parse(written(), now_ms=2_000_000_000_000)
    assert [r.key for r in parsed.records] == [b"s", b"l", b"h", b"z"]
    assert parsed.expired == 2


def test_lengths_of_every_width_round_trip() -> None:
    values = [b"x" * n for n in (0, 63, 64, 16383, 16384, 70000)]
    records = [rdb.Record(b"k%d" % i, b"string", v, None) for i, v in enumerate(values)]
    assert rdb.parse(written(records), 0).records == records


def test_every_truncation_is_refused() -> None:
    data = written(RECORDS[:2] + RECORDS[4:])
    for end in range(len(data)):
        with pytest.raises(FormatError):
            rdb.parse(data[:end], 0)


def test_every_flipped_byte_is_refused_or_harmless() -> None:
    # A flip anywhere either fails a check or changes nothing the file says (a reserved bit
    # of the zero CRC-64 trailer is read as a checksum, so it fails too).
    data = written(RECORDS[:2])
    for i in range(len(data)):
        spoiled = bytearray(data)
        spoiled[i] ^= 0x10
        with pytest.raises(FormatError):
            rdb.parse(bytes(spoiled), 0)


def test_foreign_versions_and_trailing_bytes_are_refused() -> None:
    data = written()
    with pytest.raises(FormatError, match="RDB version 11"):
        rdb.parse(b"REDIS0011" + data[9:], 0)
    with pytest.raises(FormatError, match="not an RDB file"):
        rdb.parse(b"PK\x03\x04" + data[4:], 0)
    with pytest.raises(FormatError, match="after the end marker"):
        rdb.parse(data + b"\0", 0)


def _redis_file(body: bytes, version: int = 10) -> bytes:
    """A file as redis-server writes it: its CRC-64 trailer computed."""
    data = b"REDIS%04d" % version + body + bytes((rdb.OP_EOF,))
    return data + rdb.crc64(data).to_bytes(8, "little")


def test_crc64_is_redis_s() -> None:
    assert rdb.crc64(b"123456789") == 0xE9C6D914C4B8D9CA  # the check value in Redis's crc64.c


def test_a_redis_file_with_a_wrong_crc64_is_refused() -> None:
    good = _redis_file(b"\x00\x01k\x01v")
    assert rdb.parse(good, 0).records == [rdb.Record(b"k", b"string", b"v", None)]
    with pytest.raises(FormatError, match="CRC-64"):
        rdb.parse(good[:-1] + bytes((good[-1] ^ 1,)), 0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xfe\x03", "database 3"),
        (b"\x0f\x01k", "a stream"),
        (b"\x0e\x01k", "ziplists"),
        (b"\x07\x01k", "a module value"),
        (b"\xf5", "functions"),
    ],
)
def test_what_blinkstore_has_no_type_for_refuses_the_file(body: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        rdb.parse(_redis_file(body), 0)


def _listpack(*entries: bytes) -> bytes:
    """A listpack of raw entries (encoding + data), each followed by its back length."""
    body = b"".join(entry + bytes((len(entry),)) for entry in entries)
    total = 6 + len(body) + 1
    return total.to_bytes(4, "little") + len(entries).to_bytes(2, "little") + body + b"\xff"


def test_listpack_integer_and_string_encodings() -> None:
    blob = _listpack(
        b"\x05",  # 7-bit uint
        b"\x83abc",  # 6-bit string
        bytes((0xC0 | 0x1F, 0xFF)),  # 13-bit -1
        bytes((0xE0, 3)) + b"xyz",  # 12-bit string
        b"\xf1" + struct.pack("<h", -300),
        b"\xf2" + (-70000 & 0xFFFFFF).to_bytes(3, "little"),
        b"\xf3" + struct.pack("<i", 2**31 - 1),
        b"\xf4" + struct.pack("<q", -(2**63)),
        b"\xf0" + (2).to_bytes(4, "little") + b"hi",
    )
    assert listpack_items(blob) == [
        b"5",
        b"abc",
        b"-1",
        b"xyz",
        b"-300",
        b"-70000",
        str(2**31 - 1).encode(),
        str(-(2**63)).encode(),
        b"hi",
    ]


def test_bad_listpacks_intsets_and_lzf_raise_format_error() -> None:
    good = _listpack(b"\x83abc")
    for spoiled in (good[:-1], good[:8] + good[9:], b"\x07\x00\x00\x00\x01\x00\xff"):
        with pytest.raises(FormatError):
            listpack_items(spoiled)
    assert intset_members(b"\x02\x00\x00\x00\x02\x00\x00\x00\xff\xff\x05\x00") == [b"-1", b"5"]
    with pytest.raises(FormatError):
        intset_members(b"\x03\x00\x00\x00\x01\x00\x00\x00\x01\x02\x03")
    with pytest.raises(FormatError):
        lzf_decompress(b"\x05ab", 6)


def test_lzf_literals_and_overlapping_back_references() -> None:
    # "ab" as literals, then a back reference of 8 bytes to distance 2 (overlapping itself).
    assert lzf_decompress(b"\x01ab" + bytes(((8 - 2) << 5, 1)), 10) == b"ab" * 5
    with pytest.raises(FormatError, match="before the start"):
        lzf_decompress(b"\x00a" + bytes((1 << 5, 5)), 4)
