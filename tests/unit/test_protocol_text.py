"""Blink Store text protocol, sans-IO."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blinkstore_gunicorn.protocol import TooLarge, text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"GET foo", text.Request("GET", b"foo")),
        (b"get foo\r", text.Request("GET", b"foo")),
        (b"  GET   foo  ", text.Request("GET", b"foo")),
        (b"SET k v with spaces", text.Request("SET", b"k", b"v with spaces")),
        (b"SET k   padded value  ", text.Request("SET", b"k", b"padded value")),
        (b"SET k", text.Request("SET", b"k", b"")),
        (b"DELETE k", text.Request("DELETE", b"k")),
        (b"DEL k", text.Request("DELETE", b"k")),
        (b"USAGE", text.Request("USAGE")),
        (b"stats", text.Request("USAGE")),
        (b"QUIT", text.Request("QUIT")),
        (b"AUTH s3cret pass", text.Request("AUTH", value=b"s3cret pass")),
        (b"", text.Reject("unknown command")),
        (b"   \r", text.Reject("unknown command")),
        (b"FLY away", text.Reject("unknown command")),
        (b"GET", text.Reject("GET requires key")),
        (b"set  ", text.Reject("SET requires key")),
        (b"DELETE", text.Reject("DELETE requires key")),
        (b"del", text.Reject("DEL requires key")),
    ],
)
def test_parse_line(line: bytes, expected: object) -> None:
    assert text.parse_line(line) == expected


def test_line_reader_splits_lines_across_chunks() -> None:
    reader = text.LineReader()
    reader.feed(b"SET a 1\nGE")
    assert reader.drain() == [text.Request("SET", b"a", b"1")]
    reader.feed(b"T a\r\n\nUSAGE\n")
    assert reader.drain() == [
        text.Request("GET", b"a"),
        text.Reject("unknown command"),
        text.Request("USAGE"),
    ]


def test_line_reader_drops_a_long_line_and_refuses_it_at_its_newline() -> None:
    reader = text.LineReader(max_line=100)
    reader.feed(b"GET a\nSET k " + b"x" * 50)
    assert reader.drain() == [text.Request("GET", b"a")]
    reader.feed(b"x" * 60)
    assert reader.drain() == []
    assert reader.skipping and reader.buffered == 0
    for _ in range(10):
        reader.feed(b"x" * 1000)
        assert reader.drain() == [] and reader.buffered == 0
    reader.feed(b"x\nGET b\nGET")
    assert reader.drain() == [TooLarge("line", 6 + 110 + 10_001, 100), text.Request("GET", b"b")]
    reader.feed(b" c\n")
    assert reader.drain() == [text.Request("GET", b"c")]


def test_a_long_line_arriving_whole_is_refused_in_its_place() -> None:
    reader = text.LineReader(max_line=100)
    reader.feed(b"GET a\nSET k " + b"x" * 200 + b"\nGET b\n")
    assert reader.drain() == [
        text.Request("GET", b"a"),
        TooLarge("line", 206, 100),
        text.Request("GET", b"b"),
    ]


def test_reply_lines() -> None:
    assert text.value_line(b"hello") == b"VALUE aGVsbG8=\n"
    assert text.value_line(b"") == b"VALUE \n"
    assert text.usage_line(18) == b"USAGE 18\n"
    assert text.error_line("bad\nthing") == b"ERROR bad thing\n"
    assert text.OK_LINE == b"OK\n"
    assert text.NOT_FOUND_LINE == b"NOT_FOUND\n"


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_arbitrary_bytes_never_raise(data: bytes, chunk: int) -> None:
    reader = text.LineReader(max_line=128)
    for start in range(0, len(data), chunk):
        reader.feed(data[start : start + chunk])
        for item in reader.drain():
            assert isinstance(item, text.Request | text.Reject | TooLarge)
