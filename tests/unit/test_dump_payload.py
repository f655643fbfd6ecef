"""DUMP payloads without a server: LZF compression round trips, every type written and read
back, and the checks RESTORE relies on (the byte-for-byte comparison with redis-server is in
``tests/integration/test_store_dump.py``)."""

from __future__ import annotations

import random
import tracemalloc
from typing import cast

import pytest

from blinkstore_gunicorn.storage import rdb
from blinkstore_gunicorn.storage.dump import ChecksumError, dump_payload, load_payload
from blinkstore_gunicorn.storage.encodings import FormatError, lzf_compress, lzf_decompress
from blinkstore_gunicorn.storage.rdbstream import StreamValue


@pytest.mark.parametrize(
    "data",
    [
        b"a" * 100,
        b"abc" * 40,
        b"the quick brown fox jumps over the lazy dog " * 30,
        bytes(12304),
        bytes(range(256)) * 40,
        random.Random(1).randbytes(300) * 3,
    ],
)
def test_lzf_round_trips(data: bytes) -> None:
    packed = lzf_compress(data)
    assert packed is not None and len(packed) <= len(data) - 4
    assert lzf_decompress(packed, len(data)) == data


def test_lzf_gives_up_where_redis_stores_as_is() -> None:
    assert lzf_compress(random.Random(2).randbytes(500)) is None
    assert lzf_compress(b"abcd") is None


RECORDS = [
    rdb.Record(b"k", b"string", b"12", None),
    rdb.Record(b"k", b"string", b"x" * 1000, None),
    rdb.Record(b"k", b"list", [b"a", b"1", b"y" * 9000, b"-70000"], None),
    rdb.Record(b"k", b"hash", [(b"f", b"1"), (b"g", b"v" * 65)], None),
    rdb.Record(b"k", b"hash", [(b"f", b"1"), (b"g", b"v")], None),
    rdb.Record(b"k", b"set", {b"1", b"-5", b"70000000000"}, None),
    rdb.Record(b"k", b"set", {b"a", b"1"}, None),
    rdb.Record(b"k", b"zset", [(b"a", -1.5), (b"b", 0.0), (b"c", 3.0)], None),
    rdb.Record(b"k", b"zset", [(b"m%d" % n, float(n)) for n in range(200)], None),
    rdb.Record(
        b"k",
        b"stream",
        StreamValue([[((1, 0), [b"f", b"1"]), ((2, 5), [b"g", b"x"])]], (2, 5), added=2),
        None,
    ),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: f"{r.kind.decode()}-{len(r.value)}")
def test_every_type_round_trips(record: rdb.Record) -> None:
    kind, value = load_payload(dump_payload(record))
    assert kind == record.kind
    if kind == b"set":
        assert set(value) == record.value
    elif kind == b"zset":
        pairs = cast("list[tuple[bytes, float]]", value)
        assert sorted(pairs) == sorted(cast("list[tuple[bytes, float]]", record.value))
    else:
        assert value == record.value


def test_restore_checks_version_checksum_and_emptiness() -> None:
    payload = dump_payload(RECORDS[0])
    with pytest.raises(ChecksumError):
        load_payload(payload[:-1] + bytes([payload[-1] ^ 1]))
    with pytest.raises(ChecksumError):
        load_payload(b"short")
    body = payload[:-10] + b"\x0b\x00"  # RDB 11: newer than 7.0 writes
    with pytest.raises(ChecksumError):
        load_payload(body + rdb.crc64(body).to_bytes(8, "little"))
    empty = b"\x04\x00" + payload[-10:-8]  # a plain hash of no fields
    with pytest.raises(FormatError):
        load_payload(empty + rdb.crc64(empty).to_bytes(8, "little"))


def test_lzf_data_claiming_a_small_size_cannot_grow_large() -> None:
    """Back references repeat up to 264 bytes for 3: a RESTORE payload must not make the
    store build far more than the size its header claims before refusing it."""
    bomb = b"\x00a" + b"\xe0\xff\x00" * 100_000  # ~26 MB if expanded
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            lzf_decompress(bomb, 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
