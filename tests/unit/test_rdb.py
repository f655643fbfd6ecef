"""The RDB writer and reader (``storage/rdb.py``) and the blobs inside (``storage/encodings.py``):
round trips, every encoding redis-server 7.0 writes, and files that must be refused whole."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest

from blinkstore_gunicorn.storage import rdb
from blinkstore_gunicorn.storage.encodings import (
    FormatError,
    intset_members,
    listpack,
    listpack_items,
    lzf_decompress,
)
from blinkstore_gunicorn.storage.rdbstream import ConsumerValue, GroupValue, StreamValue, dump

#: A consumer group: entries pending for two consumers (one delivered before the epoch's
#: clock, a time saved as signed), one consumer with none, an unknown read counter.
GROUP = GroupValue(
    b"readers",
    (6, 1),
    -1,
    [((5, 9), 1_700_000_000_000, 3), ((6, 0), -5, 1), ((6, 1), 0, 2**40)],
    [
        ConsumerValue(b"alice", 1_700_000_000_001, [(5, 9), (6, 1)]),
        ConsumerValue(b"bob", 7, [(6, 0)]),
        ConsumerValue(b"idle", 8, []),
    ],
)
#: Two nodes: an entry with the master's fields and one without, a sequence that goes down
#: when the millisecond goes up, and a last ID past the entries (the last one was deleted).
STREAM = StreamValue(
    [
        [
            ((5, 9), [b"f", b"1", b"g", b"x" * 70]),
            ((6, 0), [b"f", b"-9", b"g", b""]),
            ((6, 1), [b"other", b"v"]),
        ],
        [((2**40, 2**63 + 5), [b"f", b"1", b"g", b"2"])],
    ],
    (2**40, 2**64 - 1),
    5,
    (2**40, 2**64 - 1),
    [GROUP, GROUP._replace(name=b"empty", entries_read=0, pending=[], consumers=[])],
)

RECORDS = [
    rdb.Record(b"s", b"string", b"v" * 70, None),
    rdb.Record(b"t", b"string", b"", 2_000_000_000_000),
    rdb.Record(b"l", b"list", [b"a", b"b" * 20000], None),
    rdb.Record(b"set", b"set", {b"1", b"x"}, 2_000_000_000_000),
    rdb.Record(b"h", b"hash", [(b"f", b"v")], None),
    rdb.Record(b"z", b"zset", [(b"m", -0.5), (b"n", float("inf"))], None),
    rdb.Record(b"st", b"stream", STREAM, None),
]


def written(records: list[rdb.Record] = RECORDS) -> bytes:
    out = io.BytesIO()
    assert rdb.write(out, iter(records), {b"redis-bits": b"64"}, len(records)) == len(records)
    return out.getvalue()


def test_round_trip_keeps_every_type_and_deadline() -> None:
    parsed = rdb.parse(written(), now_ms=0)
    assert parsed.records == RECORDS
    assert parsed.aux[b"redis-bits"] == b"64"
    assert parsed.aux[rdb.KEYS_FIELD] == b"7"


def test_keys_past_their_deadline_are_left_out_and_counted() -> None:
    parsed = rdb.parse(written(), now_ms=2_000_000_000_000)
    assert [r.key for r in parsed.records] == [b"s", b"l", b"h", b"z", b"st"]
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
        (b"\x15\x01k", "a stream of Redis 7.2"),
        (b"\x0e\x01k", "ziplists"),
        (b"\x07\x01k", "a module value"),
        (b"\xf6", "functions of Redis 7.0's release candidates"),
    ],
)
def test_what_blinkstore_has_no_type_for_refuses_the_file(body: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        rdb.parse(_redis_file(body), 0)


def test_function_libraries_round_trip() -> None:
    out = io.BytesIO()
    codes = [b"#!lua name=a\nredis.register_function('f', function() return 1 end)", b"#!lua"]
    rdb.write(out, [rdb.Record(b"k", b"string", b"v", None)], {}, 1, codes)
    parsed = rdb.parse(out.getvalue(), 0)
    assert (parsed.functions, len(parsed.records)) == (tuple(codes), 1)
    assert rdb.parse(_redis_file(b"\xf5\x03abc"), 0).functions == (b"abc",)


def _stream_file(value: StreamValue) -> bytes:
    """A Redis file holding the stream ``value`` (type 19)."""
    return _redis_file(b"\x13\x01k" + dump(value))


def test_a_stream_in_its_nodes_round_trips() -> None:
    (record,) = rdb.parse(_stream_file(STREAM), 0).records
    assert record == rdb.Record(b"k", b"stream", STREAM, None)


def _with_group(**changes: Any) -> StreamValue:
    return STREAM._replace(groups=[GROUP._replace(**changes)])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (StreamValue(STREAM.nodes[::-1], STREAM.last_id), "out of order"),
        (StreamValue(STREAM.nodes, (6, 1)), "last ID does not match"),
        (_with_group(pending=GROUP.pending[:2]), "not in its group's list"),
        (_with_group(pending=[*GROUP.pending, ((9, 9), 0, 1)]), "has no consumer"),
        (_with_group(pending=[*GROUP.pending, GROUP.pending[0]]), "twice"),
        (
            _with_group(consumers=[*GROUP.consumers, ConsumerValue(b"x", 0, [(5, 9)])]),
            "not in its group's list",
        ),
    ],
)
def test_a_stream_blinkstore_cannot_hold_refuses_the_file(value: StreamValue, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        rdb.parse(_stream_file(value), 0)


def _one_node_stream(blob: bytes) -> bytes:
    """A Redis file holding a stream of one entry, 1-1, in the node ``blob``."""
    key = (1).to_bytes(8, "big") * 2
    node = b"\x01\x10" + key + bytes((len(blob),)) + blob
    return _redis_file(b"\x13\x01k" + node + b"\x01\x01\x01" + bytes(6))


@pytest.mark.parametrize(
    "items",
    [
        [1, 0, 1, b"f"],  # the master entry ends early
        [1, 0, 1, b"f", 5, 2, 0, 0, b"v", 4],  # no 0 after the master fields
        [1, 0, 1, b"f", 0, 2, 0, 0, b"v"],  # no element count
        [1, 0, 1, b"f", 0, b"x", 0, 0, b"v", 4],  # flags not a number
        [1, 0, 1, b"f", 0, 0, 0, 0, 3, b"f", b"v", 4],  # fewer fields than it says
        [1, 0, 1, b"f", 0, 2, -2, 0, b"v", 4],  # an ID before 0-0
    ],
)
def test_a_malformed_stream_node_refuses_the_file(items: list[bytes | int]) -> None:
    assert rdb.parse(_one_node_stream(listpack([1, 0, 1, b"f", 0, 2, 0, 0, b"v", 4])), 0)
    with pytest.raises(FormatError):
        rdb.parse(_one_node_stream(listpack(items)), 0)


def test_listpacks_are_written_as_redis_writes_them() -> None:
    items: list[bytes | int] = [0, 127, 128, -1, -4096, 4096, -(2**15), 2**23 - 1]
    items += [-(2**31), 2**31, -(2**63), b"", b"a" * 63, b"b" * 64, b"c" * 4095, b"d" * 4096]
    assert listpack_items(listpack(items)) == [
        str(item).encode() if isinstance(item, int) else item for item in items
    ]
    assert listpack([5, -1, b"abc"]) == _listpack(b"\x05", b"\xdf\xff", b"\x83abc")
    # A 202-byte entry's back length: 1 * 128 + 74, most significant first.
    assert listpack([b"x" * 200])[6 + 202 : 6 + 204] == bytes((1, 0x80 | 74))


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
